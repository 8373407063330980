"""Build a service folder ``deployed_models/<service>/`` from a registered model version.

The folder serves locally and is what Azure uploads: ``scoring_script.py``, ``model/`` (the
version, sha256 checked, with ``model.onnx`` and ``serving.json``), ``amlkit/`` (the modules
it imports, found from its imports rather than listed by hand), ``environment.yml`` (the lean
environment of its backend, :mod:`.environments`: the inference server and what the runtime
imports), ``deployment_config.json``, ``logging.json`` and ``service_metadata.json`` (with the
sha256 of every model file, which the service checks before loading).
Packaging again swaps in a complete new folder by renames, under the service's file lock; the
next packaging cleans up after one that was killed. :func:`write_service_code` writes all but
the model, for a service folder and for the Azure ML specs' code folders.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import logging
import os
import pickletools
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amlkit import io, paths
from amlkit.config import DeploymentConfig
from amlkit.names import check_name
from amlkit.registry import store
from amlkit.serving import environments

logger = logging.getLogger(__name__)

LOG_LEVELS = {"azmlinfsrv": "WARNING", "gunicorn.access": "WARNING", "gunicorn.error": "INFO"}
QUIET_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s"}
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        name: {"level": level, "handlers": ["stderr"], "propagate": False}
        for name, level in (LOG_LEVELS | {"amlkit": "INFO"}).items()
    },
}


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the amlkit package folder
SCORING_SCRIPT = Path(__file__).with_name("scoring_script.py")
BATCH_DRIVER = Path(__file__).with_name("batch_driver.py")
RUNTIME_MODULE = "amlkit.serving.runtime"
SERVICE_FILE = "service_metadata.json"  # what makes a folder a service that may be replaced


def module_file(name: str) -> Path | None:
    """Return the source file of amlkit module ``name``, or None when it is not a module."""
    if name != "amlkit" and not name.startswith("amlkit."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imported(path: Path, module: str, backend: str) -> set[str]:
    """Return the amlkit modules ``module`` imports (in the runtime, only ``_load_<backend>``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    other_loaders = [
        fn
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef)
        and module == RUNTIME_MODULE
        and fn.name.startswith("_load_")
        and fn.name != f"_load_{backend}"
    ]
    skipped = {id(node) for fn in other_loaders for node in ast.walk(fn)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            # "from amlkit.serving import auth" names a module; "from x import name" does not
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if module_file(name)}


def pickled_modules(path: str | Path) -> set[str]:
    """Return the amlkit modules a pickle refers to, read from its opcodes (nothing unpickled)."""
    found = set()
    with open(path, "rb") as handle:
        for opcode, arg, _ in pickletools.genops(handle):
            if isinstance(arg, str):
                found.add(arg.split(" ")[0] if opcode.name == "GLOBAL" else arg)
    return {name for name in found if name != "amlkit" and module_file(name)}


def service_modules(
    backend: str, extra: Iterable[str] = (), script: Path = SCORING_SCRIPT
) -> dict[str, Path]:
    """Return ``{dotted name: file}`` of the modules a ``backend`` service imports, sorted.

    The closure of the entry script's amlkit imports (top-level or in functions) and
    ``extra`` (its model's :func:`pickled_modules`), with every package ``__init__``;
    ``script`` is the online scoring script or the batch deployment's :data:`BATCH_DRIVER`.
    """
    todo = _imported(script, "", backend) | {n for n in extra if module_file(n)}
    found: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in found:
            continue
        found[name] = path
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}
        todo |= _imported(path, name, backend)
    return dict(sorted(found.items()))


def copy_modules(modules: dict[str, Path], folder: Path) -> None:
    """Copy module files into ``folder/amlkit/...`` as they lie in the package."""
    for path in modules.values():
        target = folder / path.relative_to(PACKAGE_DIR.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())


def choose_version(name: str, version: int | str | None = None) -> tuple[store.ModelVersion, str]:
    """Return the version to package or score and why it was chosen.

    ``version`` None or ``"champion"``: the champion (``champion.json``, else the MLflow alias
    ``champion``); refused with ModelNotFoundError, saying how to record one, when neither
    names it: the champion is never guessed. ``"latest"`` or a number: that version.
    """
    asked = "champion" if version is None else version
    if asked == store.CHAMPION_ALIAS:
        found = store.champion_source(name)
        chosen = store.get_version(name, found[0] if found else asked)
        why = f"the champion, from {found[1] if found else store.CHAMPION_FILE}"
    else:
        chosen = store.get_version(name, asked)
        why = "the newest version, as asked" if asked == "latest" else "as asked"
    logger.info("chose %s version %s: %s", name, chosen.version, why)
    return chosen, why


def resolve_model_dir(name: str, version: int | str | None = None) -> Path:
    """Return a version folder (:func:`choose_version`); FileNotFoundError when there is none."""
    try:
        return choose_version(name, version)[0].path
    except store.ModelNotFoundError as exc:
        raise FileNotFoundError(str(exc)) from None


