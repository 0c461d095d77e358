"""Start Prefect's temporary server while the CLI does its own start-up.

Without PREFECT_API_URL, a flow starts a temporary Prefect server (a uvicorn subprocess) and waits for it:
several seconds in which the CLI's process would sit idle. Started here, in a thread, before the CLI
validates the data and imports the flow, the server boots in its own process on another core while this
one works; the flow then finds it running (Prefect keeps one temporary server per process). With
PREFECT_API_URL set, a running server is used and nothing starts.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60


def start_temporary_server_early() -> Callable[[], None]:
    """Start the temporary server in the background when the flow would start one; returns a function that
    waits until it answers (call it before the flow runs, so the flow never sees it half-started)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry heartbeat from it
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return lambda: None
    failure: list[BaseException] = []

    # In the background a slow start costs nothing, so a loaded machine gets at least a minute.
    timeout_s = max(int(settings.server.ephemeral.startup_timeout_seconds), STARTUP_TIMEOUT_S)

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        try:
            server.start(timeout=timeout_s)
        except (RuntimeError, OSError) as exc:  # the flow starts it itself then, and reports what fails
            failure.append(exc)
            server.stop()  # not left half-started on the port the flow would try next

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failure:
            logger.warning("starting Prefect's temporary server early failed (%s); the flow starts it", failure[0])

    return wait
