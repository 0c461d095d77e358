"""The tests' server helper fails clearly (the log's tail, the exit code or the timeout) and never leaves a
process behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.net import free_port
from tests.servers import accepts_connections, answers_http, running_server

pytestmark = pytest.mark.full  # spawns interpreters that serve HTTP: `make test`, not `make test-fast`

SERVE = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_server_that_answers_is_yielded_then_stopped(tmp_path: Path) -> None:
    port = free_port()
    with running_server([sys.executable, "-c", SERVE, str(port)], ready=answers_http(f"http://127.0.0.1:{port}/"),
                        what="test server", log=tmp_path / "server.log", timeout_s=30) as process:
        assert process.poll() is None and accepts_connections(port)()
    assert process.returncode is not None and not accepts_connections(port)()
    assert "listening" in (tmp_path / "server.log").read_text()


def test_a_server_that_exits_fails_with_its_code_and_output(tmp_path: Path) -> None:
    script = "import sys; print('bad option --nope', file=sys.stderr); sys.exit(3)"
    with pytest.raises(pytest.fail.Exception, match=r"(?s)broken server exited with code 3 while starting:\n.*bad option --nope"):
        with running_server([sys.executable, "-c", script], ready=lambda: False, what="broken server",
                            log=tmp_path / "server.log", timeout_s=30):
            pass


def test_a_server_that_never_answers_fails_after_the_timeout_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('starting', flush=True); time.sleep(600)"
    with pytest.raises(pytest.fail.Exception, match=r"(?s)silent server did not answer within 5 s:\n.*starting"):
        with running_server([sys.executable, "-c", script], ready=lambda: False,
                            what="silent server", log=tmp_path / "server.log", timeout_s=5):
            pass
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