def _copy_verified(src: Path, dst: Path, metadata: dict[str, Any]) -> None:
    """Copy a version folder, checking the source and then the copy against its metadata.

    ModelIntegrityError names a registered file that changed (``metadata`` is the one of
    ``src``, checked by :func:`amlkit.serving.runtime.verified_version_dir`).
    """
    from amlkit.serving.runtime import verified_version_dir

    verified_version_dir(src)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    try:
        verified_version_dir(dst)
    except store.ModelIntegrityError as exc:
        raise OSError(f"the copy of {src} ({metadata.get('name')}) differs: {exc} Retry.") from None


def _default_parity_rows(metadata: dict[str, Any]) -> Any:
    data = metadata.get("data") or {}
    try:
        from amlkit.data import preprocess

        split = preprocess.load_processed(data["dataset"], data.get("version", "latest"))
        return split["test"] if isinstance(split, dict) else split.test
    except Exception as exc:  # no processed data: the fallback records why
        logger.info("no parity rows from processed data (%s)", exc)
        return None


def _fast_path(model_dst: Path, metadata: dict[str, Any], parity_rows: Any) -> dict[str, Any]:
    if metadata.get("flavor", "sklearn") != "sklearn":
        return {"backend": metadata.get("flavor", "keras"), "reason": "not a scikit-learn model"}
    from amlkit.serving.onnx import convert_and_check, required_columns
    from amlkit.serving.runtime import Scorer

    pipeline = Scorer(model_dst, backend="sklearn")._model
    if parity_rows is None:
        parity_rows = _default_parity_rows(metadata)
    columns = list(metadata["feature_columns"])
    required = [] if parity_rows is None else required_columns(pipeline, parity_rows, columns)
    onnx_bytes, info = convert_and_check(pipeline, metadata, parity_rows, required=required)
    info["required_columns"] = required  # both backends refuse a request missing one
    if onnx_bytes is not None:
        (model_dst / "model.onnx").write_bytes(onnx_bytes)
        sha = io.sha256_file(model_dst / "model.onnx")
        info |= {"backend": "onnx", "onnx_file": "model.onnx", "onnx_sha256": sha}
        logger.info("service uses ONNX: %s", info["parity"])
    else:
        info["backend"] = "sklearn"
        logger.warning("service serves the pickled pipeline: %s", info["reason"])
    io.write_json_atomic(model_dst / "serving.json", info)
    return info


