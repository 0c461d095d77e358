"""BodyDeadlines: one timer keeps the deadline of every body read in flight."""

from __future__ import annotations

import asyncio
import time

import pytest

from backends.local.endpoint.deadlines import BodyDeadlines


def test_a_read_that_is_ready_returns_and_leaves_nothing_behind() -> None:
    async def main() -> None:
        deadlines = BodyDeadlines(tick_s=0.01)

        async def ready() -> bytes:
            return b"body"

        assert await deadlines.run(ready, 1.0) == b"body"
        assert deadlines.in_flight == 0

    asyncio.run(main())


def test_a_slow_read_times_out_within_a_tick_while_a_quick_one_beside_it_completes() -> None:
    async def main() -> tuple[float, bytes]:
        deadlines = BodyDeadlines(tick_s=0.02)
        never = asyncio.Event()

        async def slow() -> bytes:
            await never.wait()
            return b"late"

        async def quick() -> bytes:
            await asyncio.sleep(0.05)
            return b"quick"

        started = time.monotonic()
        slow_read = asyncio.create_task(deadlines.run(slow, 0.1))
        quick_answer = await deadlines.run(quick, 1.0)
        with pytest.raises(TimeoutError):
            await slow_read
        assert deadlines.in_flight == 0
        return time.monotonic() - started, quick_answer

    waited, answer = asyncio.run(main())
    assert answer == b"quick"
    assert 0.1 <= waited < 1.0


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def main() -> None:
        deadlines = BodyDeadlines(tick_s=0.01)
        never = asyncio.Event()

        async def slow() -> bytes:
            await never.wait()
            return b""

        task = asyncio.create_task(deadlines.run(slow, 10.0))
        await asyncio.sleep(0.03)
        task.cancel()  # a client disconnect or a shutdown, not the deadline
        with pytest.raises(asyncio.CancelledError):
            await task
        assert deadlines.in_flight == 0

    asyncio.run(main())
