"""``POST /feedback`` on the local endpoint: labels for earlier predictions, by request id (same key as
``/score``). Body ``{"data": [{"request_id": "...", "label": ...}, ...]}``; the answer says how many were
stored, how many match a captured prediction, and which ids are unknown (kept, and counted by
``heartflow monitor`` once their prediction is captured)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from backends.domain.outcomes import check_labels, receipt
from backends.errors import DataValidationError
from backends.local.endpoint.capture import append_feedback, captured_ids, rejection_reason
from src.request_validation import JSON_ERRORS, loads
from src.scoring import dumps

Receive = Callable[[], Awaitable[dict[str, Any]]]

FEEDBACK_PATH = "/feedback"
MAX_FEEDBACK_BYTES = 8 << 20


def rejection_of(status: int, body: bytes) -> str:
    """The coarse reason of a refused ``/score`` answer (its error text, never the request's body)."""
    try:
        message = loads(body).get("error", "")
    except (*JSON_ERRORS, AttributeError):  # type: ignore[misc]  # JSON_ERRORS: a tuple of exception classes
        message = ""
    return rejection_reason(status, str(message))


async def handle_feedback(
    headers: list[tuple[bytes, bytes]], receive: Receive, *, root: Path, expected: bytes, classes: list[Any] | None,
    executor: Executor,
) -> tuple[int, bytes]:
    """Check the key, read the body, then validate and store in ``executor`` (off the event loop)."""
    authorization = next((v for k, v in headers if k == b"authorization"), b"")
    if not hmac.compare_digest(authorization, expected):
        return 401, dumps({"error": "missing or wrong key: send 'Authorization: Bearer <key>'"})
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 400, dumps({"error": "the client disconnected before the body arrived"})
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FEEDBACK_BYTES:
            return 413, dumps({"error": f"the feedback body is larger than {MAX_FEEDBACK_BYTES} bytes: send batches"})
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return await asyncio.get_running_loop().run_in_executor(executor, _store, root, b"".join(chunks), classes)


def _store(root: Any, body: bytes, classes: list[Any] | None) -> tuple[int, bytes]:
    try:
        request = loads(body)
    except JSON_ERRORS:
        return 400, dumps({"error": 'the feedback body is not JSON: send {"data": [{"request_id": ..., "label": ...}]}'})
    items = request.get("data") if isinstance(request, dict) else None
    if not isinstance(items, list):
        return 400, dumps({"error": 'the feedback body needs "data": [{"request_id": ..., "label": ...}, ...]'})
    try:
        pairs = check_labels(items, classes, "feedback")
    except DataValidationError as exc:
        return 400, dumps({"error": str(exc)})
    append_feedback(root, pairs, "http")
    return 200, dumps(receipt(pairs, captured_ids(root)).to_json())
