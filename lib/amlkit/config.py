"""The five JSON files in ``config/``, one pydantic model each: keys, types and defaults.

Loading reports a problem with the file, the key and what is expected, before any work.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

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


class Section(BaseModel):
    """A part of a configuration file: unknown keys are refused, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Task = Literal["classification", "regression"]


class ConfigFile(Section):
    """A whole configuration file, ``config/<file_name>.json``."""

    file_name: ClassVar[str]

    @classmethod
    def load(cls, config_dir: str | Path | None = None) -> Self:
        """Load and validate ``config/<file_name>.json``; ConfigError when missing or invalid."""
        folder = Path(config_dir) if config_dir is not None else paths.config_dir()
        path = folder / f"{cls.file_name}.json"
        where = f"config/{cls.file_name}.json"
        if not path.is_file():
            raise ConfigError(
                f"{where} is missing (looked in {folder}); restore it from git "
                "(`git checkout config/`) or create it."
            )
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from exc
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any, source: str | Path | None = None) -> Self:
        """Validate a parsed file; errors name the file, the key and what is expected.

        ``source`` names the file in errors (default: the one in ``config/``).
        """
        where = str(source) if source is not None else f"config/{cls.file_name}.json"
        if not isinstance(obj, dict):
            raise ConfigError(f"{where} must hold a JSON object, got {type(obj).__name__}.")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_explain(exc.errors()[0], cls)}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain JSON values, defaults filled in."""
        return self.model_dump(mode="json", by_alias=True)


_TYPE_WORDS = {"int": "integer", "float": "number", "str": "string", "bool": "true/false"}
_TYPE_WORDS |= {"list": "list", "dict": "object", "model": "object"}


def _explain(error: Any, model: type[BaseModel]) -> str:
    """Turn one pydantic error into a sentence naming the key and what is expected."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        known = ", ".join(sorted(_fields_at(model, loc[:-1])))
        return f"unknown key '{key}'; expected one of: {known}. Remove it or fix its spelling."
    if kind == "missing":
        return f"missing key '{key}'; add it to the file."
    if kind == "literal_error":
        expected = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"key '{key}' must be one of {expected}; got {value!r}."
    if kind.endswith("_type") or kind in ("model_type", "dict_type"):
        word = _TYPE_WORDS.get(kind.removesuffix("_type").removesuffix("_parsing"), kind)
        return f"key '{key}' must be {word}, got {type(value).__name__} {value!r}."
    where = f"key '{key}': " if key else ""
    if kind == "value_error":  # our own validators say what is wrong and what to do
        return f"{where}{error['msg'].removeprefix('Value error, ')}."
    return f"{where}{error['msg']} (got {value!r})."


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Return the field names of the (nested) model at ``loc``."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            args = getattr(getattr(current, "__args__", None), "__iter__", None)
            current = current.__args__[-1] if args else current
            continue
        current = field.annotation
        for arg in getattr(current, "__args__", ()):  # dict[str, Model] or Model | None
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    fields = getattr(current, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]


class ComputeSettings(Section):
    """The compute cluster jobs run on: it scales from 0 nodes and back after ``idle_time_s``."""

    vm_size: str = "Standard_DS3_v2"
    max_nodes: int = Field(4, gt=0)
    idle_time_s: int = Field(1800, ge=0)
    tier: Literal["dedicated", "low_priority"] = "dedicated"


class DistributedSettings(Section):
    """Distributed Keras training (05): worker processes, one node each, TF_CONFIG from Azure."""

    worker_count: int = Field(2, gt=0)


class RecurrenceSettings(Section):
    """A recurrence of Azure ML schedules (``frequency`` every ``interval``, at hours:minutes)."""

    enabled: bool = False
    frequency: Literal["minute", "hour", "day", "week", "month"] = "week"
    interval: int = Field(1, gt=0)
    week_days: list[
        Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    ] = ["monday"]
    hours: list[int] = [2]
    minutes: list[int] = [0]
    time_zone: str = "UTC"


