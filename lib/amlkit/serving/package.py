"""Build a service folder ``deployed_models/<service>/`` from a registered model version.

Layout of a service folder (the same folder serves locally and is what Azure uploads)::

    scoring_script.py        Azure ML contract: init() / run()
    model/                   copy of the version folder (sha256 checked) + model.onnx, serving.json
    amlkit/                  the amlkit modules this service imports, so the folder runs where
                             amlkit is not installed (Azure): see :mod:`.imports`
    environment.yml          the project's conda spec
    deployment_config.json   endpoint, auth, instances, request settings, traffic, limits
    logging.json             quiet server logging (azmlinfsrv reads it from the app root)
    service_metadata.json    model, backend (onnx, sklearn or keras) and why, parity figures,
                             the sha256 of every model file (checked when the service
                             starts), the amlkit modules carried

Re-packaging policy: a service is not a version. Packaging the same service name again builds
the new folder completely beside the old one, then swaps them with two renames (the old
folder is moved aside, the new one moved in, the old one deleted); readers see either the
old or the new complete folder, never a half-written one. Blue/green lives in Azure
deployments (see :mod:`amlkit.azure.endpoints`); locally, package a second service name
(for example ``<endpoint>-green``) to run two side by side.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amlkit import io, paths
from amlkit.config import DeploymentConfig
from amlkit.registry import store
from amlkit.serving import imports

logger = logging.getLogger(__name__)

QUIET_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s"}
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        }
    },
    "loggers": {
        "azmlinfsrv": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "amlkit": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}

MINIMAL_ENVIRONMENT = """\
name: amlkit
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
      - azureml-inference-server-http>=1.4
      - scikit-learn>=1.5
      - pandas>=2.2
      - numpy>=1.26
      - onnxruntime>=1.18
      - cloudpickle
