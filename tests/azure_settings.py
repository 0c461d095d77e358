"""Azure settings for tests: `clean_env` (no Azure variable, no .env, no .azureml/config.json) and `settings`
(a workspace on the control-plane fakes). A pytest plugin (tests/conftest.py): the unit, contract and
integration tests name the fixtures and import nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.azure.settings import AzureSettings, load_settings

AZURE_VARIABLES = (
    "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "AZURE_LOCATION",
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL", "AZUREML_CONFIG_PATH",
)
FAKE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=https;AccountName=heartacct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net"
)


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("HEARTFLOW_AZURE_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


@pytest.fixture()
def settings(clean_env: Path) -> AzureSettings:
    return load_settings(
        {
            "subscription_id": "00000000-0000-0000-0000-000000000000",
            "resource_group": "rg-heartflow",
            "workspace_name": "ws-heartflow",
            "storage_connection_string": FAKE_CONNECTION_STRING,
            "ledger_path": str(clean_env / "ledger.json"),
            "poll_interval_s": 0,
            "retry_initial_s": 0,
            "retry_max_s": 0,
        },
        env_file=None,
    )
