"""The Keras image model through the real server: nested lists, base64 PNG, bad images."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

pyfunc = pytest.importorskip("amlkit.deep.pyfunc")


@pytest.fixture(scope="module")
def served(tmp_path_factory, new_project, digit_splits, digit_classifier):
    from amlkit.registry import store
    from amlkit.serving import package_service, serve

    splits = digit_splits
    model, _ = digit_classifier
    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("keras") / "root", mp)
        version = store.write_version(
            "digits-cnn",
            lambda folder: pyfunc.save_mlflow_model(
                model, folder, preprocessing=splits.preprocessing
            ),
            flavor="keras",
            model_file=pyfunc.KERAS_FILE,
            metadata={
                "model_type": model.name,
                "task": "classification",
                "target": "digit",
                "feature_columns": ["image"],
                "feature_types": {"image": "image"},
                "classes": splits.classes,
                "data": {"dataset": "digits", "version": "bundled", "sha256": ""},
            },
            metrics={},
            hyperparameters={"epochs": 3},
        )
        folder = package_service(version.path, service="digits")
        with serve(folder, port=0, startup_timeout_s=120) as endpoint:
            yield endpoint, model, splits, root


def test_keras_service_records_backend_and_reason(served):
    from amlkit.serving import service_info

    endpoint = served[0]
    info = service_info(endpoint.service_dir)
    assert info["backend"] == "keras" and "not a scikit-learn model" in info["backend_reason"]


@pytest.mark.parametrize("encoding", ["nested_lists", "base64_png"])
def test_keras_service_answers_images(served, encoding):
    from amlkit.deep import images

    endpoint, model, splits, _ = served
    x, _ = images.load_images()
    batch = x[400:405]
    if encoding == "nested_lists":
        payload = batch[..., 0].tolist()
    else:
        payload = [images.encode_png(image, splits.preprocessing["scale"]) for image in batch]
    status, answer = endpoint.score({"images": payload})
    assert status == 200, answer
    local = pyfunc.predict_images(model, payload, preprocessing=splits.preprocessing)
    assert answer["predictions"] == local["predictions"]
    assert answer["classes"] == list(range(10))
    assert len(answer["probabilities"]) == 5 and len(answer["probabilities"][0]) == 10
    assert answer["model"] == {"name": "digits-cnn", "version": 1, "backend": "keras"}


@pytest.mark.parametrize(
    ("images", "words"),
    [
        ([[1, 2]], "shape"),
        (["not base64!"], "base64"),
        ([[[1] * 8] * 8, "aGVsbG8="], "mixes"),
        ([], "nested lists"),
    ],
    ids=["wrong_shape", "bad_base64", "mixed", "empty"],
)
def test_keras_service_bad_images_get_422(served, images, words):
    endpoint = served[0]
    status, answer = endpoint.score({"images": images})
    assert status == 422, answer
    assert words in answer["error"]
    assert endpoint.alive()
