"""Live load for tests: wrk (``bench/wrk.py``, the benchmarks' own invocation) in the background against an
endpoint, rotating through request bodies, each request with its own x-request-id; the summary counts every
answer that was not 2xx and every socket error."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from bench import wrk
from bench.wrk import Load, WrkResult

__all__ = ["Load", "WrkResult", "need_wrk", "wrk_load"]


def need_wrk() -> str:
    path = wrk.wrk_path()
    if path is None:
        pytest.fail("wrk is not installed: run `make test` (it installs wrk) or `make wrk`")
    return path


@contextmanager
def wrk_load(uri: str, key: str, bodies: Sequence[object], seconds: int, connections: int = 2) -> Iterator[Load]:
    """wrk against ``uri`` while the block runs (at most ``seconds``); ``Load.result`` is set after the block."""
    need_wrk()
    with wrk.background(uri, bodies, auth=f"Bearer {key}", seconds=seconds, connections=connections) as load:
        yield load
