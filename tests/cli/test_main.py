"""The `amlkit` command starts fast: heavy libraries load only in the commands that use them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "papermill",
    "nbformat",
    "nbclient",
    "jupyter_client",
    "numpy",
    "pandas",
    "mlflow",
    "sklearn",
    "tensorflow",
    "keras",
    "azure.ai.ml",
    "pydantic",
    "amlkit.config",
    "amlkit.serving",
    "amlkit.pipeline.runner",
)


def test_the_command_line_imports_no_heavy_library_before_a_command_runs():
    code = (
        "import sys\n"
        "from amlkit.cli.main import build_parser\n"
        "build_parser().parse_args(['run'])\n"
        "print('\\n'.join(sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(proc.stdout.split())
    assert [name for name in HEAVY if name in loaded] == []


def test_help_lists_the_pipeline_and_the_deployment_commands():
    proc = subprocess.run(
        [sys.executable, "-m", "amlkit.cli", "--help"], capture_output=True, text=True, check=True
    )
    commands = ("run", "config", "notebooks", "package", "serve", "keys", "score", "deploy")
    for command in (*commands, "monitor"):
        assert command in proc.stdout
