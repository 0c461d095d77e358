"""ASGI apps the endpoint benchmark compares the local host with (served by the same uvicorn, httptools and
uvloop, one worker):

- ``floor_app``: reads the body and answers a constant, without scoring: the floor of this HTTP stack;
- ``create_starlette_app``: the local host's work for one deployment (Bearer key, body limit, scoring with
  src/scoring.py's Scorer, one JSON access line a request) written with Starlette's routing, Request and
  Response instead of the host's hand-written ASGI: it decides whether the host should use Starlette.

    uvicorn --app-dir bench apps:floor_app
    HEARTFLOW_BENCH_MODEL=<model dir> HEARTFLOW_BENCH_KEY=<key> uvicorn --factory --app-dir bench apps:create_starlette_app
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any

ANSWER = b"[0]"
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"3")]


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def create_starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from src.scoring import Scorer, dumps

    scorer = Scorer.from_model_dir(Path(os.environ["HEARTFLOW_BENCH_MODEL"]), max_rows=1000, label="blue")
    expected = "Bearer " + os.environ["HEARTFLOW_BENCH_KEY"]
    access = logging.getLogger("bench.starlette.access")
    limit = 1 << 20

    async def score(request: Request) -> Response:
        started = time.perf_counter()
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            return Response(dumps({"error": "missing or wrong key"}), 401, media_type="application/json")
        if int(request.headers.get("content-length", "0")) > limit:
            return Response(dumps({"error": "too large"}), 413, media_type="application/json")
        status, payload = scorer.score_json(await request.body())
        access.info("POST /score %d", status, extra={"access": {
            "status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 3), "deployment": "blue"}})
        return Response(payload, status, media_type="application/json", headers={"azureml-model-deployment": "blue"})

    return Starlette(routes=[Route("/score", score, methods=["POST"])])
