"""The Keras image model through the real server: nested lists, base64 PNG, bad images."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

pyfunc = pytest.importorskip("amlkit.deep.pyfunc")


@pytest.fixture(scope="module")
def served(digits_service):
    from amlkit.serving.server import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(digits_service.root))
        with serve(digits_service.folder, port=0, startup_timeout_s=120) as endpoint:
            yield endpoint, digits_service.model, digits_service.splits, digits_service.root


def test_keras_service_records_backend_and_reason(served):
    from amlkit.serving.package import service_info

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


def test_keras_service_scores_with_only_its_own_amlkit_modules(served, score_isolated, tmp_path):
    from amlkit.deep import images
    from amlkit.serving.package import service_info

    endpoint = served[0]
    carried = set(service_info(endpoint.service_dir)["amlkit_modules"])
    assert "amlkit.deep.pyfunc" in carried
    assert not carried & {"amlkit.serving.onnx_inputs", "amlkit.training.transformers"}
    x, _ = images.load_images()
    payload = {"images": x[400:403, ..., 0].tolist()}
    result = score_isolated(endpoint.service_dir, payload, tmp_path)
    assert result["installed_amlkit"] is None and result["status"] == 200, result["answer"]
    assert set(result["loaded"]) <= carried
    assert result["answer"]["predictions"] == endpoint.score(payload)[1]["predictions"]
