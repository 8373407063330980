"""``python -m amlkit.cli``: the ``amlkit`` command."""

from amlkit.cli.main import main

raise SystemExit(main())
