"""Azure secrets for scheduled runs from Prefect Secret blocks, against a real Prefect server: the flow
reads the block named in its parameters, the Azure settings get it as SecretStr, and the value appears in
no log line, artifact or parameter of the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import SyncPrefectClient
from prefect.logging.handlers import APILogHandler
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from backends.errors import ConfigurationError
from backends.factory import backend_for_spec
from backends.domain.spec import PipelineSpec
from flows.secret_blocks import secrets_from_blocks
from flows.train_and_deploy import train_and_deploy
from tests.integration.prefect.server import PrefectServer, running_server

ACCOUNT_KEY = "c2VjcmV0LWtleS1mcm9tLWEtYmxvY2s="  # what must never show
CONNECTION = (f"DefaultEndpointsProtocol=https;AccountName=blockaccount;AccountKey={ACCOUNT_KEY};"
              "EndpointSuffix=core.windows.net")
WORKSPACE = {"AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "AZURE_RESOURCE_GROUP": "rg",
             "AZUREML_WORKSPACE_NAME": "ws"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_server(tmp_path_factory.mktemp("prefect-blocks")) as running:
        yield running


@pytest.fixture()
def api(server: PrefectServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SyncPrefectClient]:
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env or .azureml/config.json of the repo
    with temporary_settings({PREFECT_API_URL: server.api_url}), SyncPrefectClient(api=server.api_url) as client:
        yield client
        APILogHandler().flush()  # send this test's run logs while the server is still up


def test_a_secret_block_reaches_the_azure_settings_as_secretstr(api: SyncPrefectClient) -> None:
    Secret(value=CONNECTION).save("hf-storage", overwrite=True)
    Secret(value="sp-secret-value").save("hf-sp", overwrite=True)
    secrets = secrets_from_blocks({"AZURE_STORAGE_CONNECTION_STRING": "hf-storage", "client_secret": "hf-sp"})
    spec = PipelineSpec(backend="azure", azure_secret_blocks={"AZURE_STORAGE_CONNECTION_STRING": "hf-storage"})
    backend = backend_for_spec(spec, secrets=secrets)
    settings = backend.settings  # type: ignore[attr-defined]
    assert settings.storage_connection_string.get_secret_value() == CONNECTION
    assert settings.client_secret.get_secret_value() == "sp-secret-value"
    assert settings.storage_account_name == "blockaccount"
    assert ACCOUNT_KEY not in repr(settings) and ACCOUNT_KEY not in str(settings.describe())


def test_a_missing_block_or_an_unknown_setting_is_one_clear_error(api: SyncPrefectClient) -> None:
    with pytest.raises(ConfigurationError, match="no Secret block named 'nope'"):
        secrets_from_blocks({"AZURE_STORAGE_CONNECTION_STRING": "nope"})
    with pytest.raises(ConfigurationError, match="not a secret Azure setting"):
        secrets_from_blocks({"compute": "hf-storage"})


def test_a_scheduled_style_run_uses_the_block_and_never_logs_it(api: SyncPrefectClient) -> None:
    Secret(value=CONNECTION).save("hf-storage", overwrite=True)
    spec = PipelineSpec(backend="azure", dry_run=True, azure_secret_blocks={"AZURE_STORAGE_CONNECTION_STRING": "hf-storage"})
    state = train_and_deploy(spec=spec, return_state=True)
    assert state.is_completed(), state.message
    run = api.read_flow_run(state.state_details.flow_run_id)
    logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    text = "\n".join(log.message for log in logs)
    assert "blockaccount" in text  # the plan names the account the block's connection string points at
    artifacts = api.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    everything = text + "".join(str(a.data) for a in artifacts) + str(run.parameters)
    assert ACCOUNT_KEY not in everything and "hf-storage" in str(run.parameters)