class AzureConfig(ConfigFile):
    """``azure_config.json``: Azure ML's ``config.json`` fields; all three blank means local.

    Beside the workspace: the compute cluster (name and scaling), the pinned base image of
    every Azure ML environment, the experiment that jobs report to, distributed training,
    and the optional recurrence of the training pipeline.
    """

    file_name: ClassVar[str] = "azure_config"

    subscription_id: str = ""
    resource_group: str = ""
    workspace_name: str = ""
    tenant_id: str = ""
    compute_cluster: str = "cpu-cluster"
    compute: ComputeSettings = ComputeSettings()
    base_image: str = Field(
        "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20250601.v1", pattern=r":[^:/]+$"
    )
    experiment_name: str = "amlkit"
    distributed: DistributedSettings = DistributedSettings()
    pipeline_schedule: RecurrenceSettings = RecurrenceSettings()

    @model_validator(mode="after")
    def _all_or_none(self) -> Self:
        filled = {k: bool(getattr(self, k).strip()) for k in WORKSPACE_KEYS}
        if any(filled.values()) and not all(filled.values()):
            missing = ", ".join(k for k, ok in filled.items() if not ok)
            raise ValueError(
                f"{missing} blank while other fields are set; fill all three to use a "
                "workspace, or blank all three to stay local"
            )
        return self

    @property
    def workspace_configured(self) -> bool:
        """True when the three workspace fields are filled."""
        return all(getattr(self, k).strip() for k in WORKSPACE_KEYS)


WORKSPACE_KEYS = ("subscription_id", "resource_group", "workspace_name")


class ColumnSchema(Section):
    """One column of a data set's schema."""

    type: Literal["numeric", "integer", "categorical", "boolean", "datetime", "text"]
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


Schema = dict[str, ColumnSchema]


class DatasetConfig(Section):
    """A declared data set."""

    source: str
    target: str
    task: Task | None = None
    description: str = ""
    id_columns: list[str] = []
    drop_columns: list[str] = []
    date_columns: list[str] = []
    columns: Schema | None = Field(default=None, alias="schema")


class SplitConfig(Section):
    """How 03 splits a data set (shares of all rows)."""

    test_size: float = Field(0.2, gt=0, lt=1)
    validation_size: float = Field(0.2, ge=0, lt=1)
    random_state: int = 42
    stratify: bool = True

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Self:
        if self.test_size + self.validation_size >= 1:
            raise ValueError(
                f"test_size {self.test_size} + validation_size {self.validation_size} leaves "
                "no training rows; make their sum smaller than 1"
            )
        return self


class IngestionConfig(Section):
    """How 01 reads files: chunk sizes and the ID-like column rule."""

    chunk_bytes: int = Field(8 * 2**20, gt=0)
    chunk_rows: int = Field(50_000, gt=0)
    max_failures_shown: int = Field(5, gt=0)
    id_like_unique_ratio: float = Field(0.5, gt=0, le=1)
    id_like_min_unique: int = Field(50, gt=0)


class DataConfig(ConfigFile):
    """``data_config.json``: the data sets, missing-value tokens, split and ingestion."""

    file_name: ClassVar[str] = "data_config"

    default_dataset: str
    missing_values: list[str] = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?"]
    split: SplitConfig = SplitConfig()
    ingestion: IngestionConfig = IngestionConfig()
    datasets: dict[str, DatasetConfig] = {}

    def dataset(self, name: str) -> DatasetConfig | None:
        """Return the declaration of data set ``name``, or None."""
        return self.datasets.get(name)


Distribution = dict[Literal["loguniform", "uniform", "randint", "choice"], list[Any]]

# The modules an estimator may come from: the file must not import arbitrary code.
ESTIMATOR_MODULES = (
    "sklearn.linear_model", "sklearn.ensemble", "sklearn.tree", "sklearn.neighbors",
    "sklearn.svm", "sklearn.naive_bayes", "sklearn.neural_network", "sklearn.dummy",
    "sklearn.discriminant_analysis", "sklearn.kernel_ridge", "sklearn.gaussian_process",
)  # fmt: skip


