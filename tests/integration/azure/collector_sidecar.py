"""The managed deployment's collection sidecar, as far as heartflow relies on it: it receives what
azureml-ai-monitoring's Collector posts (``POST /modeldata/log`` with ``ce-type``, ``ce-time``,
``ce-x-request-id``, ``ce-model-version``, ``trace-id``, ``ce-agent`` and ``ce-collect-data-type``, the
DataFrame as ``to_json(orient="records")``; azureml-ai-monitoring 1.0.0, worker/sender.py) and appends one
JSON line per payload, in the documented schema, to ``modelDataCollector/{endpoint}/{deployment}/
{collection}/{yyyy}/{MM}/{dd}/{HH}/{instance}.jsonl`` of the workspace's container (here Azurite).

The real sidecar cannot run here; this writer follows Azure ML's "Collect production data from models
deployed for real-time inferencing" (the path, the line's fields) and the package's source (the headers).
``collecting_score`` runs the real src/score.py with the real Collector in this process, posting here."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError

SOURCE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
          "Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/{endpoint}/deployments/{deployment}")


def collector_line(collection: str, data: list[dict[str, Any]], correlation_id: str, at: float, *,
                   endpoint: str, deployment: str, model_version: str | None = None, payload_id: str | None = None,
                   agent: str = "azureml-ai-monitoring/1.0.0") -> str:
    """One line of a collector's .jsonl file, as the documentation shows it."""
    body = json.dumps(data)
    return json.dumps({
        "specversion": "1.0", "id": payload_id or str(uuid.uuid4()),
        "source": SOURCE.format(endpoint=endpoint, deployment=deployment), "type": f"azureml.inference.{collection}",
        "datacontenttype": "application/json", "time": datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data, "correlationid": correlation_id, "xrequestid": correlation_id,
        "modelversion": model_version or "default", "collectdatatype": "pandas.core.frame.DataFrame", "agent": agent,
        "contentrange": f"bytes 0-{len(body) - 1}/{len(body)}",
    }, separators=(",", ":"))


def append_lines(container: Any, endpoint: str, deployment: str, collection: str, lines: list[str],
                 at: float | None = None, instance: str = "instance-0") -> str:
    """Append lines to the hour file of ``at`` (an append blob, as the sidecar grows its files); its name."""
    hour = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    name = f"modelDataCollector/{endpoint}/{deployment}/{collection}/{hour:%Y/%m/%d/%H}/{instance}.jsonl"
    blob = container.get_blob_client(name)
    with suppress(ResourceExistsError):
        blob.create_append_blob(if_none_match="*")
    blob.append_block(("\n".join(lines) + "\n").encode("utf-8"))
    return name


class CollectorSidecar:
    """An HTTP server on 127.0.0.1 that writes what the Collector posts for ``endpoint``/``deployment``
    (switchable between phases) into ``container``: lines are kept per file and appended on ``flush`` (the
    real sidecar batches too; one append per payload would make the tests wait on Azurite)."""

    def __init__(self, container: Any, endpoint: str, deployment: str = "blue") -> None:
        self.container = container
        self.endpoint = endpoint
        self.deployment = deployment
        self.received = 0
        self._pending: dict[tuple[str, str, int], list[str]] = {}
        self._lock = threading.Lock()
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sidecar._write(dict(self.headers), body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _write(self, headers: dict[str, str], body: bytes) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        collection = h["ce-type"].removeprefix("azureml.inference.")
        at = float(h["ce-time"])
        line = collector_line(collection, json.loads(body), h.get("ce-x-request-id", ""), at, endpoint=self.endpoint,
                              deployment=self.deployment, model_version=h.get("ce-model-version"),
                              payload_id=h.get("trace-id"), agent=h.get("ce-agent", ""))
        with self._lock:
            self._pending.setdefault((self.deployment, collection, int(at) // 3600 * 3600), []).append(line)
            self.received += 1

    def flush(self) -> None:
        """Append every line received so far to its hour file."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for (deployment, collection, hour), lines in pending.items():
            append_lines(self.container, self.endpoint, deployment, collection, lines, hour)

    def env(self) -> dict[str, str]:
        return {"AZUREML_MDC_ENABLED": "true", "AZUREML_MDC_HOST": "127.0.0.1", "AZUREML_MDC_PORT": str(self.server.server_port)}

    def close(self) -> None:
        self.flush()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def collecting_score(model_dir: Path, sidecar: CollectorSidecar, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """src/score.py initialised on ``model_dir`` with its data collector on (the real azureml-ai-monitoring,
    posting to ``sidecar``); on exit every queued payload is sent before the collector stops."""
    from azureml.ai.monitoring.init import teardown

    from src import score

    for name, value in {**sidecar.env(), "AZUREML_MODEL_DIR": str(model_dir), "HEARTFLOW_CAPTURE": "1"}.items():
        monkeypatch.setenv(name, value)
    score.init()
    assert score._collectors is not None, "the data collector did not start"
    try:
        yield score
    finally:
        teardown(wait_for_flush=True)
        score._collectors = None
        sidecar.flush()


def post(score: Any, rows: list[dict[str, Any]], request_id: str) -> Any:
    """score.run() as azmlinfsrv calls it, inside a request that carries ``x-request-id``; an exception
    (a failing model) comes back as the exception, as azmlinfsrv would answer 500."""
    from flask import Flask

    app = _APP.setdefault("app", Flask("heartflow-test"))
    with app.test_request_context("/score", method="POST", headers={"x-request-id": request_id}):
        try:
            return score.run(json.dumps({"data": rows}))
        except Exception as exc:  # noqa: BLE001 - the failure is the answer under test
            return exc


_APP: dict[str, Any] = {}
