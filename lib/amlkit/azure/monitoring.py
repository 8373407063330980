"""Azure ML model monitoring of the online endpoint, with the local monitor's metrics.

A ``MonitorSchedule`` runs three signals on the ``blue`` deployment's collected data
(:func:`amlkit.azure.endpoints.collected_data`) against the training split
(``<dataset>-train``, :mod:`amlkit.azure.data_assets`):

- data drift of the model inputs: normalized Wasserstein distance on numeric features,
  Jensen-Shannon distance on categorical ones;
- prediction drift of the model outputs: the same metric for the prediction's kind;
- data quality of the model inputs: null-value, data-type-error and out-of-bounds rates.

Thresholds are ``deployment_config.json``'s ``monitoring.thresholds``, the names and values
``amlkit.monitoring`` uses locally, so both reports flag the same columns. The schedule
(``monitoring.schedule``) runs on serverless Spark; alerts go to ``monitoring.alert_emails``.
"""

from __future__ import annotations

from typing import Any

from amlkit.azure import data_assets, endpoints
from amlkit.config import DeploymentConfig

MONITORED_DEPLOYMENT = "blue"


def _production(deployment_config: DeploymentConfig, collection: str, deployment: str) -> Any:
    from azure.ai.ml import Input
    from azure.ai.ml.constants import MonitorDatasetContext
    from azure.ai.ml.entities import ProductionData

    asset = endpoints.collected_data(deployment_config.endpoint_name, deployment, collection)
    return ProductionData(
        input_data=Input(type="uri_folder", path=f"azureml:{asset['name']}:{asset['version']}"),
        data_context=MonitorDatasetContext(collection),
    )


def signals(
    deployment_config: DeploymentConfig,
    *,
    dataset: str,
    target: str,
    task: str,
    data_version: str | None = None,
    deployment: str = MONITORED_DEPLOYMENT,
) -> dict:
    """Return the data drift, prediction drift and data quality signals.

    Args:
        deployment_config: the endpoint and the thresholds.
        dataset: the data set whose training split is the reference.
        target: the target column (left out of the input signals).
        task: ``classification`` (categorical predictions) or ``regression``.
        data_version: the processed version the deployed model trained on; None: the newest.
        deployment: the deployment whose collected data is read (the one that serves).
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
        NumericalDriftMetrics,
        PredictionDriftMetricThreshold,
        PredictionDriftSignal,
        ReferenceData,
    )

    limits = deployment_config.monitoring.thresholds
    reference = ReferenceData(
        input_data=Input(
            type="uri_file", path=data_assets.reference(dataset, "train", data_version)
        ),
        data_context=MonitorDatasetContext.TRAINING,
        data_column_names={"target_column": target},
    )
    numeric = NumericalDriftMetrics(
        normalized_wasserstein_distance=limits.normalized_wasserstein_distance
    )
    categorical = CategoricalDriftMetrics(jensen_shannon_distance=limits.jensen_shannon_distance)
    rates = {
        "null_value_rate": limits.null_value_rate,
        "data_type_error_rate": limits.data_type_error_rate,
        "out_of_bounds_rate": limits.out_of_bounds_rate,
    }
    prediction = (
        {"categorical": categorical} if task == "classification" else {"numerical": numeric}
    )
    return {
        "data_drift": DataDriftSignal(
            production_data=_production(deployment_config, "model_inputs", deployment),
            reference_data=reference,
            metric_thresholds=DataDriftMetricThreshold(numerical=numeric, categorical=categorical),
            alert_enabled=True,
        ),
        "prediction_drift": PredictionDriftSignal(
            production_data=_production(deployment_config, "model_outputs", deployment),
            reference_data=reference,
            metric_thresholds=PredictionDriftMetricThreshold(**prediction),
            alert_enabled=True,
        ),
        "data_quality": DataQualitySignal(
            production_data=_production(deployment_config, "model_inputs", deployment),
            reference_data=reference,
            metric_thresholds=DataQualityMetricThreshold(
                numerical=DataQualityMetricsNumerical(**rates),
                categorical=DataQualityMetricsCategorical(**rates),
            ),
            alert_enabled=True,
        ),
    }


def monitor_schedule(
    deployment_config: DeploymentConfig,
    *,
    dataset: str,
    target: str,
    task: str,
    data_version: str | None = None,
    deployment: str = MONITORED_DEPLOYMENT,
) -> Any:
    """Return the ``MonitorSchedule`` of one of the online endpoint's deployments.

    Args:
        deployment_config: the endpoint, thresholds, schedule and alert e-mails.
        dataset: the data set whose training split is the reference.
        target: its target column.
        task: ``classification`` or ``regression``.
        data_version: the processed version the deployed model trained on; None: the newest.
        deployment: the deployment watched: the one that serves (blue/green moves it).
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
        display_name=f"{endpoint}: data drift, prediction drift, data quality",
        trigger=RecurrenceTrigger(
            frequency=settings.frequency,
            interval=settings.interval,
            schedule=pattern,
            time_zone=settings.time_zone,
        ),
        create_monitor=definition,
    )