def _check_distribution(name: str, spec: Distribution) -> None:
    """Raise ValueError unless ``spec`` is one well-formed search-space entry."""
    if len(spec) != 1:
        raise ValueError(
            f"{name} = {spec!r}; expected one of {{'loguniform': [lo, hi]}}, "
            "{'uniform': [lo, hi]}, {'randint': [lo, hi]}, {'choice': [values...]}"
        )
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not args:
            raise ValueError(f"{name}.choice must be a non-empty list")
        return
    numbers = len(args) == 2 and all(
        isinstance(a, int | float) and not isinstance(a, bool) for a in args
    )
    if not numbers or not args[0] < args[1]:
        raise ValueError(f"{name}.{kind} = {args!r}; expected [low, high] numbers with low < high")
    if kind == "loguniform" and args[0] <= 0:
        raise ValueError(f"{name}.loguniform low must be > 0, got {args[0]!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ValueError(f"{name}.randint = {args!r} must be integers")


class CandidateConfig(Section):
    """A scikit-learn candidate: estimator class, fixed params, search space per task.

    ``randint`` excludes its high bound, as in scipy.
    """

    tasks: list[Task]
    estimator: dict[Task, str]
    params: dict[Task, dict[str, Any]] = {}
    search_space: dict[Task, dict[str, Distribution]] = {}

    @model_validator(mode="after")
    def _well_formed(self) -> Self:
        missing = [t for t in self.tasks if t not in self.estimator]
        if missing:
            raise ValueError(
                f"estimator has no entry for {missing}; add one or remove it from tasks"
            )
        for task, path in self.estimator.items():
            if path.rpartition(".")[0] not in ESTIMATOR_MODULES:
                raise ValueError(
                    f"estimator.{task} = {path!r} is not allowed; use a class from one of "
                    f"{', '.join(ESTIMATOR_MODULES)}"
                )
        for task, space in self.search_space.items():
            for name, spec in space.items():
                _check_distribution(f"search_space.{task}.{name}", spec)
        return self

    def estimator_for(self, task: str, random_state: int | None = None) -> Any:
        """Return an unfitted estimator for ``task``, its params and the seed (or ConfigError)."""
        from sklearn.base import BaseEstimator

        path = self.estimator[cast(Task, task)]
        module_name, _, class_name = path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
            raise ConfigError(
                f"config/model_config.json: estimator {path!r}: {module_name} has no estimator "
                f"class {class_name!r}; check the spelling."
            )
        params = dict(self.params.get(cast(Task, task), {}))
        try:
            estimator = cls(**params)
        except TypeError as exc:
            raise ConfigError(
                f"config/model_config.json: params.{task} = {params!r} does not fit "
                f"{class_name}: {exc}"
            ) from exc
        if random_state is not None and "random_state" in estimator.get_params():
            estimator.set_params(random_state=params.get("random_state", random_state))
        valid = estimator.get_params(deep=False)
        for name in self.search_space.get(cast(Task, task), {}):
            if name not in valid:
                raise ConfigError(
                    f"config/model_config.json: search_space.{task}.{name}: {class_name} has "
                    f"no parameter {name!r}; valid ones: {', '.join(sorted(valid))}."
                )
        return estimator

    def distributions_for(self, task: str, prefix: str = "model__") -> dict[str, Any]:
        """Return the search space of ``task`` as scipy distributions (lists for choices).

        ``prefix`` names the estimator's Pipeline step.
        """
        from scipy import stats

        make = {"choice": list, "loguniform": lambda a: stats.loguniform(*a)}
        make |= {"uniform": lambda a: stats.uniform(a[0], a[1] - a[0])}
        make |= {"randint": lambda a: stats.randint(*a)}
        space = self.search_space.get(cast(Task, task), {})
        return {prefix + name: make[k](a) for name, s in space.items() for k, a in s.items()}


class DeepLearningConfig(Section):
    """The Keras network of notebook 05 and how it trains."""

    conv_filters: list[PositiveInt] = Field([16, 32], min_length=1)
    kernel_size: int = Field(3, gt=0)
    dense_units: int = Field(64, gt=0)
    dropout: float = Field(0.25, ge=0, lt=1)
    learning_rate: float = Field(0.002, gt=0)
    epochs: int = Field(40, gt=0)
    batch_size: int = Field(32, gt=0)
    patience: int = Field(6, gt=0)

    def override(
        self, changes: Mapping[str, Any] | None = None, /, **values: Any
    ) -> DeepLearningConfig:
        """Return a validated copy with ``changes``, then the ``values`` that are not None.

        Notebook parameters override the file this way; a bad key or value raises ConfigError.
        """
        update = dict(changes or {}) | {k: v for k, v in values.items() if v is not None}
        try:
            return DeepLearningConfig.model_validate(self.model_dump() | update)
        except ValidationError as exc:
            reason = _explain(exc.errors()[0], DeepLearningConfig)
            raise ConfigError(f"deep_learning override: {reason}") from None


class BanditSettings(Section):
    """Bandit early termination of sweep trials (Azure ML's ``BanditPolicy``)."""

    slack_factor: float = Field(0.1, gt=0)
    evaluation_interval: int = Field(1, gt=0)
    delay_evaluation: int = Field(0, ge=0)


class SweepConfig(Section):
    """An Azure ML sweep over the training notebook: sampling, limits, early termination.

    The search space is the candidates' ``search_space`` and the objective the task's primary
    metric on the validation split; ``bayesian`` sampling takes no early termination (Azure
    ML refuses the pair), so ``early_termination`` must then be null.
    """

    sampling_algorithm: Literal["random", "bayesian"] = "random"
    max_total_trials: int = Field(12, gt=0)
    max_concurrent_trials: int = Field(2, gt=0)
    timeout_s: int = Field(7200, gt=0)
    trial_timeout_s: int = Field(1800, gt=0)
    early_termination: BanditSettings | None = BanditSettings()

    @model_validator(mode="after")
    def _bayesian_runs_every_trial(self) -> Self:
        if self.sampling_algorithm == "bayesian" and self.early_termination is not None:
            raise ValueError(
                "bayesian sampling takes no early termination; set early_termination to null "
                "or sampling_algorithm to random"
            )
        return self


class ModelConfig(ConfigFile):
    """``model_config.json``: candidates, search, primary metrics, promotion, deep learning."""

    file_name: ClassVar[str] = "model_config"

    random_state: int = 42
    cv_folds: int = Field(5, ge=2)
    search_iterations: int = Field(8, gt=0)
    primary_metric: dict[Task, str] = {"classification": "f1_macro", "regression": "rmse"}
    promotion_margin: float = Field(0.0, ge=0)
    candidates: dict[str, CandidateConfig]
    deep_learning: DeepLearningConfig = DeepLearningConfig()
    sweep: SweepConfig = SweepConfig()

    def candidates_for(self, task: str) -> dict[str, CandidateConfig]:
        """Return the candidates for ``task`` in the file's order; ConfigError when none."""
        found = {name: c for name, c in self.candidates.items() if task in c.tasks}
        if not found:
            raise ConfigError(
                f"config/model_config.json has no candidate for task {task!r}; add {task!r} "
                "to the 'tasks' of at least one candidate."
            )
        return found


class RequestSettings(Section):
    """Azure ML's online request settings."""

    request_timeout_ms: int = Field(5000, gt=0)
    max_concurrent_requests_per_instance: int = Field(1, gt=0)
    max_queue_wait_ms: int = Field(500, ge=0)


class ProbeSettings(Section):
    """Azure ML's liveness or readiness probe."""

    initial_delay: int = 10
    period: int = 10
    timeout: int = 2
    failure_threshold: int = 30


class LocalServer(Section):
    """The local Azure ML inference server."""

    host: Literal["127.0.0.1"] = "127.0.0.1"
    port: int = Field(5001, ge=0, lt=65536)
    workers: int = Field(1, gt=0)
    startup_timeout_s: float = Field(60, gt=0)


class Limits(Section):
    """Request limits: larger bodies get 413, more rows 422."""

    max_body_bytes: int = Field(2**20, gt=0)
    max_rows: int = Field(1000, gt=0)


class RequestLogSettings(Section):
    """The request log's rotation."""

    max_bytes: int = Field(10 * 2**20, gt=0)
    backup_count: int = Field(5, ge=0)


class Thresholds(Section):
    """Azure ML model monitoring's metrics and default thresholds.

    Distances and rates flag above the threshold; the tests (KS, chi-squared) are p-values;
    feature attribution drift flags an NDCG of the importance ranking *below* its threshold.
    """

    normalized_wasserstein_distance: float = Field(0.1, ge=0)
    jensen_shannon_distance: float = Field(0.1, ge=0)
    population_stability_index: float = Field(0.1, ge=0)
    two_sample_kolmogorov_smirnov_test: float = Field(0.05, ge=0)
    pearsons_chi_squared_test: float = Field(0.05, ge=0)
    null_value_rate: float = Field(0.0, ge=0)
    data_type_error_rate: float = Field(0.0, ge=0)
    out_of_bounds_rate: float = Field(0.0, ge=0)
    normalized_discounted_cumulative_gain: float = Field(0.9, ge=0, le=1)


class QualityLimits(Section):
    """The retraining rule's limits on data-quality rates."""

    null_value_rate: float = Field(0.1, ge=0)
    data_type_error_rate: float = Field(0.01, ge=0)
    out_of_bounds_rate: float = Field(0.1, ge=0)


class RetrainingRule(Section):
    """When monitoring recommends retraining: when any check of ``decide_retraining`` fires.

    With ``require_significance`` a drifted feature counts only when its test's p-value
    agrees: on small windows a distance above 0.1 can be sampling noise. With
    ``attribution_drift`` the rule also fires when the ranking of feature importance changed
    (NDCG below ``thresholds.normalized_discounted_cumulative_gain``), where the model is given.
    """

    enabled: bool = True
    min_rows: int = Field(50, ge=0)
    max_drifted_share: float = Field(0.3, ge=0, le=1)
    require_significance: bool = True
    top_n_features: int = Field(3, ge=0)
    max_drifted_top_features: int = Field(0, ge=0)
    prediction_drift: bool = True
    attribution_drift: bool = True
    max_quality_rates: QualityLimits = QualityLimits()


class MonitorScheduleSettings(Section):
    """When Azure ML model monitoring runs, and on which serverless Spark compute."""

    frequency: Literal["hour", "day", "week", "month"] = "day"
    interval: int = Field(1, gt=0)
    hours: list[int] = [3]
    minutes: list[int] = [15]
    time_zone: str = "UTC"
    spark_instance_type: str = "standard_e4s_v3"
    spark_runtime_version: str = "3.4"


class MonitoringConfig(Section):
    """Monitoring: thresholds, bins, the retraining rule, Azure's schedule and alert e-mails."""

    thresholds: Thresholds = Thresholds()
    bins: int = Field(10, ge=2)
    retraining: RetrainingRule = RetrainingRule()
    schedule: MonitorScheduleSettings = MonitorScheduleSettings()
    alert_emails: list[str] = []


class DataCollection(Section):
    """Azure ML's data collector on online deployments: model inputs and outputs."""

    enabled: bool = True
    sampling_rate: float = Field(1.0, gt=0, le=1)


ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,31}$")  # Azure ML's rule, 3-32 chars
ENDPOINT_PLACEHOLDERS = ("dataset", "model")
ENDPOINT_RULE = "3 to 32 letters, digits or '-', starting with a letter"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NOT_IN_NAME = re.compile(r"[^a-z0-9]+")


