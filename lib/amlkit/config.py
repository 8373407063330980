"""Load and validate the project's configuration files in ``config/``.

Five JSON files configure the project: ``azure_config.json`` (Azure ML's ``config.json``
fields; blank means local), ``data_config.json``, ``model_config.json``,
``deployment_config.json`` and ``logging_config.json``. Each has a declared shape below; a
missing file, an unknown key or a value of the wrong type is reported with the file, the
key path and what is expected, before any work starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amlkit import paths

CONFIG_FILES = (
    "azure_config",
    "data_config",
    "model_config",
    "deployment_config",
    "logging_config",
)


class ConfigError(ValueError):
    """A configuration file is missing, unreadable, or has a wrong or unknown key."""


# A spec is a mapping key -> field. A field is a tuple (types, required, nested) where nested
# is a spec for dict values, ("each", spec) for a dict of named entries, or None (free form).
Field = tuple[tuple[type, ...], bool, Any]
NUM = (int, float)
STR_LIST = (list,)

DATASET_SPEC: dict[str, Field] = {
    "source": ((str,), True, None),
    "target": ((str,), True, None),
    "task": ((str,), False, None),
    "description": ((str,), False, None),
    "id_columns": (STR_LIST, False, None),
    "drop_columns": (STR_LIST, False, None),
    "date_columns": (STR_LIST, False, None),
    "schema": ((dict, type(None)), False, None),
}

SPECS: dict[str, dict[str, Field]] = {
    "azure_config": {
        "subscription_id": ((str,), True, None),
        "resource_group": ((str,), True, None),
        "workspace_name": ((str,), True, None),
        "tenant_id": ((str,), False, None),
        "compute_cluster": ((str,), False, None),
    },
    "data_config": {
        "default_dataset": ((str,), True, None),
        "missing_values": (STR_LIST, True, None),
        "split": (
            (dict,),
            True,
            {
                "test_size": (NUM, True, None),
                "validation_size": (NUM, True, None),
                "random_state": ((int,), True, None),
                "stratify": ((bool,), True, None),
            },
        ),
        "ingestion": (
            (dict,),
            True,
            {
                "chunk_bytes": ((int,), True, None),
                "chunk_rows": ((int,), True, None),
                "max_failures_shown": ((int,), True, None),
                "id_like_unique_ratio": (NUM, True, None),
                "id_like_min_unique": ((int,), True, None),
            },
        ),
        "datasets": ((dict,), True, ("each", DATASET_SPEC)),
    },
    "model_config": {
        "random_state": ((int,), True, None),
        "cv_folds": ((int,), True, None),
        "search_iterations": ((int,), True, None),
        "primary_metric": (
            (dict,),
            True,
            {"classification": ((str,), True, None), "regression": ((str,), True, None)},
        ),
        "promotion_margin": (NUM, True, None),
        "candidates": (
            (dict,),
            True,
            (
                "each",
                {
                    "tasks": (STR_LIST, True, None),
                    "estimator": ((dict,), True, None),
                    "params": ((dict,), False, None),
                    "search_space": ((dict,), False, None),
                },
            ),
        ),
        "deep_learning": ((dict,), False, None),
    },
    "deployment_config": {
        "endpoint_name": ((str,), True, None),
        "auth_mode": ((str,), True, None),
        "instance_type": ((str,), True, None),
        "instance_count": ((int,), True, None),
        "request_settings": ((dict,), True, None),
        "liveness_probe": ((dict,), False, None),
        "readiness_probe": ((dict,), False, None),
        "traffic": ((dict,), True, None),
        "local": ((dict,), True, None),
        "limits": ((dict,), True, None),
        "request_log": ((dict,), True, None),
        "monitoring": ((dict,), False, None),
    },
    "logging_config": {
        "version": ((int,), True, None),
        "disable_existing_loggers": ((bool,), False, None),
        "formatters": ((dict,), False, None),
        "filters": ((dict,), False, None),
        "handlers": ((dict,), False, None),
        "loggers": ((dict,), False, None),
        "root": ((dict,), False, None),
    },
}

CHOICES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("data_config", "datasets", "*", "task"): ("classification", "regression"),
    ("deployment_config", "auth_mode"): ("key", "aml_token", "none"),
}


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list"}
    names |= {dict: "object", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check(name: str, obj: Any, spec: dict[str, Field], where: tuple[str, ...]) -> None:
    file = f"config/{name}.json"
    for key in obj:
        if key not in spec:
            known = ", ".join(sorted(spec))
            raise ConfigError(
                f"{file}: unknown key '{'.'.join((*where, key))}'; expected one of: {known}. "
                "Remove it or fix its spelling."
            )
    for key, (types, required, nested) in spec.items():
        path = (*where, key)
        dotted = ".".join(path)
        if key not in obj:
            if required:
                raise ConfigError(
                    f"{file}: missing key '{dotted}' ({_type_names(types)}); add it to the file."
                )
            continue
        value = obj[key]
        # bool is a subclass of int: do not accept true/false where a number is expected.
        wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if wrong:
            raise ConfigError(
                f"{file}: key '{dotted}' must be {_type_names(types)}, "
                f"got {type(value).__name__} {value!r}."
            )
        choices = CHOICES.get((name, *path)) or CHOICES.get(
            (name, *path[:-2], "*", path[-1]) if len(path) >= 3 else ("",)
        )
        if choices and value not in choices:
            raise ConfigError(
                f"{file}: key '{dotted}' must be one of {', '.join(choices)}; got {value!r}."
            )
        if isinstance(nested, dict) and isinstance(value, dict):
            _check(name, value, nested, path)
        elif isinstance(nested, tuple) and nested[0] == "each":
            for entry, body in value.items():
                if not isinstance(body, dict):
                    raise ConfigError(
                        f"{file}: key '{dotted}.{entry}' must be an object, "
                        f"got {type(body).__name__}."
                    )
                _check(name, body, nested[1], (*path, entry))


def validate(name: str, obj: Any) -> dict[str, Any]:
    """Check a parsed configuration against its declared shape.

    Args:
        name: the file's stem, one of :data:`CONFIG_FILES`.
        obj: the parsed JSON.

    Returns:
        ``obj`` unchanged when it is valid.

    Raises:
        ConfigError: naming the file, the key and what is expected.
    """
    if name not in SPECS:
        raise ConfigError(f"unknown configuration '{name}'; expected one of {CONFIG_FILES}")
    if not isinstance(obj, dict):
        raise ConfigError(f"config/{name}.json must hold a JSON object, got {type(obj).__name__}")
    _check(name, obj, SPECS[name], ())
    return obj


def load_config(name: str, config_dir: str | Path | None = None) -> dict[str, Any]:
    """Load and validate ``config/<name>.json``.

    Args:
        name: the file's stem, for example ``"data_config"``.
        config_dir: the folder to read from; defaults to :func:`amlkit.paths.config_dir`.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing, is not JSON, or does not match its shape.
    """
    folder = Path(config_dir) if config_dir is not None else paths.config_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        raise ConfigError(
            f"config/{name}.json is missing (looked in {folder}); restore it from git "
            "(`git checkout config/`) or create it."
        )
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config/{name}.json is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}."
        ) from exc
    return validate(name, obj)


def load_all(config_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Load and validate every configuration file; the first problem is raised."""
    return {name: load_config(name, config_dir) for name in CONFIG_FILES}


def azure_workspace_configured(azure_config: dict[str, Any]) -> bool:
    """Return True when ``azure_config.json`` names a workspace (all three fields filled)."""
    keys = ("subscription_id", "resource_group", "workspace_name")
    filled = [bool(str(azure_config.get(k, "")).strip()) for k in keys]
    if any(filled) and not all(filled):
        missing = [k for k, ok in zip(keys, filled, strict=True) if not ok]
        raise ConfigError(
            f"config/azure_config.json: {', '.join(missing)} blank while other fields are set; "
            "fill all three to use a workspace, or blank all three to stay local."
        )
    return all(filled)


def dataset_config(data_config: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """Return the entry for ``dataset`` in ``data_config.json``, or None if not declared."""
    return data_config["datasets"].get(dataset)
