"""Azurite, the Azure Storage emulator, on 127.0.0.1: the `azurite` fixture (its connection string) and
`upload_env` (no Azure variable set, a scratch working directory). A pytest plugin (tests/conftest.py),
so every test that needs them names the fixture and imports nothing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import free_port
from tests.servers import accepts_connections, running_server

REPO = Path(__file__).resolve().parents[1]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account; the key is public and only opens the local emulator.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start azurite-blob from the repo's node_modules (`npm ci`); yield its connection string."""
    if not AZURITE.exists() or shutil.which("node") is None:
        pytest.fail("azurite is not installed: run `make test` (or `npm ci`) so the Blob Storage checks run")
    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    with running_server(azurite_command(port, location), ready=accepts_connections(port), what="azurite",
                        log=location / "azurite.log", timeout_s=30, poll_s=0.1):
        yield (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
               f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")


def azurite_command(port: int, location: Path) -> list[str]:
    """azurite-blob on 127.0.0.1:``port``, storing under ``location`` (its log goes beside, see running_server)."""
    return [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
            "--skipApiVersionCheck", "--silent"]


@pytest.fixture()
def upload_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME",
                 "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