def check_endpoint_template(template: str) -> str:
    """Return ``template`` if it is an endpoint name or a template of one, else ValueError.

    A template names what the endpoint serves with ``{dataset}`` (the data set the model was
    trained on) and ``{model}`` (the registered model's name), e.g. ``amlkit-{dataset}``; a
    name without placeholders is a fixed name. :func:`fill_endpoint_name` fills it in.
    """
    unknown = [name for name in _PLACEHOLDER.findall(template) if name not in ENDPOINT_PLACEHOLDERS]
    if unknown:
        raise ValueError(
            f"endpoint name {template!r} has placeholder {{{unknown[0]}}}; the placeholders are "
            f"{', '.join('{' + name + '}' for name in ENDPOINT_PLACEHOLDERS)} "
            "(for example 'amlkit-{dataset}')"
        )
    sample = _PLACEHOLDER.sub("abc", template)  # a short value; longer ones are cut to fit
    if not ENDPOINT_NAME.match(sample):
        raise ValueError(
            f"endpoint name {template!r} is not allowed: with its placeholders filled in it "
            f"must be {ENDPOINT_RULE} (for example 'amlkit-{{dataset}}' or 'my-endpoint')"
        )
    return template


def _name_part(value: str) -> str:
    """Return ``value`` fit for an endpoint name: lowercase, other characters as one ``-``.

    ``seattle_weather`` -> ``seattle-weather``.
    """
    return _NOT_IN_NAME.sub("-", value.lower()).strip("-")


