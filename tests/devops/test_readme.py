"""Every command the README shows works as written on a fresh clone.

The commands are read from the README itself: each line of a ``bash`` block and each inline
code span that starts with ``.venv/bin/`` or ``python3 dev.py``. Each is checked the
cheapest way that still exercises it as written:

- run as written when it is quick and changes nothing outside a temporary folder
  (``--help`` commands, ``papermill --help-notebook``, ``amlkit config``, ``dev.py setup``,
  ``pre-commit install`` in a scratch repository);
- parsed by the real parser of the program otherwise (every ``amlkit`` command, ``mlflow``'s
  click commands, ``jupyter lab --show-config``, ``uv lock``'s options), since running them
  takes minutes, serves until stopped or rewrites notebooks;
- ``python3 dev.py test`` is the command .ci/run runs; its variants run with
  ``--collect-only`` appended, and ``dev.py pipeline`` with ``--help`` appended (it goes
  through dev.py to ``amlkit run --help``).

A command none of these rules covers fails the test, so a new README command gets a check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_AS_WRITTEN = (
    re.compile(r"--help\b"),
    re.compile(r"^\.venv/bin/papermill --help-notebook "),
    re.compile(r"^\.venv/bin/amlkit config$"),
    re.compile(r"^python3 dev\.py setup$"),
)


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if span.startswith((".venv/bin/", "python3 dev.py")):
            commands.append(span)
    return list(dict.fromkeys(commands))


def _run(argv: list[str], cwd: Path = REPO, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=300, **kwargs
    )


def _dev_commands() -> tuple[str, ...]:
    source = (REPO / "dev.py").read_text(encoding="utf-8")
    match = re.search(r"^COMMANDS = (\(.*?\))$", source, flags=re.M)
    assert match, "dev.py names its commands in COMMANDS"
    return eval(match.group(1))  # a tuple literal of strings


def _check_mlflow(argv: list[str]) -> None:
    from mlflow.cli import cli

    ctx = cli.make_context("mlflow", list(argv), resilient_parsing=False)
    words = list(ctx.protected_args) + list(ctx.args)
    command = cli
    while words and hasattr(command, "get_command"):
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"mlflow has no command {words[0]!r}"
        ctx = sub.make_context(words[0], words[1:], parent=ctx)
        words = list(getattr(ctx, "protected_args", [])) + list(ctx.args)
        command = sub


def test_the_readme_shows_its_commands_with_the_venv_prefix_a_fresh_clone_needs():
    commands = readme_commands()
    assert "python3 dev.py pipeline" in commands and "python3 dev.py test" in commands
    bare = [c for c in commands if re.match(r"(papermill|jupyter|mlflow|amlkit|pytest) ", c)]
    assert bare == [], "write .venv/bin/<program>: a fresh clone has no activated environment"


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_works_as_written(command, tmp_path, split_command, amlkit_parses):
    words = split_command(command)
    program = words[0]
    if program == "python3" and words[1] == "dev.py":
        assert words[2] in _dev_commands()
        if words[2] == "test" and len(words) == 3:
            assert "python3 dev.py test" in (REPO / ".ci" / "run").read_text()
            return
        if words[2] == "lock":
            usage = _run([str(BIN / "uv"), "lock", "--help"]).stdout
            assert all(w in usage for w in words[3:] if w.startswith("-")), words
            return
        argv = [sys.executable, *words[1:]]
        if words[2] == "pipeline":
            argv.append("--help")
        elif words[2] == "test":  # lint, then pytest selects without running
            argv += ["--collect-only", "-q"]
        done = _run(argv)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return
    assert program.startswith(".venv/bin/"), f"not a project command: {command}"
    executable = BIN / program.removeprefix(".venv/bin/")
    assert executable.is_file(), f"{program} is not installed by `python3 dev.py setup`"
    if executable.name == "python" and words[1] == "benchmarks/<name>.py":
        for benchmark in sorted((REPO / "benchmarks").glob("*.py")):
            done = _run([str(executable), str(benchmark), "--help"])
            assert done.returncode == 0, f"{benchmark.name}: {done.stderr[-2000:]}"
        return
    if executable.name == "pre-commit":
        shutil.copy(REPO / ".pre-commit-config.yaml", tmp_path)
        _run(["git", "init", "-q"], cwd=tmp_path)
        done = _run([str(executable), *words[1:]], cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / ".git" / "hooks" / "pre-commit").is_file()
        return
    if any(rule.search(command) for rule in RUN_AS_WRITTEN):
        env = {**os.environ, "AMLKIT_ROOT": str(REPO)}
        done = _run([str(executable), *words[1:]], env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    elif executable.name == "amlkit":
        amlkit_parses(words[1:])
    elif executable.name == "mlflow":
        _check_mlflow(words[1:])
    elif executable.name == "jupyter" and words[1] == "lab":
        done = _run([str(executable), *words[1:], "--show-config"])
        assert done.returncode == 0, done.stderr[-2000:]
    else:
        pytest.fail(f"no check covers the README command: {command}")
