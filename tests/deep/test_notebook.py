"""`amlkit run -s 05` on another image set: digits upsampled to 16×16, saved as an .npz."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

pytestmark = pytest.mark.slow


def test_notebook_05_trains_and_registers_a_cnn_on_a_16x16_npz(project, tmp_path, repo):
    digits = load_digits()
    images = np.kron(digits.images, np.ones((1, 2, 2)))  # N×8×8 -> N×16×16, values 0..16
    npz = tmp_path / "digits16.npz"
    np.savez(npz, x=images.astype(np.uint8), y=digits.target)
    shutil.copytree(repo / "notebooks", project / "notebooks")

    command = ["run", "-s", "05", "--no-progress", "--run-id", "npz16", "-p", "images", str(npz)]
    proc = subprocess.run(
        [sys.executable, "-m", "amlkit.cli", *command],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run npz16: 1 notebook(s) ok" in proc.stdout
    summary = json.loads((project / "runs" / "npz16" / "run.json").read_text())
    assert summary["notebooks"][0]["parameters"] == {"images": str(npz)}
    version = project / "models" / "trained_models" / "digits16-cnn" / "1"
    meta = json.loads((version / "model_metadata.json").read_text())
    assert meta["flavor"] == "keras" and meta["model_file"] == "artifacts/model.keras"
    assert meta["input_shape"] == [16, 16, 1]
    assert meta["data"] == {
        "dataset": "digits16",
        "version": meta["data"]["sha256"][:12],
        "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
    }
    preprocessing = json.loads((version / "artifacts" / "preprocessing.json").read_text())
    assert (preprocessing["height"], preprocessing["width"], preprocessing["scale"]) == (16, 16, 16)
    metrics = json.loads((version / "performance_metrics.json").read_text())
    assert 0.9 <= metrics["test"]["accuracy"] <= 1.0  # chance is 0.1; 8×8 digits reach ~0.99
    champion = json.loads((version.parent / "champion.json").read_text())
    assert champion["version"] == 1 and champion["metric"] == "f1_macro"
