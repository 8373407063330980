"""Shared fixtures: an isolated project root so tests never touch the repository's data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root (config/ copied, no data) that amlkit.paths points at."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "config", root / "config", ignore=shutil.ignore_patterns("schemas"))
    monkeypatch.setenv("AMLKIT_ROOT", str(root))
    return root
