"""Running the notebooks: the papermill pipeline behind ``amlkit run`` and notebook upkeep."""
