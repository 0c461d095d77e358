"""The CLI starts Prefect's temporary server early only when the flow would start one."""

from __future__ import annotations

import threading

from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.early_server import start_temporary_server_early


def test_a_configured_api_url_starts_nothing() -> None:
    before = {t.name for t in threading.enumerate()}
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        wait = start_temporary_server_early()
    wait()
    assert "prefect-temporary-server" not in {t.name for t in threading.enumerate()} - before
