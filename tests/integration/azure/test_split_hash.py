"""One serialisation for both backends: a split with float columns has the same sha256 in the local store,
as the blob's name in Blob Storage (Azurite) and as the sha256 of the bytes the blob holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from backends.azure import create_azure_backend
from backends.domain.dataset import sha256_of
from backends.local.backend import LocalBackend


def _split_with_floats(rows: int = 400) -> pd.DataFrame:
    """Floats whose shortest repr and 17-digit forms differ (1/3, 0.1 + 0.2, tiny and huge values)."""
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "patient_id": np.arange(rows, dtype=np.int64),
        "oldpeak": rng.normal(1.0, 1.2, rows).round(1) + 0.1 + 0.2,
        "ratio": rng.integers(1, 9, rows) / 3,
        "tiny": rng.random(rows) * 1e-12,
        "huge": rng.random(rows) * 1e18,
        "output": rng.integers(0, 2, rows),
    })


def test_local_sha256_equals_blob_name_and_blob_content(azurite: str, upload_env: Path) -> None:
    frame = _split_with_floats()
    local = LocalBackend(upload_env / "home").upload(frame)
    azure = create_azure_backend({"storage_connection_string": azurite, "container": "hash-test"}, env_file=None)
    remote = azure.upload(frame)

    assert local.sha256 == remote.sha256 == sha256_of(frame)
    assert remote.uri.endswith(f"/{local.sha256}.csv")

    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite).get_container_client("hash-test")
    (blob,) = list(container.list_blobs())
    stored = container.get_blob_client(blob.name).download_blob().readall()
    assert blob.name.rsplit("/", 1)[-1] == f"{local.sha256}.csv"
    assert hashlib.sha256(stored).hexdigest() == local.sha256
    assert stored == Path(local.uri.removeprefix("file://")).read_bytes()
    # the stored text reads back to the same floats, bit for bit
    from io import BytesIO

    back = pd.read_csv(BytesIO(stored), float_precision="round_trip")
    assert back["ratio"].to_numpy().tobytes() == frame["ratio"].to_numpy().tobytes()
    assert back["huge"].to_numpy().tobytes() == frame["huge"].to_numpy().tobytes()
