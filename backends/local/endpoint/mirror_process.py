"""The candidate's side of the shadow's mirror: a process of its own next to each endpoint worker.

The worker queues each copy (the request body, the request id, the champion's answer and scoring time) and
goes on with its next request; its recorder thread sends a tick's copies, a few datagrams on a Unix socket
pair; this process scores the copy with the
candidate's model and writes both answers to ``live/<session>/<worker pid>.jsonl``. Scoring here, not in a
thread of the worker, keeps the candidate off the worker's interpreter lock: a copy never holds up a client's
request. It wakes once every BATCH_S for the copies waiting, and rests in proportion to what it spent
(``--share``): on a saturated machine it takes at most that share of a core, and the worker drops the copies
the socket cannot hold (counted), never a request.

    python -m backends.local.endpoint.mirror_process --fd N --model-dir DIR --out FILE [--max-rows N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from src.request_validation import dumps, loads

if TYPE_CHECKING:
    from src.scoring import Scorer

logger = logging.getLogger(__name__)

HEADER = struct.Struct("<IdI")  # champion status, champion scoring ms, copies dropped before this one
FRAME = struct.Struct("<I")  # a datagram holds several copies, each behind its length
MAX_DATAGRAM = 1 << 20
BATCH_S = 0.2


def encode(request_id: str, status: int, ms: float, dropped: int, payload: bytes, body: bytes) -> bytes:
    rid = request_id.encode("utf-8", "replace")[:128]
    return HEADER.pack(status, ms, dropped) + struct.pack("<BI", len(rid), len(payload)) + rid + payload + body


def pack(copies: list[bytes]) -> bytes:
    """One datagram of several encoded copies (the worker sends a tick's copies in a few datagrams)."""
    return b"".join(FRAME.pack(len(copy)) + copy for copy in copies)


def unpack(message: bytes) -> list[bytes]:
    copies, at = [], 0
    while at + FRAME.size <= len(message):
        (size,) = FRAME.unpack_from(message, at)
        at += FRAME.size
        copies.append(message[at:at + size])
        at += size
    return copies


def decode(message: bytes) -> tuple[str, int, float, int, bytes, bytes]:
    status, ms, dropped = HEADER.unpack_from(message)
    at = HEADER.size
    rid_len, payload_len = struct.unpack_from("<BI", message, at)
    at += 5
    rid = message[at:at + rid_len].decode("utf-8", "replace")
    at += rid_len
    return rid, status, ms, dropped, message[at:at + payload_len], message[at + payload_len:]


def labels_of(payload: bytes) -> tuple[str, ...]:
    """The predicted labels of an answer body (a list, or {"predictions": [...]})."""
    try:
        body = loads(payload)
    except ValueError:
        return ()
    if isinstance(body, dict):
        body = body.get("predictions", [])
    return tuple(str(v) for v in body) if isinstance(body, list) else ()


_failures: dict[str, int] = {}


def score_safely(scorer: Scorer, body: bytes) -> tuple[int, bytes]:
    try:
        return scorer.score_json(body)
    except Exception as exc:  # noqa: BLE001 - a model that raises is a 500 for this request, not a dead thread
        seen = _failures[scorer.label] = _failures.get(scorer.label, 0) + 1
        if seen == 1 or seen % 1000 == 0:  # a model failing on a share of live traffic would flood the log
            logger.warning("deployment %s raised on a request (%d so far): %s: %s", scorer.label, seen,
                           type(exc).__name__, exc)
        return 500, dumps({"error": "the model failed on this request"})


def serve(sock: socket.socket, model_dir: Path, out: Path, max_rows: int, share: float) -> None:
    """Every BATCH_S, take the copies waiting on the socket, score them and write both answers; rest in
    proportion to what that cost. Waking once a batch, not once a copy, keeps the candidate's model out of the
    caches between the worker's requests most of the time. Ends when the worker closes its end."""
    from src.scoring import Scorer

    started_marker, done_marker = out.with_suffix(".started"), out.with_suffix(".done")
    _append(started_marker, b"")
    try:
        _serve(sock, Scorer.from_model_dir(model_dir, max_rows=max_rows, label="mirror"), out, share)
    finally:
        _append(done_marker, b"")  # the reader waits for this: every answer of the session is written


def _serve(sock: socket.socket, scorer: Scorer, out: Path, share: float) -> None:
    rest = 1 / share - 1
    state_file, session = out.parent.parent.parent / "state.json", out.parent.name
    sock.setblocking(False)
    ended = False
    while not ended:
        time.sleep(BATCH_S)
        ended = not _still_mirroring(state_file, session)  # the copies already sent are still scored
        batch: list[bytes] = []
        while True:
            try:
                message = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            if not message:  # the worker closed its end: the session is over
                ended = True
                break
            batch.append(message)
        cpu = time.thread_time()
        lines: list[bytes] = []
        for message in (copy for datagram in batch for copy in unpack(datagram)):
            rid, status, ms, dropped, payload, body = decode(message)
            started = time.thread_time()
            cand_status, cand_payload = score_safely(scorer, body)
            # CPU time: what scoring cost, not how long this process waited for a core.
            cand_ms = (time.thread_time() - started) * 1000
            if dropped:
                lines.append(dumps({"side": "dropped", "n": dropped}))
            lines.append(dumps({"id": rid, "side": "champion", "status": status, "ms": round(ms, 4),
                                "predictions": labels_of(payload) if status < 300 else []}))
            lines.append(dumps({"id": rid, "side": "candidate", "status": cand_status, "ms": round(cand_ms, 4),
                                "predictions": labels_of(cand_payload) if cand_status < 300 else []}))
        if lines:
            _append(out, b"\n".join(lines) + b"\n")
        if not ended:
            time.sleep((time.thread_time() - cpu) * rest)


def _still_mirroring(state_file: Path, session: str) -> bool:
    """True while state.json's mirror is this session (the worker notices a change only at its next request)."""
    try:
        mirror = (json.loads(state_file.read_text(encoding="utf-8")) or {}).get("mirror") or {}
    except (OSError, ValueError):
        return False
    return bool(mirror.get("session") == session)


def _append(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:  # the session's folder was removed: nobody reads it any more
        return
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score mirrored copies with a candidate model (one endpoint worker's).")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.5)
    args = parser.parse_args(argv)
    with socket.socket(fileno=args.fd) as sock:
        serve(sock, args.model_dir, args.out, args.max_rows, args.share)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
