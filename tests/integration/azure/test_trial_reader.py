"""Reading a trial's params and metrics over MLflow's REST API (a stub server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backends.azure.resilience import RetryPolicy
from backends.azure.trials import MlflowRestReader, https_tracking_uri

RUN = {"run": {"info": {"run_id": "sweep_1", "start_time": 1000, "end_time": 4500},
               "data": {"params": [{"key": "n_estimators", "value": "50"}, {"key": "criterion", "value": "gini"}],
                        "metrics": [{"key": "accuracy", "value": 0.85, "step": 0, "timestamp": 1}]}}}


@pytest.fixture()
def server() -> Iterator[tuple[str, list[dict]]]:
    seen: list[dict] = []
    throttle = {"left": 1}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            if throttle["left"]:
                throttle["left"] -= 1
                self.send_response(429)
                self.send_header("Retry-After", "3")
                self.end_headers()
                return
            body = json.dumps(RUN).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mlflow/v1.0/subscriptions/s/workspaces/w", seen
    httpd.shutdown()


def test_reader_retries_throttling_and_parses_the_run(server: tuple[str, list[dict]]) -> None:
    uri, seen = server
    slept: list[float] = []
    reader = MlflowRestReader(uri, token=lambda: "tok", timeout_s=5,
                              retry=RetryPolicy(attempts=3, initial_s=0, max_s=0, sleep=slept.append))
    data = reader("sweep_1")
    assert slept == [3.0]  # the server's Retry-After, not the (zero) backoff
    assert data.params == {"n_estimators": 50, "criterion": "gini"}
    assert data.metrics == {"accuracy": 0.85} and data.duration_s == 3.5
    assert len(seen) == 2 and seen[-1]["auth"] == "Bearer tok"
    assert seen[-1]["path"].endswith("/api/2.0/mlflow/runs/get?run_id=sweep_1")


def test_azureml_tracking_uri_maps_to_https() -> None:
    assert https_tracking_uri("azureml://westeurope.api.azureml.ms/mlflow/v1.0/x") == "https://westeurope.api.azureml.ms/mlflow/v1.0/x"


def test_mlflows_own_client_reads_a_trial(tmp_path) -> None:
    """The documented reader (MLflow with the workspace's tracking URI), here on a real SQLite store."""
    import mlflow

    from backends.azure.trials import MlflowClientReader, MlflowRestReader, make_trial_reader

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "n_estimators", "50")
    client.log_param(run.info.run_id, "criterion", "gini")
    client.log_metric(run.info.run_id, "accuracy", 0.85)
    client.set_terminated(run.info.run_id)

    reader = make_trial_reader(uri, lambda: "unused", timeout_s=5, retry=RetryPolicy(), prefer_mlflow=True)
    assert isinstance(reader, MlflowClientReader)
    data = reader(run.info.run_id)
    assert data.params == {"n_estimators": 50, "criterion": "gini"} and data.metrics == {"accuracy": 0.85}
    assert data.duration_s >= 0
    with pytest.raises(KeyError):  # an unknown run: the trial is kept, marked failed (not a transient error)
        reader("0" * 32)
    assert isinstance(make_trial_reader(uri, lambda: "t", timeout_s=5, retry=RetryPolicy(), prefer_mlflow=False),
                      MlflowRestReader)
