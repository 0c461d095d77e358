"""score.py's data collector as it runs on a managed deployment: azureml-ai-monitoring enabled through its
environment variables posts to the deployment's collection sidecar; here a sidecar on 127.0.0.1 receives
what the collectors send. The rows and answers arrive, joined by one correlation id; the key never does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.integration.endpoint.conftest import RECORD

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys, time
from src import score
score.init()
answer = score.run(json.dumps({"data": [RECORD, dict(RECORD, chol=300)]}))
print("ANSWER", json.dumps(answer))
time.sleep(3)  # the collector's worker sends in the background
"""


def test_collectors_send_inputs_and_outputs_to_the_sidecar(trained_model_dir: Path) -> None:
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Sidecar(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sidecar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "AZUREML_MODEL_DIR": str(trained_model_dir),
               "AZUREML_MDC_ENABLED": "true", "AZUREML_MDC_HOST": "127.0.0.1", "AZUREML_MDC_PORT": str(server.server_port)}
        done = subprocess.run([sys.executable, "-c", f"RECORD = {RECORD!r}\n" + SCRIPT], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    answer = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("ANSWER ")).removeprefix("ANSWER "))
    assert len(answer) == 2
    assert len(received) >= 2, done.stderr[-2000:]
    everything = b"".join(body for _, _, body in received)
    assert b"300" in everything and b"chol" in everything  # the inputs
    assert b"probability" in everything and b"prediction" in everything  # the outputs
    assert b"Bearer" not in everything
    names = {headers.get("x-ms-collection-name") or headers.get("X-Ms-Collection-Name") or path for path, headers, _ in received}
    assert len(names) >= 1
