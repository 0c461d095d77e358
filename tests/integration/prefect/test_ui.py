"""The Prefect UI, served by the test server, shows the local deployment's flow run Completed under its
name. Headless Debian Chromium through Playwright's Python API; the screenshot is kept in test-output/."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration.prefect.server import REPO, PrefectServer

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT = REPO / "test-output" / "prefect-flow-run.png"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make chromium` (apt-get install chromium) installs it")
    return CHROMIUM


def test_the_flow_run_page_shows_the_run_and_its_completed_state(
    chromium: Path, prefect_server: PrefectServer, local_runs: dict[str, Any],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    run = local_runs["good"]
    assert run.state.is_completed(), run.state
    url = f"{prefect_server.url}/runs/flow-run/{run.id}"
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.new_page()
                page.goto(url, wait_until="networkidle", timeout=60_000)
                # The header: the run's name and its state badge.
                expect(page.get_by_text(run.name, exact=True).first).to_be_visible(timeout=30_000)
                expect(page.get_by_text("Completed", exact=True).first).to_be_visible(timeout=30_000)
                # The task runs are listed under the names that say what they worked on.
                expect(page.get_by_text("run-sweep-local-", exact=False).first).to_be_visible(timeout=30_000)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert SCREENSHOT.stat().st_size > 10_000