def _shorten(value: str, length: int) -> str:
    """Cut ``value`` to ``length`` characters, ending in 6 hex of its sha256 so cuts differ."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:6]
    return f"{value[: length - len(digest) - 1].rstrip('-')}-{digest}"


def fill_endpoint_name(template: str, *, dataset: str | None, model: str | None) -> str:
    """Return the endpoint name ``template`` gives for a model and the data set it serves.

    ``{dataset}`` and ``{model}`` are made fit for an endpoint name (lowercase, ``_`` and other
    characters as ``-``); when the name would pass 32 characters the longest value is cut and
    ends in 6 hex of its hash, so two cut names differ. A template without placeholders is
    returned as it is.

    Raises:
        ConfigError: a placeholder has no value, or the name is still not one Azure takes;
            the message names the template and the fix.
    """
    used = set(_PLACEHOLDER.findall(template))
    given = {"dataset": dataset, "model": model}
    missing = sorted(name for name in used if not given.get(name))
    where = "config/deployment_config.json"
    if missing:
        raise ConfigError(
            f"{where}: endpoint name {template!r} needs {{{missing[0]}}}, and none was given; "
            f"name the {missing[0]} the endpoint serves, or give a fixed name in the file"
        )
    values = {name: _name_part(str(given[name])) for name in used}

    def fill() -> str:
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

    name = fill()
    while len(name) > 32 and values:
        longest = max(values, key=lambda key: len(values[key]))
        keep = len(values[longest]) - (len(name) - 32)
        if keep < 8:
            break
        values[longest] = _shorten(values[longest], keep)
        name = fill()
    if not used and not ENDPOINT_NAME.match(name):
        raise ConfigError(f"{where}: endpoint name {name!r} is not allowed: use {ENDPOINT_RULE}")
    if not ENDPOINT_NAME.match(name):
        raise ConfigError(
            f"{where}: endpoint name {template!r} gives {name!r} for data set {dataset!r} and "
            f"model {model!r}, which is not an endpoint name ({ENDPOINT_RULE}); shorten the "
            "template's fixed text, start it with a letter (e.g. 'amlkit-{dataset}'), or give "
            "a fixed name"
        )
    return name


class BatchSettings(Section):
    """The batch endpoint that scores files with the champion (Azure ML batch deployment)."""

    # a name or a template (check_endpoint_template); DeploymentConfig.resolved fills it in
    endpoint_name: str = "amlkit-{dataset}-batch"
    # the batch endpoint's name on Azure; None: endpoint_name with the workspace's suffix
    azure_endpoint_name: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
    deployment_name: str = "champion"
    instance_count: int = Field(1, gt=0)
    mini_batch_size: int = Field(10, gt=0)
    max_concurrency_per_instance: int = Field(2, gt=0)
    max_retries: int = Field(3, ge=0)
    retry_timeout_s: int = Field(300, gt=0)
    error_threshold: int = Field(-1, ge=-1)
    output_action: Literal["append_row", "summary_only"] = "append_row"
    output_file_name: str = "predictions.jsonl"
    chunk_rows: int = Field(50_000, gt=0)

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name_or_template(cls, endpoint_name: str) -> str:
        return check_endpoint_template(endpoint_name)


DEPLOYMENT_NAME = ENDPOINT_NAME


class DeploymentConfig(ConfigFile):
    """``deployment_config.json``: the endpoint, its instances, limits and monitoring."""

    file_name: ClassVar[str] = "deployment_config"

    # the endpoint's name, or a template of it with {dataset} and {model} (what it serves);
    # resolved() fills it in for the model served
    endpoint_name: str = "amlkit-{dataset}"
    # the online endpoint's name on Azure (unique per region); None: endpoint_name with a
    # suffix from the workspace (amlkit.azure.endpoints.azure_endpoint_names)
    azure_endpoint_name: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
    auth_mode: Literal["key", "aml_token", "none"] = "key"
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = Field(1, gt=0)
    request_settings: RequestSettings = RequestSettings()
    liveness_probe: ProbeSettings = ProbeSettings()
    readiness_probe: ProbeSettings = ProbeSettings()
    traffic: dict[str, int] = {"blue": 100}
    local: LocalServer = LocalServer()
    limits: Limits = Limits()
    request_log: RequestLogSettings = RequestLogSettings()
    monitoring: MonitoringConfig = MonitoringConfig()
    app_insights_enabled: bool = True
    data_collection: DataCollection = DataCollection()
    batch: BatchSettings = BatchSettings()

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name_or_template(cls, endpoint_name: str) -> str:
        return check_endpoint_template(endpoint_name)

    @property
    def is_resolved(self) -> bool:
        """Whether the endpoint names are names, not templates (:meth:`resolved`)."""
        names = (self.endpoint_name, self.batch.endpoint_name)
        return not any(_PLACEHOLDER.search(name) for name in names)

    def resolved(
        self,
        dataset: str | None = None,
        model: str | None = None,
        data_config: DataConfig | None = None,
    ) -> DeploymentConfig:
        """Return this configuration with the online and batch endpoint names filled in.

        The names follow what the endpoint serves (:func:`fill_endpoint_name`): ``dataset``,
        the data set the model was trained on (default: data_config.json's
        ``default_dataset``), and ``model``, its registered name (default: the data set's
        ``<dataset>-<task>``). Fixed names stay as they are; a resolved configuration
        resolves to itself.
        """
        if self.is_resolved:
            return self
        if dataset is None or model is None:
            data = data_config or DataConfig.load()
            dataset = dataset or data.default_dataset
            declared = data.dataset(dataset)
            if model is None and declared is not None and declared.task:
                model = f"{dataset}-{declared.task}"
        online = fill_endpoint_name(self.endpoint_name, dataset=dataset, model=model)
        batch = fill_endpoint_name(self.batch.endpoint_name, dataset=dataset, model=model)
        if batch == online:
            raise ConfigError(
                f"config/deployment_config.json: the online and the batch endpoint are both "
                f"named {online!r}; give batch.endpoint_name a suffix (e.g. "
                "'amlkit-{dataset}-batch')"
            )
        return self.model_copy(
            update={
                "endpoint_name": online,
                "batch": self.batch.model_copy(update={"endpoint_name": batch}),
            }
        )

    def endpoint_for(
        self,
        dataset: str | None = None,
        model: str | None = None,
        data_config: DataConfig | None = None,
    ) -> str:
        """Return the online endpoint's name for a model and its data set (:meth:`resolved`)."""
        return self.resolved(dataset, model, data_config).endpoint_name

    @field_validator("traffic")
    @classmethod
    def _traffic_is_a_split(cls, traffic: dict[str, int]) -> dict[str, int]:
        """Azure ML's rule for an endpoint's traffic: percentages per deployment summing to 100."""
        bad_names = [name for name in traffic if not DEPLOYMENT_NAME.match(name)]
        if bad_names:
            raise ValueError(
                f"deployment name {bad_names[0]!r} is not allowed; use 3 to 32 letters, digits "
                "or '-', starting with a letter (for example 'blue' or 'green')"
            )
        out_of_range = {name: share for name, share in traffic.items() if not 0 <= share <= 100}
        if out_of_range:
            raise ValueError(f"traffic shares {out_of_range} are not percentages; give 0 to 100")
        if traffic and sum(traffic.values()) != 100:
            raise ValueError(
                f"traffic {traffic} adds up to {sum(traffic.values())}%, not 100%; "
                'split it so the shares sum to 100, e.g. {"blue": 90, "green": 10}'
            )
        return traffic


class LoggingConfig(ConfigFile):
    """``logging_config.json``: a :func:`logging.config.dictConfig` dictionary."""

    file_name: ClassVar[str] = "logging_config"

    version: Literal[1]
    disable_existing_loggers: bool = False
    formatters: dict[str, dict[str, Any]] = {}
    filters: dict[str, dict[str, Any]] = {}
    handlers: dict[str, dict[str, Any]] = {}
    loggers: dict[str, dict[str, Any]] = {}
    root: dict[str, Any] = {}


def load_all(config_dir: str | Path | None = None) -> dict[str, ConfigFile]:
    """Load and validate every configuration file; the first problem is raised."""
    models = (AzureConfig, DataConfig, ModelConfig, DeploymentConfig, LoggingConfig)
    return {model.file_name: model.load(config_dir) for model in models}
