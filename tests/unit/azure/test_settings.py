"""Settings: sources and their order, one error naming every missing variable, secrets kept secret."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from backends.azure import create_azure_backend
from backends.azure.settings import load_settings
from backends.errors import ConfigurationError
from tests.azure_settings import FAKE_CONNECTION_STRING


def test_missing_settings_name_every_variable(clean_env: Path) -> None:
    settings = load_settings({}, env_file=None)
    with pytest.raises(ConfigurationError) as caught:
        settings.require("workspace", "storage", stage="sweep")
    message = str(caught.value)
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        assert name in message
    # storage alone (the upload): the workspace or an override storage setting
    with pytest.raises(ConfigurationError) as caught:
        settings.require("storage", stage="upload")
    assert "default datastore" in str(caught.value) and "AZURE_STORAGE_ACCOUNT_URL" in str(caught.value)


def test_a_workspace_alone_needs_no_storage_setting(clean_env: Path) -> None:
    settings = load_settings({"subscription_id": "s", "resource_group": "g", "workspace_name": "w"}, env_file=None)
    settings.require("workspace", "storage", stage="sweep")
    settings.require("storage", stage="upload")
    assert settings.storage_mode == "workspace" and settings.storage_account_name is None


def test_each_stage_asks_only_for_what_it_needs(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    settings = load_settings({}, env_file=None)
    settings.require("storage", stage="upload")  # enough for an upload
    with pytest.raises(ConfigurationError, match="AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME"):
        settings.require("workspace", stage="register")


def test_backend_stage_reports_all_missing_before_any_call(clean_env: Path) -> None:
    backend = create_azure_backend({}, env_file=None)
    with pytest.raises(ConfigurationError) as caught:
        backend.client("sweep", "storage")
    assert "AZUREML_WORKSPACE_NAME" in str(caught.value) and "AZURE_RESOURCE_GROUP" in str(caught.value)


def test_sources_in_order_config_json_env_dotenv_overrides(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".azureml").mkdir()
    (clean_env / ".azureml" / "config.json").write_text(json.dumps(
        {"subscription_id": "sub-from-json", "resource_group": "rg-from-json", "workspace_name": "ws-from-json"}))
    (clean_env / ".env").write_text("AZURE_RESOURCE_GROUP=rg-from-dotenv\nHEARTFLOW_AZURE_COMPUTE=dotenv-cluster\n")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws-from-env")
    settings = load_settings({"compute": "flag-cluster", "endpoint_name": None}, env_file=clean_env / ".env")
    assert settings.subscription_id == "sub-from-json"
    assert settings.resource_group == "rg-from-dotenv"
    assert settings.workspace_name == "ws-from-env"
    assert settings.compute == "flag-cluster"
    assert settings.container == "data4ml" and settings.endpoint_name is None


def test_secrets_are_secret(clean_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"storage_connection_string": FAKE_CONNECTION_STRING}, env_file=None)
    assert "c2VjcmV0" not in repr(settings) and "c2VjcmV0" not in str(settings.describe())
    assert settings.storage_account_name == "heartacct"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings %s", settings.describe())
    assert "c2VjcmV0" not in caplog.text


def test_unknown_or_invalid_override_is_a_configuration_error(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown Azure setting"):
        load_settings({"computer": "x"}, env_file=None)
    with pytest.raises(ConfigurationError, match="compute_max_nodes"):
        load_settings({"compute_max_nodes": 0}, env_file=None)


@pytest.mark.parametrize(("value", "account", "has_key"), [
    ("UseDevelopmentStorage=true", "devstoreaccount1", True),
    (FAKE_CONNECTION_STRING, "heartacct", True),
    ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
     "devstoreaccount1", True),
    ("BlobEndpoint=https://sasacct.blob.core.windows.net/;SharedAccessSignature=sv=2024-01-01&sig=abc", "sasacct", False),
])
def test_connection_strings_are_parsed_by_the_sdk(clean_env: Path, value: str, account: str, has_key: bool) -> None:
    from backends.azure.entities import build_datastore
    from backends.azure.settings import storage_account

    settings = load_settings({"storage_connection_string": value}, env_file=None)
    assert settings.storage_mode == "connection_string" and settings.storage_account_name == account
    assert (storage_account(settings)[1] is not None) is has_key
    store = build_datastore(settings)  # the emulator's string was refused before
    assert store.account_name == account
    assert (type(store.credentials).__name__ == "AccountKeyConfiguration") is has_key


def test_an_account_url_gives_an_identity_based_datastore(clean_env: Path) -> None:
    from backends.azure.entities import build_datastore

    settings = load_settings({"storage_account_url": "https://heartacct.blob.core.windows.net"}, env_file=None)
    assert settings.storage_mode == "account_url" and settings.storage_account_name == "heartacct"
    store = build_datastore(settings)
    assert store.account_name == "heartacct"
    assert type(store.credentials).__name__ == "NoneCredentialConfiguration"  # no secret stored


def test_a_malformed_connection_string_is_one_clear_error_without_the_secret(clean_env: Path) -> None:
    settings = load_settings({"storage_connection_string": "AccountKey=c2VjcmV0;garbage"}, env_file=None)
    with pytest.raises(ConfigurationError, match="AZURE_STORAGE_CONNECTION_STRING") as caught:
        _ = settings.storage_account_name
    assert "c2VjcmV0" not in str(caught.value)