def write_service_code(
    folder: Path,
    backend: str,
    deployment: dict[str, Any],
    *,
    service: str,
    pickled: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Path]:
    """Write everything of a service folder but the model: the code Azure ML uploads.

    ``scoring_script.py``, the amlkit modules it imports for ``backend`` (and those a pickled
    model refers to), ``deployment_config.json``, ``logging.json`` and the backend's lean
    ``environment.yml`` (with the data collector's client when the deployment collects data).

    Args:
        folder: the folder to write into (created).
        backend: ``onnx``, ``sklearn`` or ``keras``.
        deployment: ``deployment_config.json`` as JSON values.
        service: the service name recorded in its ``deployment_config.json``.
        pickled: amlkit modules a pickled model refers to (:func:`pickled_modules`).

    Returns:
        The amlkit modules copied, ``{dotted name: source file}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SCORING_SCRIPT, folder / "scoring_script.py")
    modules = service_modules(backend, pickled)
    copy_modules(modules, folder)
    collect = deployment.get("data_collection", {}).get("enabled", False)
    extras = environments.DATA_COLLECTOR if collect else ()
    environments.write_environment_file(folder / "environment.yml", backend, extras)
    io.write_json_atomic(folder / "deployment_config.json", {**deployment, "service": service})
    io.write_json_atomic(folder / "logging.json", QUIET_LOGGING)
    return modules


def package_service(
    model_dir: str | Path | None = None,
    *,
    model_name: str | None = None,
    version: int | str | None = None,
    service: str | None = None,
    parity_rows: Any = None,
    deployment_config: DeploymentConfig | None = None,
    fast_path: bool = True,
    register: bool = False,
) -> Path:
    """Package a registered model version as the service folder ``deployed_models/<service>``.

    ``register``: also register the folder in the MLflow registry as ``<model>-packaged``
    (:func:`amlkit.serving.packaged_model.register_packaged`, what ``amlkit package`` does),
    the exact version a deployment names; the folder's ``service_metadata.json`` records it.

    Give ``model_dir``, or ``model_name`` and ``version`` (:func:`resolve_model_dir`).
    ``parity_rows`` (for the ONNX check) default to the processed test split the metadata names.
    ``service`` must be a plain name (:func:`amlkit.names.check_name`); an existing folder of
    that name is replaced only when it is a service (it has ``service_metadata.json``).
    Default: the endpoint's name, which follows the model and its data set
    (:meth:`amlkit.config.DeploymentConfig.resolved`: ``amlkit-cars`` for a cars model).
    """
    if service is not None:
        check_name("service", service)  # before the model is looked up or anything moves
    if model_dir is None:
        if not model_name:
            raise ValueError("give model_dir or model_name (and version) to package_service")
        model_dir = resolve_model_dir(model_name, version)
    src = Path(model_dir)
    if not (src / "model_metadata.json").is_file():
        raise FileNotFoundError(f"{src} has no model_metadata.json; is it a registered version?")
    metadata = io.read_json(src / "model_metadata.json")
    trained_on = metadata.get("data") or {}  # the endpoint is named after what it serves
    dep = (
        (deployment_config or DeploymentConfig.load())
        .resolved(dataset=trained_on.get("dataset"), model=metadata.get("name"))
        .to_dict()
    )
    service = service or dep["endpoint_name"]
    final = service_target(service)  # the configured endpoint name is checked here too
    final.parent.mkdir(parents=True, exist_ok=True)
    with io.locked(f"service-{service}"):  # one packaging of a service at a time
        _recover(final)
        _check_replaceable(final)
        folder = _write_service(src, final, metadata, dep, parity_rows, fast_path)
        if register:
            from amlkit.serving.packaged_model import register_packaged

            register_packaged(folder)
        return folder


def service_target(service: str) -> Path:
    """Return ``deployed_models/<service>`` for a checked name, refusing a link that leads out.

    Raises:
        ValueError: the name is not a plain name, or the folder (or ``deployed_models``) is a
            symbolic link that leads out of ``deployed_models`` or the project.
    """
    base = paths.deployed_models_dir()
    return paths.check_inside(base / check_name("service", service), base)


def _check_replaceable(final: Path) -> None:
    """Refuse to replace ``final`` unless it is absent or a service folder packaging made."""
    if final.is_symlink():
        problem = "is a symbolic link"
    elif final.exists() and not (final / SERVICE_FILE).is_file():
        problem = f"exists and is not a service (it has no {SERVICE_FILE})"
    else:
        return
    raise ValueError(
        f"{final} {problem}, so packaging will not replace it; move it out of the way or "
        "choose another service name"
    )


def _recover(final: Path) -> None:
    """Undo what a killed packaging of ``final`` left: a swap stopped half-way is rolled back.

    A folder moved aside is put back; one left aside is deleted only when it is a service.
    """
    temporaries = f".{glob.escape(final.name)}.????????"
    for old in sorted(final.parent.glob(temporaries + ".old")):
        moved = old / final.name
        if not final.exists() and moved.is_dir():
            logger.warning("restoring %s, moved aside by a packaging that was killed", final)
            os.rename(moved, final)
        if moved.exists() and not (moved / SERVICE_FILE).is_file():
            logger.warning("keeping %s: it holds a folder that is not a service", old)
            continue
        logger.warning("removing %s, left by a packaging that was killed", old)
        shutil.rmtree(old, ignore_errors=True)
    io.reclaim(final.parent, temporaries + ".partial")


def _write_service(
    src: Path,
    final: Path,
    metadata: dict[str, Any],
    dep: dict[str, Any],
    parity_rows: Any,
    fast_path: bool,
) -> Path:
    service = final.name
    stage = Path(tempfile.mkdtemp(prefix=f".{service}.", suffix=".partial", dir=final.parent))
    try:
        _copy_verified(src, stage / "model", metadata)
        if fast_path:
            serving = _fast_path(stage / "model", metadata, parity_rows)
        else:
            serving = {"backend": metadata.get("flavor", "sklearn"), "reason": "fast path off"}
        backend = serving["backend"]
        files = sorted(p for p in (stage / "model").rglob("*") if p.is_file())  # fast path's too
        hashes = {p.relative_to(stage / "model").as_posix(): io.sha256_file(p) for p in files}
        model_file = stage / "model" / metadata.get("model_file", "model.pkl")
        pickled = pickled_modules(model_file) if backend == "sklearn" else set()
        modules = write_service_code(stage, backend, dep, service=service, pickled=pickled)
        model = {k: metadata.get(k) for k in ("name", "version")} | {"source": str(src)}
        io.write_json_atomic(
            stage / SERVICE_FILE,
            {
                "service": service,
                "endpoint_name": dep["endpoint_name"],
                "model": model | {"model_sha256": metadata.get("model_sha256")},
                "backend": serving.get("backend"),
                "backend_reason": serving.get("reason"),
                "parity": serving.get("parity", {}),
                "amlkit_modules": list(modules),
                "pickled_modules": sorted(pickled),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "model_files": hashes,
            },
        )
        old = None
        _check_replaceable(final)  # again: the folder may have changed while this one was built
        if final.exists():  # two renames: readers see the old or the new folder, complete
            old = Path(tempfile.mkdtemp(prefix=f".{service}.", suffix=".old", dir=final.parent))
            os.rename(final, old / service)
        os.rename(stage, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    logger.info("packaged %s (backend %s) at %s", service, serving.get("backend"), final)
    return final


def service_info(service_dir: str | Path) -> dict[str, Any]:
    """Return a service folder's ``service_metadata.json``."""
    return io.read_json(Path(service_dir) / SERVICE_FILE)
