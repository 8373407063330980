"""Scoring script of an amlkit service (Azure ML contract: ``init()`` then ``run()``).

``init()`` checks every model file against the sha256 in ``service_metadata.json`` and stops
the start naming a changed one, before loading anything. Settings come from the
``deployment_config.json`` beside it; keys from ``$AMLKIT_KEYS_FILE`` (``AMLKIT_AUTH=endpoint``
when the platform checks keys, as on Azure). ``run()`` takes the raw request to answer 4xx
with ``{"error": ...}``; each row is logged before answering, naming the model, its version
and the deployment (``$AMLKIT_DEPLOYMENT``, set by the Azure specs, else the service name);
a scored request is one line holding its rows column by column (see ``requestlog``). A
prediction the log cannot take (a full disk) is withheld: the answer is a 503 saying so. A
request without ``x-request-id`` goes by the id the server gives it (in the answer's header),
in the answer's body and the log too.
With Azure ML's data collector on (the platform sets ``AZUREML_MDC_CONFIG_PATH`` or
``AZUREML_MDC_ENABLED``), scored rows and predictions also go to the ``model_inputs`` and
``model_outputs`` collections that Azure ML model monitoring reads (``azureml-ai-monitoring``).
"""

import contextlib
import importlib.util
import json
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse
from flask import g, has_app_context
from werkzeug.exceptions import ClientDisconnected

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("amlkit") is None:  # on Azure: the modules packaged beside us
    sys.path.insert(0, str(HERE))

from amlkit.serving.auth import KeyChecker  # noqa: E402
from amlkit.serving.front import BODY_BYTES_HEADER  # noqa: E402
from amlkit.serving.requestlog import RequestLog, json_bytes  # noqa: E402
from amlkit.serving.requests import (  # noqa: E402
    RequestError,
    parse_images,
    parse_json,
    parse_request,
    too_large,
)
from amlkit.serving.runtime import Scorer  # noqa: E402

logger = logging.getLogger("amlkit.serving.scoring_script")
STATE: dict[str, Any] = {}
SERVICE_FILE = "service_metadata.json"
IMAGE_HELP = '{"images": [...]} with nested lists of pixels or base64 PNG strings'


def init():
    """Load the model, settings, keys and request log once per worker."""
    config = _checked_config(HERE / "deployment_config.json")
    # every model file checked against service_metadata.json before anything is loaded
    service_dir, model_dir = _service_dirs()
    scorer = Scorer(model_dir, service_dir=service_dir)
    checker = None
    auth_mode, platform_auth = config.get("auth_mode", "key"), os.environ.get("AMLKIT_AUTH")
    if auth_mode == "key" and platform_auth != "endpoint":
        keys_file = os.environ.get("AMLKIT_KEYS_FILE")
        if not keys_file:
            raise RuntimeError(
                "auth_mode is 'key' but AMLKIT_KEYS_FILE is not set; start the service with "
                "amlkit.serving.server.start_server, or set AMLKIT_AUTH=endpoint when the "
                "platform checks keys."
            )
        checker = KeyChecker(keys_file)
    elif auth_mode != "key" and platform_auth != "endpoint":
        logger.warning(
            "auth_mode is %r: this server checks no key, every local process may score; "
            "use auth_mode 'key' to require one.",
            auth_mode,
        )
    log_cfg, limits, meta = config.get("request_log", {}), config.get("limits", {}), scorer.metadata
    deployment = os.environ.get("AMLKIT_DEPLOYMENT") or config.get("service")
    STATE.update(
        scorer=scorer,
        checker=checker,
        log=RequestLog(
            os.environ.get("AMLKIT_REQUEST_LOG_DIR") or HERE / "logs",
            max_bytes=int(log_cfg.get("max_bytes", 10 * 2**20)),
            backup_count=int(log_cfg.get("backup_count", 5)),
        ),
        collectors=_collectors(),
        max_body=int(limits.get("max_body_bytes", 2**20)),
        max_rows=int(limits.get("max_rows", 1000)),
        model={"name": meta.get("name"), "version": meta.get("version"), "backend": scorer.backend},
        classes=json_bytes(scorer.classes),
        answered_by={  # in every request-log row: which model and deployment answered
            "model_name": meta.get("name"),
            "model_version": meta.get("version"),
            "deployment": deployment,
        },
    )


