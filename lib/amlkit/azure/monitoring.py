"""Azure ML model monitoring of the online endpoint, with the local monitor's metrics.

A ``MonitorSchedule`` runs four signals on the collected data of the deployment that serves
(:func:`amlkit.azure.endpoints.collected_data`; by default the one with the most traffic in
``deployment_config.json``, and after a traffic switch the one the switch names) against the
training split (``<dataset>-train``, an ``mltable`` asset, :mod:`amlkit.azure.data_assets`),
as Microsoft's examples (Azure/azureml-examples ``cli/monitoring``) configure them:

- data drift of the model inputs: normalized Wasserstein distance on numeric features,
  Jensen-Shannon distance on categorical ones;
- prediction drift of the model outputs: the scoring script's collector writes the
  prediction under the target's name (as Microsoft's ``score.py`` does), so the monitor
  compares that column with the training split's ``target_column``;
- data quality of the model inputs: null-value, data-type-error and out-of-bounds rates;
- feature attribution drift: the ranking of feature importance on the training split (with
  its target) against the one on the collected inputs joined with the outputs (the
  predictions as labels), compared by NDCG (``normalized_discounted_cumulative_gain``), as the
  local monitor does (:mod:`amlkit.monitoring.attribution`). Its alert is on when the
  retraining rule's ``attribution_drift`` is.

Thresholds are ``deployment_config.json``'s ``monitoring.thresholds``, the names and values
``amlkit.monitoring`` uses locally, so both reports flag the same columns; except that a null
rate is allowed on top of the training split's own (its highest per feature kind), so that
missing values the model was trained with do not raise an alert every day. Without the
training split here (a fresh clone), the retraining rule's ``max_quality_rates`` null rate
stands in. The schedule (``monitoring.schedule``) runs on serverless Spark; alerts go to
``monitoring.alert_emails``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from amlkit import paths
from amlkit.azure import data_assets, endpoints
from amlkit.config import DeploymentConfig

logger = logging.getLogger(__name__)

KINDS = ("numerical", "categorical")


def serving_deployment(deployment_config: DeploymentConfig) -> str:
    """Return the deployment that serves: the one with the most traffic (``blue`` if none)."""
    traffic = {name: int(share) for name, share in (deployment_config.traffic or {}).items()}
    if not any(traffic.values()):
        return endpoints.DEPLOYMENTS[0]
    return max(traffic, key=lambda name: traffic[name])


def _training_file(dataset: str, data_version: str | None) -> Path | None:
    """Return the training split of ``data_version`` (None: the newest made here), if here."""
    from amlkit.data.manifests import ProcessedManifest

    folder = paths.processed_dir() / dataset
    if data_version:
        found = folder / data_version / "train.parquet"
        return found if found.is_file() else None
    made = []
    for manifest in folder.glob("*/manifest.json"):
        try:
            made.append((ProcessedManifest.read(manifest).created, manifest.parent))
        except Exception as exc:  # a half-written version is not one
            logger.warning("skipping %s: %s", manifest, exc)
    newest = max(made, default=None)
    return (
        newest[1] / "train.parquet" if newest and (newest[1] / "train.parquet").is_file() else None
    )


def reference_null_rates(train_file: Path, target: str) -> dict[str, float]:
    """Return the highest null rate of the numerical and of the categorical input features."""
    import pandas as pd

    frame = pd.read_parquet(train_file).drop(columns=[target], errors="ignore")
    rates = frame.isna().mean()
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    return {
        "numerical": float(rates[numeric].max()) if numeric else 0.0,
        "categorical": float(rates.drop(index=numeric).max()) if len(numeric) < len(rates) else 0.0,
    }


def null_rate_thresholds(
    deployment_config: DeploymentConfig, dataset: str, target: str, data_version: str | None
) -> dict[str, float]:
    """Return the null-value-rate threshold of each feature kind (see the module's note)."""
    allowance = deployment_config.monitoring.thresholds.null_value_rate
    train_file = _training_file(dataset, data_version)
    if train_file is None:
        fallback = deployment_config.monitoring.retraining.max_quality_rates.null_value_rate
        return dict.fromkeys(KINDS, max(allowance, fallback))
    own = reference_null_rates(train_file, target)
    return {kind: round(own[kind] + allowance, 6) for kind in KINDS}


def _production(deployment_config: DeploymentConfig, deployment: str, collection: str) -> Any:
    from azure.ai.ml import Input
    from azure.ai.ml.constants import MonitorDatasetContext
    from azure.ai.ml.entities import ProductionData

    asset = endpoints.collected_data(deployment_config.endpoint_name, deployment, collection)
    return ProductionData(
        input_data=Input(type="uri_folder", path=f"azureml:{asset['name']}:{asset['version']}"),
        data_context=MonitorDatasetContext(collection),
    )


def _attribution_production(deployment_config: DeploymentConfig, deployment: str) -> list:
    """The collected inputs and outputs of ``deployment``, which Azure joins for attribution."""
    from azure.ai.ml import Input
    from azure.ai.ml.constants import MonitorDatasetContext
    from azure.ai.ml.entities import FADProductionData

    out = []
    for collection in ("model_inputs", "model_outputs"):
        asset = endpoints.collected_data(deployment_config.endpoint_name, deployment, collection)
        out.append(
            FADProductionData(
                input_data=Input(
                    type="uri_folder", path=f"azureml:{asset['name']}:{asset['version']}"
                ),
                data_context=MonitorDatasetContext(collection),
            )
        )
    return out


def signals(
    deployment_config: DeploymentConfig,
    *,
    dataset: str,
    target: str,
    task: str,
    data_version: str | None = None,
    deployment: str | None = None,
) -> dict:
    """Return the data drift, prediction drift, data quality and feature attribution signals.

    Args:
        deployment_config: the endpoint and the thresholds.
        dataset: the data set whose training split is the reference.
        target: the target column (left out of the input signals; the prediction's name).
        task: ``classification`` (categorical predictions) or ``regression``.
        data_version: the processed version the deployed model trained on; None: the newest.
        deployment: whose collected data; None: :func:`serving_deployment`.
    """
    from azure.ai.ml import Input
    from azure.ai.ml.constants import MonitorDatasetContext
    from azure.ai.ml.entities import (
        CategoricalDriftMetrics,
        DataDriftMetricThreshold,
        DataDriftSignal,
        DataQualityMetricsCategorical,
        DataQualityMetricsNumerical,
        DataQualityMetricThreshold,
        DataQualitySignal,
        FeatureAttributionDriftMetricThreshold,
        FeatureAttributionDriftSignal,
        NumericalDriftMetrics,
        PredictionDriftMetricThreshold,
        PredictionDriftSignal,
        ReferenceData,
    )

    limits = deployment_config.monitoring.thresholds
    deployment = deployment or serving_deployment(deployment_config)
    reference = ReferenceData(
        input_data=Input(
            type="mltable", path=data_assets.reference(dataset, "train", data_version)
        ),
        data_context=MonitorDatasetContext.TRAINING,
        data_column_names={"target_column": target},
    )
    numeric = NumericalDriftMetrics(
        normalized_wasserstein_distance=limits.normalized_wasserstein_distance
    )
    categorical = CategoricalDriftMetrics(jensen_shannon_distance=limits.jensen_shannon_distance)
    nulls = null_rate_thresholds(deployment_config, dataset, target, data_version)
    rates = {
        kind: {
            "null_value_rate": nulls[kind],
            "data_type_error_rate": limits.data_type_error_rate,
            "out_of_bounds_rate": limits.out_of_bounds_rate,
        }
        for kind in KINDS
    }
    prediction = (
        {"categorical": categorical} if task == "classification" else {"numerical": numeric}
    )
    return {
        "data_drift": DataDriftSignal(
            production_data=_production(deployment_config, deployment, "model_inputs"),
            reference_data=reference,
            metric_thresholds=DataDriftMetricThreshold(numerical=numeric, categorical=categorical),
            alert_enabled=True,
        ),
        "prediction_drift": PredictionDriftSignal(
            production_data=_production(deployment_config, deployment, "model_outputs"),
            reference_data=reference,
            metric_thresholds=PredictionDriftMetricThreshold(**prediction),
            alert_enabled=True,
        ),
        "data_quality": DataQualitySignal(
            production_data=_production(deployment_config, deployment, "model_inputs"),
            reference_data=reference,
            metric_thresholds=DataQualityMetricThreshold(
                numerical=DataQualityMetricsNumerical(**rates["numerical"]),
                categorical=DataQualityMetricsCategorical(**rates["categorical"]),
            ),
            alert_enabled=True,
        ),
        "feature_attribution_drift": FeatureAttributionDriftSignal(
            production_data=_attribution_production(deployment_config, deployment),
            reference_data=reference,
            metric_thresholds=FeatureAttributionDriftMetricThreshold(
                normalized_discounted_cumulative_gain=limits.normalized_discounted_cumulative_gain
            ),
            alert_enabled=deployment_config.monitoring.retraining.attribution_drift,
        ),
    }


def monitor_schedule(
    deployment_config: DeploymentConfig,
    *,
    dataset: str,
    target: str,
    task: str,
    data_version: str | None = None,
    deployment: str | None = None,
) -> Any:
    """Return the ``MonitorSchedule`` of the online endpoint's serving deployment.

    Args:
        deployment_config: the endpoint, thresholds, schedule and alert e-mails; an endpoint
            name template is filled in for ``dataset``'s model.
        dataset: the data set whose training split is the reference.
        target: its target column.
        task: ``classification`` or ``regression``.
        data_version: the processed version the deployed model trained on; None: the newest.
        deployment: the deployment to watch (after a traffic switch, the one now serving);
            None: the one with the most traffic in ``deployment_config``.

    Raises:
        ValueError: ``deployment`` is not one of the endpoint's deployments.
    """
    from azure.ai.ml.entities import (
        AlertNotification,
        MonitorDefinition,
        MonitoringTarget,
        MonitorSchedule,
        RecurrencePattern,
        RecurrenceTrigger,
        ServerlessSparkCompute,
    )

    deployment_config = deployment_config.resolved(dataset)
    deployment = deployment or serving_deployment(deployment_config)
    if deployment not in endpoints.DEPLOYMENTS:
        raise ValueError(
            f"deployment {deployment!r} is not one of the endpoint's deployments "
            f"{list(endpoints.DEPLOYMENTS)}; name the one that serves"
        )
    settings = deployment_config.monitoring.schedule
    endpoint = deployment_config.endpoint_name
    emails = deployment_config.monitoring.alert_emails
    pattern = None
    if settings.frequency in ("day", "week"):
        pattern = RecurrencePattern(hours=settings.hours, minutes=settings.minutes)
    definition = MonitorDefinition(
        compute=ServerlessSparkCompute(
            instance_type=settings.spark_instance_type,
            runtime_version=settings.spark_runtime_version,
        ),
        monitoring_target=MonitoringTarget(
            ml_task=task, endpoint_deployment_id=f"azureml:{endpoint}:{deployment}"
        ),
        monitoring_signals=signals(
            deployment_config,
            dataset=dataset,
            target=target,
            task=task,
            data_version=data_version,
            deployment=deployment,
        ),
        alert_notification=AlertNotification(emails=emails) if emails else None,
    )
    return MonitorSchedule(
        name=f"{endpoint}-monitoring",
        display_name=(
            f"{endpoint}: data drift, prediction drift, data quality, feature attribution drift"
        ),
        trigger=RecurrenceTrigger(
            frequency=settings.frequency,
            interval=settings.interval,
            schedule=pattern,
            time_zone=settings.time_zone,
        ),
        create_monitor=definition,
    )