"""


def resolve_model_dir(name: str, version: int | str | None = None) -> Path:
    """Return a version folder; version None or "champion": the champion, else the newest.

    Raises:
        FileNotFoundError: the model or version does not exist; lists what does.
    """
    if version is None or version == "champion":
        version = "champion" if store.read_champion(name) else "latest"
    try:
        return store.get_version(name, version).path
    except store.ModelNotFoundError as exc:
        raise FileNotFoundError(str(exc)) from None


def _copy_verified(src: Path, dst: Path, metadata: dict[str, Any]) -> dict[str, str]:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    hashes = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(src).as_posix()
        if "__pycache__" in rel:
            continue
        want, got = io.sha256_file(path), io.sha256_file(dst / rel)
        if want != got:
            raise OSError(f"copy of {rel} differs from {path} (sha256 {got} != {want}); retry")
        hashes[rel] = got
    model_file = metadata.get("model_file")
    expected = metadata.get("model_sha256")
    if model_file and expected and hashes.get(model_file) != expected:
        raise ValueError(
            f"{src / model_file} has sha256 {hashes.get(model_file)}, but model_metadata.json "
            f"records {expected}: the version folder was changed after registration; "
            "register a new version."
        )
    return hashes


def _default_parity_rows(metadata: dict[str, Any]) -> Any:
    data = metadata.get("data") or {}
    try:
        from amlkit.data import preprocess  # written by another module; optional here

        split = preprocess.load_processed(data["dataset"], data.get("version", "latest"))
        return split["test"] if isinstance(split, dict) else split.test
    except Exception as exc:  # no processed data: the fallback records why
        logger.info("no parity rows from processed data (%s)", exc)
        return None


def _fast_path(model_dst: Path, metadata: dict[str, Any], parity_rows: Any) -> dict[str, Any]:
    if metadata.get("flavor", "sklearn") != "sklearn":
        return {"backend": metadata.get("flavor", "keras"), "reason": "not a scikit-learn model"}
    from amlkit.serving.onnx import convert_and_check
    from amlkit.serving.runtime import Scorer

    pipeline = Scorer(model_dst, backend="sklearn")._model
    if parity_rows is None:
        parity_rows = _default_parity_rows(metadata)
    result = convert_and_check(pipeline, metadata, parity_rows)
    info: dict[str, Any] = {"reason": result.reason, "parity": result.parity}
    if result.ok and result.onnx_bytes is not None:
        (model_dst / "model.onnx").write_bytes(result.onnx_bytes)
        info |= {
            "backend": "onnx",
            "onnx_file": "model.onnx",
            "onnx_sha256": io.sha256_file(model_dst / "model.onnx"),
            **result.serving_fields(),
        }
        logger.info("service uses ONNX: %s", result.parity)
    else:
        info["backend"] = "sklearn"
        logger.warning("service serves the pickled pipeline: %s", result.reason)
    io.write_json_atomic(model_dst / "serving.json", info)
    return info


def _environment_file() -> Path:
    """Return the project's environment.yml, else the repository's (a temporary root has none)."""
    here = paths.project_root() / "environment.yml"
    return here if here.is_file() else imports.PACKAGE_DIR.parents[1] / "environment.yml"


def _swap_into_place(stage: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.rename(final, old / final.name)
    os.rename(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def package_service(
    model_dir: str | Path | None = None,
    *,
    model_name: str | None = None,
    version: int | str | None = None,
    service: str | None = None,
    parity_rows: Any = None,
    deployment_config: DeploymentConfig | None = None,
    environment_file: str | Path | None = None,
    fast_path: bool = True,
) -> Path:
    """Package a registered model version as a service folder.

    Args:
        model_dir: the version folder; or give ``model_name`` (and ``version``).
        model_name: registered model name under ``trained_models/``.
        version: version number, or None / "champion" for the champion (else the newest).
        service: service folder name; defaults to the config's ``endpoint_name``.
        parity_rows: a pandas frame of test rows for the ONNX parity check; default the
            processed test split named in the model metadata, when available.
        deployment_config: settings; default ``config/deployment_config.json``.
        environment_file: conda spec to copy; default ``<root>/environment.yml``.
        fast_path: try the ONNX conversion (False: always serve the pickled pipeline).

    Returns:
        The service folder ``deployed_models/<service>``.
    """
    if model_dir is None:
        if not model_name:
            raise ValueError("give model_dir or model_name (and version) to package_service")
        model_dir = resolve_model_dir(model_name, version)
    src = Path(model_dir)
    meta_path = src / "model_metadata.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{src} has no model_metadata.json; is it a registered version?")
    metadata = io.read_json(meta_path)
    dep = (deployment_config or DeploymentConfig.load()).to_dict()
    service = service or dep["endpoint_name"]
    final = paths.deployed_models_dir() / service
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{service}.", suffix=".partial", dir=final.parent))
    try:
        _copy_verified(src, stage / "model", metadata)
        if fast_path:
            serving = _fast_path(stage / "model", metadata, parity_rows)
        else:
            serving = {"backend": metadata.get("flavor", "sklearn"), "reason": "fast path off"}
        model = stage / "model"  # every file the service loads, those of the fast path too
        files = sorted(p for p in model.rglob("*") if p.is_file())
        hashes = {p.relative_to(model).as_posix(): io.sha256_file(p) for p in files}
        shutil.copyfile(imports.SCORING_SCRIPT, stage / "scoring_script.py")
        backend = serving["backend"]
        pickled = set()
        if backend == "sklearn":
            model_file = stage / "model" / metadata.get("model_file", "model.pkl")
            pickled = imports.pickled_modules(model_file)
        modules = imports.service_modules(backend, pickled)
        imports.copy_modules(modules, stage)
        env_src = Path(environment_file) if environment_file else _environment_file()
        if env_src.is_file():
            shutil.copyfile(env_src, stage / "environment.yml")
        else:
            logger.warning("%s is missing; writing a minimal environment.yml", env_src)
            (stage / "environment.yml").write_text(MINIMAL_ENVIRONMENT, encoding="utf-8")
        io.write_json_atomic(stage / "deployment_config.json", {**dep, "service": service})
        io.write_json_atomic(stage / "logging.json", QUIET_LOGGING)
        io.write_json_atomic(
            stage / "service_metadata.json",
            {
                "service": service,
                "endpoint_name": dep["endpoint_name"],
                "model": {
                    "name": metadata.get("name"),
                    "version": metadata.get("version"),
                    "source": str(src),
                    "model_sha256": metadata.get("model_sha256"),
                },
                "backend": serving.get("backend"),
                "backend_reason": serving.get("reason"),
                "parity": serving.get("parity", {}),
                "amlkit_modules": list(modules),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "model_files": hashes,
            },
        )
        _swap_into_place(stage, final)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    logger.info("packaged %s (backend %s) at %s", service, serving.get("backend"), final)
    return final


def service_info(service_dir: str | Path) -> dict[str, Any]:
    """Return a service folder's ``service_metadata.json``."""
    return io.read_json(Path(service_dir) / "service_metadata.json")
