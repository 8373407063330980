"""amlkit: the helpers shared by the notebooks, in subpackages by lifecycle stage."""

__version__ = "0.1.0"

import warnings as _warnings

# MLflow imports tqdm.auto, which warns (with a machine-specific path) when ipywidgets is
# absent; text progress bars are what the notebooks want, so the warning is noise.
_warnings.filterwarnings("ignore", message="IProgress not found")