def _service_dirs():
    """Return the folder holding ``service_metadata.json`` and the model folder to load.

    A service folder holds it beside this script (the model under ``AZUREML_MODEL_DIR`` or
    ``model/``). A deployment made from the plan's generic code folder finds it in the
    registered packaged service, which the platform mounts at ``$AZUREML_MODEL_DIR`` or one
    folder below (``$AZUREML_MODEL_DIR/service/``), with the model in its ``model/``.
    """
    mounted = os.environ.get("AZUREML_MODEL_DIR")
    if (HERE / SERVICE_FILE).is_file():
        return HERE, Path(mounted) if mounted else HERE / "model"
    root = Path(mounted) if mounted else None
    found = (
        []
        if root is None
        else sorted(root.glob(SERVICE_FILE)) or sorted(root.glob(f"*/{SERVICE_FILE}"))
    )
    if len(found) != 1:
        raise RuntimeError(
            f"no {SERVICE_FILE} beside the scoring script ({HERE}) nor under AZUREML_MODEL_DIR "
            f"({mounted or 'not set'}; {len(found)} found): deploy a version of "
            "<model>-packaged, which `amlkit package` registers, or a packaged service folder."
        )
    return found[0].parent, found[0].parent / "model"


# What the script reads of deployment_config.json, checked as amlkit.config.DeploymentConfig
# checks it (the lean serving environment has no pydantic): (section, key) -> smallest value.
AUTH_MODES = ("key", "aml_token", "none")
CHECKED_COUNTS = {
    ("limits", "max_body_bytes"): 1,
    ("limits", "max_rows"): 1,
    ("request_log", "max_bytes"): 1,
    ("request_log", "backup_count"): 0,
}


def _checked_config(path):
    """Read the service's deployment_config.json; ValueError naming a wrong value and the fix."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path} cannot be read as JSON ({exc}); package the service again."
        ) from None
    fix = "fix it there (or in config/deployment_config.json, then package the service again)"
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object; {fix}.")
    auth_mode = config.get("auth_mode", "key")
    if auth_mode not in AUTH_MODES:
        raise ValueError(
            f"{path}: auth_mode {auth_mode!r} is not one of {list(AUTH_MODES)} (lower case); {fix}."
        )
    for (section, key), least in CHECKED_COUNTS.items():
        part = config.get(section, {})
        value = part.get(key, least) if isinstance(part, dict) else part
        if type(value) is not int or value < least:
            raise ValueError(
                f"{path}: {section}.{key} is {value!r}, it must be a whole number of at least "
                f"{least}; {fix}."
            )
    return config


def _collectors():
    """Return Azure ML's data collectors when the platform enables them, else None."""
    enabled = os.environ.get("AZUREML_MDC_ENABLED", "").lower() == "true"
    if not (enabled or os.environ.get("AZUREML_MDC_CONFIG_PATH")):
        return None
    from azureml.ai.monitoring import Collector

    return {name: Collector(name=name) for name in ("model_inputs", "model_outputs")}


def _collect(inputs, preds):
    """Hand the scored rows and their predictions to the data collectors (Azure only)."""
    import pandas as pd

    collectors = STATE["collectors"]
    context = collectors["model_inputs"].collect(pd.DataFrame(inputs))
    # under the target's name, as Microsoft's score.py does: the monitor's prediction drift
    # compares this column with the training split's target column of the same name
    name = STATE["scorer"].metadata.get("target") or "prediction"
    collectors["model_outputs"].collect(pd.DataFrame({name: preds}), context)


def _answer(status, body, request_id, extra_headers=None):
    """Answer ``body`` (a dict, or its JSON already encoded) with ``status``."""
    headers = {"Content-Type": "application/json", "x-request-id": request_id}
    data = body if isinstance(body, bytes) else json_bytes(body)
    return AMLResponse(data, status, headers | (extra_headers or {}))


def _common(request_id, started, status):
    """The fields of a request's log line: its id, who answered, time, latency and status."""
    return {
        "request_id": request_id,
        **STATE["answered_by"],
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "status": status,
    }


def _server_request_id():
    """The id the inference server gives a request without ``x-request-id`` (and answers in it)."""
    return (g.get("request_id") if has_app_context() else None) or uuid.uuid4().hex


def _drain(stream, limit=64 * 2**20):
    """Read and drop the rest of a refused body, up to ``limit`` bytes.

    The client then finishes sending and reads the 413: closing a socket with unread data
    resets the connection, and the client would see a broken pipe instead of the answer.
    """
    while limit > 0 and (chunk := stream.read(min(limit, 2**20))):
        limit -= len(chunk)


