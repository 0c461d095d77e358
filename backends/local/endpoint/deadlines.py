"""Deadlines for the request bodies one worker is reading, kept by one timer for all of them.

``asyncio.timeout`` arms and cancels a timer per request; on the 1-row path that was about a twentieth of
a request's CPU in the host. A body that is already there (nearly every request: it travels with the
headers) now costs a dictionary entry, and a slow one is cancelled by the next tick after its deadline,
so a deadline is met to within ``tick_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class BodyDeadlines:
    """Runs reads under a deadline each; one ``call_later`` tick checks every read in flight."""

    def __init__(self, tick_s: float = 0.05) -> None:
        self._tick_s = tick_s
        self._waiting: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def run(self, read: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """``await read()``; TimeoutError when it is still waiting ``timeout_s`` (+ up to a tick) later."""
        task = asyncio.current_task()
        if task is None:  # not inside a task: nothing to cancel, so no deadline can be kept this way
            return await asyncio.wait_for(read(), timeout_s)
        loop = asyncio.get_running_loop()
        self._waiting[task] = loop.time() + timeout_s
        if self._timer is None:
            self._timer = loop.call_later(self._tick_s, self._check, loop)
        try:
            return await read()
        except asyncio.CancelledError:
            if task in self._expired and task.uncancel() == 0:  # our cancellation, nobody else's
                raise TimeoutError from None
            raise
        finally:
            del self._waiting[task]
            self._expired.discard(task)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in self._waiting.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self._tick_s, self._check, loop) if self._waiting else None
