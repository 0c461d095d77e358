"""Azure settings for tests: `clean_env` (no Azure variable, no .env, no .azureml/config.json) and `settings`
(a workspace on the control-plane fakes). A pytest plugin (tests/conftest.py): the unit, contract and
integration tests name the fixtures and import nothing."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from backends.azure.settings import AzureSettings

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
    from backends.azure.settings import load_settings

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


SDK_SKIP_EXPERIMENTAL_WARNING: list = []  # the SDK's own check, once replaced by the copy below


def skip_experimental_warning() -> bool:
    """azure-ai-ml's own check before it warns that a class is experimental (``_should_skip_warning``: is the
    object being built from a REST answer, a ``_from_rest_object`` on the stack?), answered by walking the
    frames. The SDK calls ``inspect.stack()``, which reads every frame's source lines: under pytest's deep
    stacks, on every DataCollector and DeploymentCollection the fakes return, that was most of an Azure
    contract case's time (a profile of five cases: 38 s of 44). Same answer, tests only;
    tests/unit/azure/test_sdk_experimental.py compares it with the SDK's."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "_from_rest_object":
            return True
        frame = frame.f_back
    return False


def pytest_collection_finish(session: pytest.Session) -> None:
    """Put the copy in place in every process that runs tests (pytest-xdist's controller collects nothing and
    so does not import the SDK)."""
    from azure.ai.ml._utils import _experimental

    if _experimental._should_skip_warning is not skip_experimental_warning:
        SDK_SKIP_EXPERIMENTAL_WARNING.append(_experimental._should_skip_warning)
        _experimental._should_skip_warning = skip_experimental_warning

