"""``python -m amlkit.cli``: the ``amlkit`` command."""

import sys

from amlkit.cli.main import main

sys.exit(main())
