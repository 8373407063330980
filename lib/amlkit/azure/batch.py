"""The batch endpoint that scores files with the champion, and its deployment.

The deployment runs :mod:`amlkit.serving.batch_driver` (``init()`` / ``run(mini_batch)``),
which scores with the project's batch scorer (:func:`amlkit.serving.batch.scored_chunks`)
and the service runtime, on the compute cluster, in the lean batch environment of the
model's backend. Its code folder holds the entry script and the amlkit modules it imports,
as a service folder does; the model is the packaged service model (ONNX when the packaging
parity check passed). Mini-batch size, concurrency, retries, error threshold and output
action come from ``deployment_config.json``'s ``batch``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from amlkit.config import AzureConfig, DeploymentConfig
from amlkit.serving import package

ENTRY_SCRIPT = "batch_driver.py"


def write_code(
    folder: Path, backend: str, pickled: set[str] | frozenset[str] = frozenset()
) -> Path:
    """Write the batch deployment's code folder: the entry script and its amlkit modules.

    Args:
        folder: the folder to (re)write.
        backend: the model's backend (``onnx``, ``sklearn``, ``keras``).
        pickled: amlkit modules a pickled model refers to.

    Returns:
        ``folder``.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copyfile(package.BATCH_DRIVER, folder / ENTRY_SCRIPT)
    package.copy_modules(package.service_modules(backend, pickled, package.BATCH_DRIVER), folder)
    return folder


def endpoint(deployment_config: DeploymentConfig) -> Any:
    """Return the ``BatchEndpoint`` (Microsoft Entra token auth, as batch endpoints have)."""
    from azure.ai.ml.entities import BatchEndpoint

    settings = deployment_config.batch
    return BatchEndpoint(
        name=settings.endpoint_name,
        description=f"amlkit batch scoring with the champion of {deployment_config.endpoint_name}",
    )


def deployment(
    deployment_config: DeploymentConfig,
    azure_config: AzureConfig,
    *,
    model: Any,
    code: str,
    environment: str,
) -> Any:
    """Return the ``ModelBatchDeployment`` of the champion (``type: model``, ``settings:``).

    Args:
        deployment_config: ``batch`` settings.
        azure_config: the compute cluster.
        model: a ``Model`` entity (a local model folder) or ``azureml:<name>@latest``.
        code: the code folder (:func:`write_code`), relative to the spec's folder.
        environment: the lean batch ``Environment`` (or its ``azureml:name:version``).
    """
    from azure.ai.ml.entities import (
        BatchRetrySettings,
        CodeConfiguration,
        ModelBatchDeployment,
        ModelBatchDeploymentSettings,
        ResourceConfiguration,
    )

    settings = deployment_config.batch
    return ModelBatchDeployment(  # `type: model` with `settings:`, as Microsoft's examples
        name=settings.deployment_name,
        endpoint_name=settings.endpoint_name,
        description="Scores CSV and Parquet files with amlkit's batch scorer.",
        model=model,
        code_configuration=CodeConfiguration(code=code, scoring_script=ENTRY_SCRIPT),
        environment=environment,
        compute=f"azureml:{azure_config.compute_cluster}",
        resources=ResourceConfiguration(instance_count=settings.instance_count),
        settings=ModelBatchDeploymentSettings(
            mini_batch_size=settings.mini_batch_size,
            max_concurrency_per_instance=settings.max_concurrency_per_instance,
            retry_settings=BatchRetrySettings(
                max_retries=settings.max_retries, timeout=settings.retry_timeout_s
            ),
            error_threshold=settings.error_threshold,
            output_action=settings.output_action,
            output_file_name=settings.output_file_name,
            environment_variables={"AMLKIT_BATCH_CHUNK_ROWS": str(settings.chunk_rows)},
            logging_level="info",
        ),
    )
