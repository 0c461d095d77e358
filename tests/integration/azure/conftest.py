"""Fixtures of the Azure integration tests, and the live suite's cost estimate."""

from pathlib import Path

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before a live run starts: what the lifecycle test will cost, printed first so it can be stopped."""
    if not any(item.get_closest_marker("azure") and "lifecycle" in item.name for item in session.items):
        return
    from backends.azure import load_settings
    from tests.integration.azure.live import LiveNames, live_cost, live_overrides

    live_settings = load_settings(live_overrides(LiveNames(), Path(".heartflow")))
    lines = live_cost(live_settings).render().splitlines()
    lines.append("the teardown deletes the endpoint, the cluster and what this run created, also when a step fails; "
                 "interrupt now (Ctrl-C) to spend nothing")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        reporter.write_line(line)
