"""The local endpoint's ASGI application: one endpoint, several named deployments, a traffic split.

Routes: ``POST /score`` and ``POST /feedback`` (Bearer key), ``GET /health`` and ``GET /`` (liveness), ``GET /ready`` (every
deployment of the current state loaded), ``GET /openapi.json``.

Each worker process follows ``state.json``: a cheap stat per request notices a new version, a background
thread loads the deployments it does not have yet, and only then the worker switches to the new table.
Until the switch it keeps serving the old one, so a redeploy, a traffic change or a deletion never fails a
request. A request naming a deployment (header ``azureml-model-deployment``) goes there whatever its
traffic, waiting for it to load when it is new.

Capture (``capture.py``): every ``/score`` answer carries an ``x-request-id``; what was asked and answered
is recorded off the request path, for ``heartflow monitor``. ``/feedback`` stores labels by request id.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backends.local.endpoint.capture import REQUEST_ID_HEADER, CaptureLog, Ticket, request_id_of
from backends.local.endpoint.deadlines import BodyDeadlines
from backends.local.endpoint.feedback import FEEDBACK_PATH, handle_feedback, rejection_of
from backends.local.endpoint.live import LiveRecorder
from backends.local.endpoint.logs import AccessLog
from backends.local.endpoint.openapi import openapi_document
from backends.local.endpoint.state import ENDPOINT_DIR_ENV, EndpointPaths, read_key, read_state
from backends.local.endpoint.table import LoadedDeployment, Table, build_table, needs_loading, state_version
from src.scoring import Scorer, dumps, prepare_serving

logger = logging.getLogger(__name__)
ACCESS_LOGGER = f"{__name__}.access"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DEPLOYMENT_HEADER = b"azureml-model-deployment"
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Bodies up to this size (about 60 heart records) are scored inline; larger ones in the scoring thread,
# so request_timeout_ms can answer 408 while a big batch is still computing.
INLINE_BODY_BYTES = 16 * 1024


class EndpointApp:
    """The ASGI callable served by uvicorn in each worker process."""

    def __init__(self, paths: EndpointPaths, key: str) -> None:
        self.paths = paths
        self._expected = b"Bearer " + key.encode()
        self.table = Table(version=None, state=None)
        self._loading: asyncio.Future[Table] | None = None
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deployment-loader")
        self._scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
        self._openapi: bytes | None = None
        self._pid = os.getpid()
        self._access = AccessLog(ACCESS_LOGGER)
        self._deadlines = BodyDeadlines()
        self._capture = CaptureLog(paths.root, paths.name)
        self._live = LiveRecorder(paths, self._pid)  # the shadow's mirror and the watch (idle unless asked)

    # -- deployment table ------------------------------------------------------------------------------

    def load_now(self) -> None:
        """Load the table synchronously (worker start-up). With nothing to load (a host started ahead of its
        first deployment), what a first load imports is imported now."""
        self.table = build_table(self.paths, self.table)
        if not self.table.deployments:
            prepare_serving()
        _freeze_heap()

    def _refresh(self) -> asyncio.Future[Table] | None:
        """Follow state.json: a change that needs no model loading (traffic, a deletion) applies at once;
        one that does loads in the background while the current table keeps serving. The pending load."""
        if self._loading is not None:
            return self._loading
        version = state_version(self.paths.state)
        if version == self.table.version:
            return None
        try:
            state = read_state(self.paths)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.error("cannot read %s, still serving the previous state: %s", self.paths.state, exc)
            return None
        if not needs_loading(state, self.table):
            self.table = build_table(self.paths, self.table, state, version)
            return None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._loader, build_table, self.paths, self.table, state, version)
        self._loading = future
        future.add_done_callback(self._switch)
        return future

    def _switch(self, future: asyncio.Future[Table]) -> None:
        self._loading = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            logger.error("reloading the endpoint state failed, still serving the previous one: %s", exc)
            return
        self.table = future.result()
        _freeze_heap()

    async def _deployment_named(self, name: str) -> LoadedDeployment | None:
        found = self.table.deployments.get(name)
        if found is not None and self._loading is None:
            return found
        for _ in range(2):  # a pending load, then one more in case the state changed again meanwhile
            pending = self._refresh()
            if pending is None:
                break
            try:
                await asyncio.shield(pending)
            except Exception:  # noqa: BLE001 - logged by _switch; the old table keeps serving
                break
        return self.table.deployments.get(name)

    # -- ASGI ----------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.get_running_loop().run_in_executor(self._loader, self.load_now)
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn, which stops the worker
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._scoring.shutdown(wait=True)
                self._capture.close()
                self._live.close()
                self._access.flush()
                self._loader.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        deployment = ""
        size = 0
        request_id = b""
        ticket: Ticket | None = None
        if path == "/score":
            request_id = request_id_of(scope["headers"])
            if method == "POST":
                ticket = Ticket(request_id) if self._capture.sampled() else None
                status, body, deployment, size = await self._score(scope, receive, ticket, request_id)
            else:
                status, body = 405, dumps({"error": "use POST /score"})
        elif path == FEEDBACK_PATH:
            request_id = request_id_of(scope["headers"])
            status, body = await self._feedback(scope, receive) if method == "POST" else (
                405, dumps({"error": "use POST /feedback"}))
        elif path in ("/health", "/"):
            status, body = (200, b'{"status":"alive"}') if method in ("GET", "HEAD") else (405, dumps({"error": "use GET"}))
        elif path == "/ready":
            status, body = self._ready()
        elif path == "/openapi.json":
            status, body = 200, self._openapi_bytes()
        else:
            status, body = 404, dumps({"error": f"no route {path}: use POST /score, GET /health, /ready or /openapi.json"})
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if deployment:
            headers.append((DEPLOYMENT_HEADER, deployment.encode()))
        if request_id:
            headers.append((REQUEST_ID_HEADER, request_id))
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="heartflow"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
        if path == "/score":  # after the answer is sent: capture costs the client nothing
            if status >= 400:
                self._capture.rejected(request_id, status, rejection_of(status, body), deployment)
            elif ticket is not None:
                self._capture.scored(ticket, status, (time.perf_counter() - started) * 1000)
            else:
                self._capture.unsampled(deployment, "")
        if self._access.enabled:
            client = scope.get("client")
            self._access.record(method, path, status, round((time.perf_counter() - started) * 1000, 3),
                                deployment or None, size, client[0] if client else "", self._pid)

    async def _feedback(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        classes = next((list(d.scorer.classes) for d in self.table.deployments.values() if d.scorer is not None), None)
        return await handle_feedback(scope["headers"], receive, root=self.paths.root, expected=self._expected,
                                     classes=classes, executor=self._loader)

    def _openapi_bytes(self) -> bytes:
        if self._openapi is None:
            scorer = next((d.scorer for d in self.table.deployments.values() if d.scorer is not None), None)
            self._openapi = dumps(openapi_document(self.paths.name, scorer))
        return self._openapi

    def _ready(self) -> tuple[int, bytes]:
        self._refresh()
        table = self.table
        payload = {
            "ready": table.ready and self._loading is None,
            "deployments": {
                name: ("loaded" if d.scorer is not None else "failed") for name, d in table.deployments.items()
            },
            "traffic": dict(table.state.traffic) if table.state else {},
            # Per deployment, values this worker was sent that the model never saw in training, by column
            # (answered as no known category): data drifting away from what the model knows.
            "unseen_categories": {
                name: dict(d.scorer.unseen) for name, d in table.deployments.items() if d.scorer is not None and d.scorer.unseen
            },
            "worker_pid": self._pid,
        }
        return (200 if payload["ready"] else 503), dumps(payload)

    async def _score(self, scope: Scope, receive: Receive, ticket: Ticket | None = None,
                     request_id: bytes = b"") -> tuple[int, bytes, str, int]:
        headers = scope["headers"]
        authorization = b""
        named = b""
        length = -1
        for key, value in headers:
            if key == b"authorization":
                authorization = value
            elif key == DEPLOYMENT_HEADER:
                named = value
            elif key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return 400, dumps({"error": "Content-Length is not a number"}), "", 0
        if not hmac.compare_digest(authorization, self._expected):
            return 401, dumps({"error": "missing or wrong key: send 'Authorization: Bearer <key>'"}), "", 0

        self._refresh()
        table = self.table
        if named:
            name = named.decode("latin-1").strip()
            found = await self._deployment_named(name)
            if found is None:
                known = ", ".join(sorted(self.table.deployments)) or "none"
                return 404, dumps({"error": f"no deployment {name!r} on this endpoint (deployments: {known})"}), "", 0
        else:
            name = table.pick() or ""
            if not name:
                return 503, dumps({"error": "no deployment takes traffic: set traffic or name a deployment "
                                            "with the azureml-model-deployment header"}), "", 0
            found = table.deployments[name]
        if found.scorer is None:
            return 503, dumps({"error": f"deployment {name!r} failed to load: {found.error}",
                               "deployment_state": "failed"}), name, 0

        if ticket is not None:
            ticket.deployment, ticket.model_name, ticket.model_version = name, found.config.model_name, found.config.model_version
        limit = table.state.max_body_bytes if table.state else 1 << 20
        timeout_s = found.config.request_timeout_ms / 1000
        deadline = time.perf_counter() + timeout_s
        if length > limit:
            return 413, dumps({"error": f"the request body has {length} bytes, more than {limit}"}), name, 0
        try:
            body = await self._deadlines.run(lambda: self._read_body(receive, limit), timeout_s)
        except TimeoutError:
            return 408, dumps({"error": f"the request body did not arrive within {found.config.request_timeout_ms} ms"}), name, 0
        except _BodyTooLarge:
            return 413, dumps({"error": f"the request body is larger than {limit} bytes"}), name, 0
        except _Disconnected:
            return 400, dumps({"error": "the client disconnected before the body arrived"}), name, 0

        scorer = found.scorer
        scoring_started = time.perf_counter()
        if len(body) <= INLINE_BODY_BYTES:
            # A small body scores in well under a millisecond: inline in the event loop is faster than a
            # thread hand-off (about 0.4 ms here), and its deadline is checked before scoring starts.
            status, payload = _score_before(scorer, body, deadline, ticket)
        else:
            future = asyncio.get_running_loop().run_in_executor(self._scoring, _score_before, scorer, body, deadline,
                                                                ticket)
            try:
                status, payload = await asyncio.wait_for(asyncio.shield(future), max(deadline - time.perf_counter(), 0.001))
            except TimeoutError:
                return 408, dumps({"error": f"scoring took longer than {found.config.request_timeout_ms} ms "
                                            "(request_timeout_ms): send fewer rows"}), name, 0
        # The shadow's mirror and the watch (backends/local/endpoint/live.py), keyed by the same request id.
        status, payload = self._live.after_score(
            table.state, table.deployments, name, bool(named), headers, body, status, payload,
            (time.perf_counter() - scoring_started) * 1000, request_id=request_id.decode("latin-1") or None)
        return status, payload, name, len(body)

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _BodyTooLarge
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _score_before(scorer: Scorer, body: bytes, deadline: float, ticket: Ticket | None = None) -> tuple[int, bytes]:
    """Score unless the request already waited past its deadline in the queue (then it is answered 408);
    a sampled request keeps what capture records on its ticket."""
    if time.perf_counter() > deadline:
        return 408, dumps({"error": "the request waited longer than request_timeout_ms before scoring"})
    try:
        if ticket is None:
            return scorer.score_json(body)
        status, payload, ticket.scored = scorer.score_captured(body)
        return status, dumps(payload)
    except Exception as exc:  # noqa: BLE001 - a model that raises on some input answers 500 for that request
        logger.warning("deployment %s raised on a request: %s: %s", scorer.label, type(exc).__name__, exc)
        return 500, dumps({"error": "the model failed on this request"})


def _freeze_heap() -> None:
    """Move every object alive now (the libraries, the loaded models) out of the garbage collector's view.
    A worker holds ~350,000 of them; a full collection walked them all, a ~0.2 s stall of every request in
    flight, every few thousand requests. Requests allocate little, so what they leave is still collected."""
    gc.collect()
    gc.freeze()


def create_app() -> EndpointApp:
    """uvicorn's app factory: the endpoint folder comes from HEARTFLOW_ENDPOINT_DIR, the key from its file."""
    root = os.environ.get(ENDPOINT_DIR_ENV)
    if not root:
        raise RuntimeError(f"{ENDPOINT_DIR_ENV} is not set: start the host through backends.local.endpoint")
    paths = EndpointPaths.from_root(Path(root))
    return EndpointApp(paths, read_key(paths))
