"""Run ``azmlinfsrv`` bound to 127.0.0.1 (it has no host option; see :mod:`.server`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Set the server's host constant to loopback, then run its own entry point."""
    from azureml_inference_server_http import amlserver

    if not hasattr(amlserver, "DEFAULT_HOST"):
        sys.exit("azureml_inference_server_http changed: no DEFAULT_HOST; refusing to bind wide")
    amlserver.DEFAULT_HOST = "127.0.0.1"
    sys.argv[0] = "azmlinfsrv"
    amlserver.run()


if __name__ == "__main__":
    main()