def _read_body(request, max_body):
    """Return the request body; RequestError for one too large, compressed or cut short."""
    kept_back = request.headers.get(BODY_BYTES_HEADER, "")
    if kept_back.isdigit():  # the local front read a body over the limit and kept it back
        raise too_large(int(kept_back), max_body)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(
            f"Content-Encoding {encoding!r} is not supported; send the JSON body uncompressed "
            "(limits.max_body_bytes applies to it).",
            415,
        )
    length = request.content_length
    try:
        if length is not None and length > max_body:
            _drain(request.stream)
            raise too_large(length, max_body)
        body = request.stream.read(max_body + 1)
        if len(body) > max_body:  # a chunked body, no Content-Length
            _drain(request.stream)
    except (ClientDisconnected, OSError):
        raise RequestError(
            f"the body ended before the {length} bytes its Content-Length declared; send the "
            "whole body or fix Content-Length.",
            400,
        ) from None
    return body


def _score(request, request_id, started):
    scorer, max_body, max_rows = STATE["scorer"], STATE["max_body"], STATE["max_rows"]
    body = _read_body(request, max_body)
    content_type = request.headers.get("Content-Type")
    if scorer.backend == "keras":
        payload = parse_json(body, content_type=content_type, max_body_bytes=max_body)
        images = parse_images(payload, max_rows=max_rows)
        try:
            result = scorer.predict_images(images)
        except ValueError as exc:  # wrong shape, bad base64, unreadable image: the client's
            raise RequestError(f"{exc} Send {IMAGE_HELP}.") from None
        inputs = {"image": list(range(len(images)))}
        preds, probs = result["predictions"], result.get("probabilities")
    else:
        cols, types = scorer.feature_columns, scorer.feature_types
        limits = {"content_type": content_type, "max_body_bytes": max_body, "max_rows": max_rows}
        values, _ = parse_request(
            body, feature_columns=cols, feature_types=types, required=scorer.required, **limits
        )
        try:
            preds, probs = scorer.predict_values(values)
        except ValueError as exc:  # the pipeline's own check, e.g. a forest past float32
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise RequestError(
                f"the model cannot score these rows: {first}. Send values in the range the "
                "model was trained on."
            ) from None
        inputs = {c: values[c] for c in cols}
    if STATE["collectors"] and scorer.backend != "keras":
        _collect(inputs, preds)
    # predictions and probabilities are encoded once, for the log line and the answer
    encoded = {"prediction": json_bytes(preds)}
    answer = [b'{"predictions":', encoded["prediction"]]
    if probs is not None:
        encoded["probabilities"] = json_bytes(probs)
        answer += [b',"probabilities":', encoded["probabilities"], b',"classes":', STATE["classes"]]
    try:
        STATE["log"].write_columns(
            _common(request_id, started, 200), len(preds), {"inputs": inputs}, encoded
        )
    except OSError as exc:  # e.g. a full disk: no prediction goes out that the log lacks
        raise RequestError(
            f"the service cannot write its request log ({exc.strerror or exc}); the "
            "prediction is withheld, as every answer is logged first. Retry later.",
            503,
        ) from None
    rest = json_bytes({"request_id": request_id, "model": STATE["model"]})
    return b"".join(answer) + b"," + rest[1:]


@rawhttp
def run(request):
    """Score one HTTP request; answer JSON with a fitting status code."""
    started = time.perf_counter()
    request_id = request.headers.get("x-request-id") or _server_request_id()
    # the key first: a refused request is counted in the server log (KeyChecker), never
    # written to the request log, so no one without a key can fill it
    checker = STATE["checker"]
    if checker is not None and not checker.check(request.headers.get("Authorization")):
        error = (
            "missing or wrong key; send 'Authorization: Bearer <key>' with a key from "
            "`amlkit keys <endpoint>`."
        )
        body = {"error": error, "request_id": request_id}
        return _answer(401, body, request_id, {"WWW-Authenticate": "Bearer"})
    try:
        if request.method != "POST":
            raise RequestError(f"method {request.method} is not allowed; POST JSON rows.", 405)
        return _answer(200, _score(request, request_id, started), request_id)
    except RequestError as exc:
        with contextlib.suppress(OSError):  # the refusal goes out; the server's log says why
            STATE["log"].write([{"error": exc.message}], _common(request_id, started, exc.status))
        return _answer(exc.status, {"error": exc.message, "request_id": request_id}, request_id)
