"""The Azure ML workspace of ``config/azure_config.json``: its client and tracking URI."""

from __future__ import annotations

from typing import Any

from amlkit.config import AzureConfig, ConfigError


class WorkspaceError(RuntimeError):
    """The workspace could not be reached or read."""


def ml_client(azure_config: AzureConfig, credential: Any = None) -> Any:
    """Build an ``MLClient`` (offline; its calls are not); ConfigError for a blank workspace."""
    if not azure_config.workspace_configured:
        raise ConfigError(
            "config/azure_config.json names no workspace (subscription_id, resource_group, "
            "workspace_name are blank); fill them to use Azure ML."
        )
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(
        credential=credential or DefaultAzureCredential(),
        subscription_id=azure_config.subscription_id,
        resource_group_name=azure_config.resource_group,
        workspace_name=azure_config.workspace_name,
    )


def tracking_uri(azure_config: AzureConfig, credential: Any = None) -> str:
    """Return the workspace's MLflow tracking URI; WorkspaceError when it cannot be read."""
    client, name = ml_client(azure_config, credential), azure_config.workspace_name
    try:
        return client.workspaces.get(name).mlflow_tracking_uri
    except Exception as exc:  # the SDK raises many kinds (auth, HTTP, resource not found)
        raise WorkspaceError(
            f"could not read the tracking URI of Azure ML workspace '{name}' "
            f"(resource group '{azure_config.resource_group}'): {exc}. Sign in with "
            "`az login`, check config/azure_config.json, or blank it to track locally."
        ) from exc
