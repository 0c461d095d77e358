"""The CLI launches Prefect's temporary server in its own process only when the flow would start one, runs
the flow against it and stops it at exit."""

from __future__ import annotations

import urllib.request

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.early_server import EarlyServer, start_temporary_server_early

pytestmark = pytest.mark.full  # starts Prefect's temporary server in its own process: `make test`, not `make test-fast`


def test_a_configured_api_url_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    server = start_temporary_server_early()
    assert server.url == "" and server._process is None


def test_an_api_url_from_prefects_settings_stops_the_server_it_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        server = start_temporary_server_early()
    assert server._process is None


def test_the_flow_runs_against_the_early_server_and_it_stops_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server = start_temporary_server_early()
    process = server._process
    assert process is not None and server.url.startswith("http://127.0.0.1:")
    heartbeat_before = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    with server.serving():
        assert PREFECT_API_URL.value() == server.url
        # no flow-run heartbeats to a server that dies with the run (their thread's join costs up to 1 s)
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as answer:
            assert answer.status == 200
    assert PREFECT_API_URL.value() != server.url
    assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == heartbeat_before
    assert process.poll() is None  # still up for what Prefect's workers send at exit
    server.stop()  # what the exit handler registered at launch does
    assert process.poll() is not None


def test_a_server_that_dies_leaves_the_flow_to_prefect() -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    server = EarlyServer(dead, "http://127.0.0.1:9/api")
    with server.serving():
        assert PREFECT_API_URL.value() != "http://127.0.0.1:9/api"
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is not None  # Prefect's own server keeps its defaults


@pytest.mark.slow
def test_a_cli_killed_by_sigkill_leaves_no_temporary_server_behind(tmp_path) -> None:
    """SIGKILL of the CLI alone (not its process group: a supervisor that kills one pid) runs no exit handler;
    the kernel still stops the server it launched."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = ("import sys, time\nfrom flows.early_server import start_temporary_server_early\n"
              "server = start_temporary_server_early()\nprint(server._process.pid, flush=True)\ntime.sleep(600)\n")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path), PYTHONPATH=os.getcwd())
    cli = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert cli.stdout is not None
    server_pid = int(cli.stdout.readline())
    assert psutil.pid_exists(server_pid)
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the temporary server outlived the CLI that was killed")


def test_the_early_server_runs_the_command_prefects_temporary_server_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The early server copies the command line and the private settings of Prefect's SubprocessASGIServer (no
    public command starts that server): compared here with what the installed Prefect itself would run, so an
    upgrade that changes them fails this test rather than every `heartflow run`. Its private method is called
    for that reason only; it starts nothing (Popen is replaced)."""
    from pathlib import Path

    import prefect
    from prefect.server.api import server as prefect_server

    from flows.early_server import temporary_server_command

    launched: dict = {}

    def record(args: list[str], env: dict[str, str], **kwargs: object) -> None:
        launched.update(args=args, env=env)

    monkeypatch.setattr(prefect_server.subprocess, "Popen", record)
    prefect_server.SubprocessASGIServer(port=4321)._run_uvicorn_command()
    command, environment = temporary_server_command(Path(prefect.__file__).parent.parent, 4321)
    assert launched["args"] == command
    assert {k: v for k, v in launched["env"].items() if k in environment} == environment
    assert {k: v for k, v in launched["env"].items() if k.startswith("PREFECT__")} == {
        k: v for k, v in environment.items() if k.startswith("PREFECT__")}


def test_while_the_server_starts_the_run_imports_what_it_will_need(tmp_path) -> None:
    """A stand-in server that answers /health after 1.5 s (a real process on 127.0.0.1): the modules asked for
    are imported and the calls made during the wait, a missing module or a failing call skipped (the run does
it again, in context); a server already answering waits for nothing."""
    import socket
    import subprocess
    import sys
    import textwrap

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = textwrap.dedent(f"""
        import http.server, time
        time.sleep(1.5)
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *args):
                pass
        http.server.HTTPServer(("127.0.0.1", {port}), Health).serve_forever()
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    server = EarlyServer(process, f"http://127.0.0.1:{port}/api")
    try:
        sys.modules.pop("xml.dom.minidom", None)
        done: list[str] = []

        def failing_step() -> None:
            raise OSError("the run does this again and reports it")

        assert server._wait_healthy(prefetch=["heartflow_no_such_module", failing_step, "xml.dom.minidom",
                                              lambda: done.append("store opened")])
        assert "xml.dom.minidom" in sys.modules and done == ["store opened"]
        sys.modules.pop("xml.dom.pulldom", None)
        assert server._wait_healthy(prefetch=["xml.dom.pulldom", lambda: done.append("again")])  # answering at once
        assert "xml.dom.pulldom" not in sys.modules and done == ["store opened"]
    finally:
        server.stop()


def test_the_store_opened_while_the_server_starts_is_the_run_s_own(tmp_path) -> None:
    """The call `heartflow run` makes during the wait opens the home's MLflow store with its experiment (a
    failure there is silent, so this says it works)."""
    from mlflow import MlflowClient

    from backends.domain.spec import PipelineSpec
    from backends.local import tracking
    from flows.run_warmup import open_store

    home = tmp_path / "home"
    open_store(PipelineSpec(home=str(home)))
    assert (home / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=tracking.tracking_uri(home))
    assert client.get_experiment_by_name(tracking.EXPERIMENT) is not None
