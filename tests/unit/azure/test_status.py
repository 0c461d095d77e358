"""`heartflow status --backend azure` through typer's CliRunner on the control-plane fakes: what serves on the
workspace's endpoint, its champion, and the last monitor figures from the history blob, in the record shape
of the local status (flows.cli_json.status_record). The blob container is the SDK's ContainerClient, spec'd;
tests/integration/azure/test_collected_azurite.py reads the same history from Azurite after a monitor flow."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, StorageStreamDownloader
from typer.testing import CliRunner

from backends.azure import AzureBackend
from backends.azure.collected import CollectedStore
from backends.azure.monitoring import history_blob
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.domain.spec import DeploySpec
from flows import cli_status
from flows.cli import app
from flows.cli_json import status_record
from tests.unit.azure.builders import DATA, ENDPOINT, SPEC, make, report
from tests.unit.azure.fakes import FakeAzure


def _container(blobs: dict[str, bytes]) -> Any:
    """The workspace's default container as the SDK's ContainerClient answers: downloads of what ``blobs`` holds."""
    container = create_autospec(ContainerClient, instance=True)
    container.container_name = "azureml-blobstore-1"

    def download(name: str, **kwargs: Any) -> Any:
        if name not in blobs:
            raise ResourceNotFoundError(f"blob {name} not found")
        downloaded = create_autospec(StorageStreamDownloader, instance=True)
        downloaded.readall.return_value = blobs[name]
        return downloaded

    container.download_blob.side_effect = download
    return container


def _backend(settings: AzureSettings, blobs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> AzureBackend:
    backend = make(settings, FakeAzure())
    backend._collected_store = CollectedStore(_container(blobs), RetryPolicy(attempts=1, initial_s=0, max_s=0))
    monkeypatch.setattr(cli_status, "_azure_backend", lambda model_name: backend)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no rollout slot to read
    return backend


def _figures(until: str, requests: int, drifted: list[str]) -> dict[str, Any]:
    return {"endpoint": ENDPOINT, "model": "heart-classifier", "model_version": "1", "since": "2026-12-03T12:00:00Z",
            "until": until, "requests": requests, "scored_rows": requests, "errors": {}, "drifted": drifted,
            "prediction_drift": {"drifted": False, "positive_rate": 0.5, "reference_positive_rate": 0.5, "score_psi": 0.01},
            "realized": {"metric": "accuracy", "value": 0.8, "labelled": 40, "interval_95": [0.65, 0.9]},
            "estimated": {"metric": "accuracy", "value": 0.82, "rows": 60}, "degraded": False,
            "degraded_reason": "within the gate's margin", "latency_ms": {"p50": 4.0, "p99": 9.0}, "notes": []}


def test_status_shows_what_serves_on_azure_the_champion_and_the_last_monitor_figures(
    settings: AzureSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = [_figures("2026-12-03T12:00:00Z", 80, []), _figures("2026-12-03T13:00:00Z", 120, ["chol"])]
    backend = _backend(settings, {history_blob(ENDPOINT): json.dumps(history).encode()}, monkeypatch)
    model = backend.register(backend.sweep(DATA, SPEC))
    backend.promote(backend.deploy(model, DeploySpec()), model, report(0.9))

    done = CliRunner().invoke(app, ["status", "--backend", "azure", "--json"])
    assert done.exit_code == 0, done.output
    record = json.loads(done.output)
    assert set(record) == set(json.loads(status_record(ENDPOINT, None, None)))  # the local record's shape
    assert (record["endpoint"], record["serving"], record["deployment"]) == (ENDPOINT, True, "blue")
    assert record["model_version"] == model.version and record["champion_version"] == model.version
    assert record["champion_serves"] and record["traffic"] == {"blue": 100} and record["inconsistent"] == []
    assert record["monitor"]["requests"] == 120 and record["monitor"]["drifted"] == ["chol"]  # the newest entry
    assert record["monitor"]["realized"]["labelled"] == 40

    text = CliRunner().invoke(app, ["status", "--backend", "azure"])
    assert text.exit_code == 0, text.output
    assert f"champion: {model.name} v{model.version}" in text.output
    assert "last monitor of" in text.output and "120 request(s)" in text.output and "chol" in text.output


def test_status_on_azure_says_when_nothing_serves_and_no_monitor_ran(
    settings: AzureSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _backend(settings, {}, monkeypatch)
    done = CliRunner().invoke(app, ["status", "--backend", "azure", "--json"])
    assert done.exit_code == 3, done.output
    record = json.loads(done.output)
    assert (record["endpoint"], record["serving"], record["champion_version"], record["monitor"]) == (ENDPOINT, False, None, None)

    text = CliRunner().invoke(app, ["status", "--backend", "azure"])
    assert text.exit_code == 3 and f"endpoint {ENDPOINT} is not running" in text.output


def test_status_on_azure_without_monitor_figures_says_how_to_get_them(
    settings: AzureSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = _backend(settings, {}, monkeypatch)
    model = backend.register(backend.sweep(DATA, SPEC))
    backend.promote(backend.deploy(model, DeploySpec()), model, report(0.9))
    text = CliRunner().invoke(app, ["status", "--backend", "azure"])
    assert text.exit_code == 0, text.output
    assert "no monitor figures yet: run `heartflow monitor --backend azure`" in text.output
