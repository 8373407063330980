"""Targets of the deep-learning notebook, measured: accuracy, time, repeatability, serving.

    .venv/bin/python benchmarks/deep_digits.py            # two runs in separate processes
    .venv/bin/python benchmarks/deep_digits.py --once     # one run, prints a JSON line

Each run: default parameters (config/model_config.json "deep_learning"), digits, train +
evaluate; then the same on digits upsampled to 16×16 and saved as an .npz; then the latency
of predict_images on one image (nested lists and base64 PNG).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run() -> dict:
    start = time.perf_counter()
    from amlkit import config
    from amlkit.deep import images, network, pyfunc

    network.set_determinism(42)
    imported = time.perf_counter()
    params = network.cnn_params(config.ModelConfig.load().deep_learning.model_dump())
    splits = images.prepare_images()
    model, history = network.train_cnn(splits, params, seed=42)
    scores = network.evaluate_cnn(model, splits)
    y_pred = network.predict_classes(model, splits.x_test)
    network.classification_table(splits.y_test, y_pred, splits.classes)
    done = time.perf_counter()
    proba = network.predict_proba(model, splits.x_test)

    x, y = images.load_images()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits16.npz"
        import numpy as np

        np.savez(path, x=np.kron(x[..., 0], np.ones((1, 2, 2))), y=y)
        t16 = time.perf_counter()
        big = images.prepare_images(path)
        model16, history16 = network.train_cnn(big, params, seed=42)
        acc16 = network.evaluate_cnn(model16, big)["test"]["accuracy"]
        t16 = time.perf_counter() - t16

    pre = splits.preprocessing
    image = (splits.x_test[:1] * pre["scale"]).round()[..., 0]
    as_list, as_png = image.tolist(), [images.encode_png(image[0], pre["scale"])]
    latency = {}
    for name, request in (("lists", as_list), ("base64_png", as_png)):
        pyfunc.predict_images(model, request, preprocessing=pre)  # warm up
        times = []
        for _ in range(200):
            t = time.perf_counter()
            pyfunc.predict_images(model, request, preprocessing=pre)
            times.append(time.perf_counter() - t)
        times.sort()
        latency[name] = round(times[len(times) // 2] * 1000, 2)
    return {
        "import_s": round(imported - start, 1),
        "train_evaluate_s": round(done - imported, 1),
        "epochs": len(history.history["loss"]),
        "test_accuracy": scores["test"]["accuracy"],
        "test_f1_macro": scores["test"]["f1_macro"],
        "proba_sha256": hashlib.sha256(proba.tobytes()).hexdigest()[:16],
        "npz16_train_evaluate_s": round(t16, 1),
        "npz16_epochs": len(history16.history["loss"]),
        "npz16_test_accuracy": acc16,
        "predict_images_p50_ms": latency,
        "device": network.compute_device(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="one run in this process")
    args = parser.parse_args()
    if args.once:
        print(json.dumps(one_run()))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = []
    for i in range(2):
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--once"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"run {i + 1} ({time.perf_counter() - t:.1f} s wall):", json.dumps(results[-1]))
    keys = ("epochs", "test_accuracy", "proba_sha256", "npz16_test_accuracy")
    same = all(results[0][k] == results[1][k] for k in keys)
    print("identical across processes:", same)


if __name__ == "__main__":
    main()
