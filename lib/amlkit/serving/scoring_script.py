"""Scoring script of an amlkit service (Azure ML contract: ``init()`` then ``run()``).

``init()`` checks every model file against the sha256 in ``service_metadata.json`` (a changed
file stops the start, named), then loads the model once from ``$AZUREML_MODEL_DIR`` (ONNX
when the packaging parity check passed, else the pickled pipeline), the service settings from the
``deployment_config.json`` beside this file, the endpoint keys from ``$AMLKIT_KEYS_FILE``
(auth mode ``key``; ``AMLKIT_AUTH=endpoint`` means the platform checks keys, as on an Azure
managed endpoint), and opens the per-worker request log in ``$AMLKIT_REQUEST_LOG_DIR``.

``run()`` gets the raw HTTP request (``@rawhttp``) so it can answer 401/413/415/422 with a
JSON body ``{"error": ...}``. Every scored row is appended to the request log before the
response is returned, naming the model, its version and the deployment that answered
(``$AMLKIT_DEPLOYMENT``, set by the Azure deployment specs, else the service folder's name).
"""

import importlib.util
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("amlkit") is None:  # on Azure: the modules packaged beside us
    sys.path.insert(0, str(HERE))

from amlkit.serving.auth import KeyChecker  # noqa: E402
from amlkit.serving.requestlog import RequestLog  # noqa: E402
from amlkit.serving.requests import (  # noqa: E402
    RequestError,
    parse_images,
    parse_json,
    parse_request,
)
from amlkit.serving.runtime import Scorer, find_model_dir, verify_model_files  # noqa: E402

STATE: dict[str, Any] = {}
IMAGE_HELP = '{"images": [...]} with nested lists of pixels or base64 PNG strings'
JSON_HEADERS = {"Content-Type": "application/json"}


def init():
    """Load the model, settings, keys and request log once per worker."""
    config = json.loads((HERE / "deployment_config.json").read_text(encoding="utf-8"))
    service = json.loads((HERE / "service_metadata.json").read_text(encoding="utf-8"))
    model_dir = find_model_dir(os.environ.get("AZUREML_MODEL_DIR") or HERE / "model")
    verify_model_files(model_dir, service["model_files"])  # before anything is unpickled
    scorer = Scorer(model_dir)
    checker = None
    if config.get("auth_mode") == "key" and os.environ.get("AMLKIT_AUTH") != "endpoint":
        keys_file = os.environ.get("AMLKIT_KEYS_FILE")
        if not keys_file:
            raise RuntimeError(
                "auth_mode is 'key' but AMLKIT_KEYS_FILE is not set; start the service with "
                "amlkit.serving.server.start_server, or set AMLKIT_AUTH=endpoint when the "
                "platform checks keys."
            )
        checker = KeyChecker(keys_file)
    log_cfg = config.get("request_log", {})
    log = RequestLog(
        os.environ.get("AMLKIT_REQUEST_LOG_DIR") or HERE / "logs",
        max_bytes=int(log_cfg.get("max_bytes", 10 * 2**20)),
        backup_count=int(log_cfg.get("backup_count", 5)),
    )
    limits = config.get("limits", {})
    meta = scorer.metadata
    deployment = os.environ.get("AMLKIT_DEPLOYMENT") or config.get("service")
    STATE.update(
        scorer=scorer,
        checker=checker,
        log=log,
        max_body=int(limits.get("max_body_bytes", 2**20)),
        max_rows=int(limits.get("max_rows", 1000)),
        model={
            "name": meta.get("name"),
            "version": meta.get("version"),
            "deployment": deployment,
            "backend": scorer.backend,
        },
        answered_by={  # in every request-log row: which model and deployment answered
            "model_name": meta.get("name"),
            "model_version": meta.get("version"),
            "deployment": deployment,
        },
    )


def _answer(status, body, request_id, extra_headers=None):
    headers = {**JSON_HEADERS, "x-request-id": request_id, **(extra_headers or {})}
    return AMLResponse(json.dumps(body), status, headers)


def _now():
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _score(request, request_id, started):
    state = STATE
    scorer = state["scorer"]
    length = request.content_length
    if length is not None and length > state["max_body"]:
        raise RequestError(
            413,
            f"request body is {length} bytes, over the limit of {state['max_body']}; split the "
            "rows over several requests or use batch scoring.",
        )
    body = request.stream.read(state["max_body"] + 1)
    content_type = request.headers.get("Content-Type")
    if scorer.backend == "keras":
        payload = parse_json(body, content_type=content_type, max_body_bytes=state["max_body"])
        images = parse_images(payload, max_rows=state["max_rows"])
        try:
            result = scorer.predict_images(images)
        except ValueError as exc:  # wrong shape, bad base64, unreadable image: the client's
            raise RequestError(422, f"{exc} Send {IMAGE_HELP}.") from None
        inputs = [{"image": i} for i in range(len(images))]
        preds, probs = result["predictions"], result.get("probabilities")
    else:
        values, _ = parse_request(
            body,
            content_type=content_type,
            feature_columns=scorer.feature_columns,
            feature_types=scorer.feature_types,
            max_body_bytes=state["max_body"],
            max_rows=state["max_rows"],
        )
        preds, probs = scorer.predict_values(values)
        cols = scorer.feature_columns
        inputs = [
            dict(zip(cols, row, strict=True))
            for row in zip(*(values[c] for c in cols), strict=True)
        ]
    answer = {"predictions": preds}
    if probs is not None:
        answer["probabilities"] = probs
        answer["classes"] = scorer.classes
    answer["request_id"] = request_id
    answer["model"] = state["model"]
    latency = round((time.perf_counter() - started) * 1000, 3)
    now = _now()
    state["log"].write(
        [
            {
                "request_id": request_id,
                **state["answered_by"],
                "row": i,
                "time": now,
                "latency_ms": latency,
                "status": 200,
                "inputs": inputs[i],
                "prediction": preds[i],
                **({"probabilities": probs[i]} if probs is not None else {}),
            }
            for i in range(len(preds))
        ]
    )
    return answer


@rawhttp
def run(request):
    """Score one HTTP request; answer JSON with a fitting status code."""
    started = time.perf_counter()
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    try:
        if request.method != "POST":
            raise RequestError(405, f"method {request.method} is not allowed; POST JSON rows.")
        checker = STATE["checker"]
        if checker is not None and not checker.check(request.headers.get("Authorization")):
            return _answer(
                401,
                {
                    "error": "missing or wrong key; send 'Authorization: Bearer <key>' with a "
                    "key from `amlkit keys <endpoint>`.",
                    "request_id": request_id,
                },
                request_id,
                {"WWW-Authenticate": "Bearer"},
            )
        return _answer(200, _score(request, request_id, started), request_id)
    except RequestError as exc:
        latency = round((time.perf_counter() - started) * 1000, 3)
        STATE["log"].write(
            [
                {
                    "request_id": request_id,
                    **STATE["answered_by"],
                    "time": _now(),
                    "latency_ms": latency,
                    "status": exc.status,
                    "error": exc.message,
                }
            ]
        )
        return _answer(exc.status, {"error": exc.message, "request_id": request_id}, request_id)
