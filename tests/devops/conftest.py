"""Fixtures of the DevOps tests: read command lines out of workflows and the README, and check
them against the command-line parsers they call."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

import pytest

from amlkit.cli.main import build_parser

# ${{ matrix.dataset }}, $(DATASET), "$MODEL", ${ENDPOINT}: values only known when a job runs
VARIABLE = re.compile(r"\$\{\{[^}]*\}\}|\$\([A-Za-z_.]+\)|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def _split(line: str) -> list[str]:
    line = VARIABLE.sub("1", line)
    words = shlex.split(line, comments=True)
    for stop in (">", ">>", "|", "||", "&&", ";", "2>&1"):
        if stop in words:
            words = words[: words.index(stop)]
    return [w for w in words if not w.startswith((">", "2>"))]


@pytest.fixture(scope="session")
def split_command() -> Callable[[str], list[str]]:
    """Split one shell command line into words, variables replaced by 1, redirections cut."""
    return _split


@pytest.fixture(scope="session")
def amlkit_parses() -> Callable[[list[str]], None]:
    """Check that ``amlkit`` arguments parse with the real CLI parser (nothing runs)."""
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices

    def check(argv: list[str]) -> None:
        if argv and argv[0] not in subcommands and argv[0] == "azure":
            pytest.skip("`amlkit azure` is not in this CLI yet (the Azure ML at scale issue)")
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"`amlkit {shlex.join(argv)}` does not parse (exit {exc.code})")

    return check
