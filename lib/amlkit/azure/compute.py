"""The compute cluster the jobs run on, from ``azure_config.json``.

One ``AmlCompute`` cluster, named by ``compute_cluster``: it starts with no node
(``min_instances`` 0, so an idle workspace costs nothing), grows to ``compute.max_nodes``
nodes of ``compute.vm_size`` while jobs queue, and gives nodes back after
``compute.idle_time_s`` seconds without work.
"""

from __future__ import annotations

from typing import Any

from amlkit.config import AzureConfig


def cluster(azure_config: AzureConfig) -> Any:
    """Return the ``AmlCompute`` cluster of ``azure_config``."""
    from azure.ai.ml.entities import AmlCompute

    settings = azure_config.compute
    return AmlCompute(
        name=azure_config.compute_cluster,
        description="amlkit jobs: notebooks run with papermill, sweeps, batch scoring",
        size=settings.vm_size,
        min_instances=0,
        max_instances=settings.max_nodes,
        idle_time_before_scale_down=settings.idle_time_s,
        tier=settings.tier,
    )


def reference(azure_config: AzureConfig) -> str:
    """Return ``azureml:<cluster>``, how jobs name their compute."""
    return f"azureml:{azure_config.compute_cluster}"
