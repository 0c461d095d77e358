"""The Azure backend: the heartflow stages on Azure ML, Blob Storage and a managed online endpoint.

Imported lazily by ``backends.factory`` so the local backend needs no Azure package at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backends.azure.backend import AzureBackend
from backends.azure.plan import AzurePlan
from backends.azure.provisioning import ProvisionReport, TeardownReport
from backends.azure.settings import AzureSettings, load_settings
from backends.base import DEFAULT_MODEL_NAME


def create_azure_backend(
    settings_overrides: Mapping[str, Any] | None = None,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    env_file: str | Path | None = ".env",
    **clients: Any,
) -> AzureBackend:
    """An AzureBackend from the environment, .env and .azureml/config.json, with ``settings_overrides``
    (CLI flags by setting name, e.g. ``{"compute": "cpu", "endpoint_name": "x"}``; None values ignored)
    winning. ``clients`` passes ml_client / blob_service / credential through (tests)."""
    return AzureBackend(load_settings(settings_overrides, env_file=env_file), model_name=model_name, **clients)


__all__ = [
    "AzureBackend", "AzurePlan", "AzureSettings", "ProvisionReport", "TeardownReport",
    "create_azure_backend", "load_settings",
]
