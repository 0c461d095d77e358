"""Two harnesses for the rollout contract: the local backend for real (MLflow on SQLite in a temporary
home, the real local endpoint host on 127.0.0.1) and the Azure backend on the control-plane fakes.

A harness gives the contract what it cannot do through the Backend interface: register a distinct model
version, read the endpoint's traffic as its store holds it, set traffic by hand (an operator's split) and
make the next deployment fail the way that backend's deployments fail.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from backends.domain.rollout import RolloutPolicy
from backends.base import Backend, DataRef, EvalReport, ModelVersion, SweepResult, TrialResult, TrialStatus
from backends.domain.spec import DeploySpec
from tests.unit.azure.conftest import clean_env, settings  # noqa: F401 - the Azure fixtures, shared

SHA = "c0" * 32
DATA = DataRef(uri=f"file:///data/{SHA}.csv", sha256=SHA, rows=272)


def sweep_of(run_id: str, number: int, accuracy: float) -> SweepResult:
    trial = TrialResult(number=number, run_id=run_id, params={"n_estimators": 10 * (number + 1)},
                        metrics={"accuracy": accuracy}, status=TrialStatus.COMPLETED)
    return SweepResult(sweep_id=f"sweep-{run_id}", primary_metric="accuracy", goal="maximize", trials=(trial,),
                       best=trial, data=DATA)


def report_for(endpoint_name: str, deployment: str, model: ModelVersion, accuracy: float) -> EvalReport:
    """What the gate hands promote/reject: the candidate's holdout evaluation."""
    return EvalReport(endpoint=endpoint_name, deployment=deployment, model_version=model.version, rows=2,
                      labels=(1, 0), predictions=(1, 0), accuracy=accuracy, report_text="", report={},
                      confusion_matrix=((1, 0), (0, 1)), requests=1, latency_ms_p50=1.0)


class Harness(Protocol):
    backend: Backend
    policy: RolloutPolicy  # the backend's rollout collaborator (for what Backend.deploy does not expose)
    model_name: str
    spec: DeploySpec

    def model(self, accuracy: float = 0.8) -> ModelVersion: ...
    def traffic(self) -> dict[str, int]: ...
    def deployments(self) -> set[str]: ...
    def set_traffic(self, traffic: dict[str, int]) -> None: ...
    def break_next_deployment(self) -> None: ...
    def mirror(self) -> dict[str, int]: ...


class LocalHarness:
    def __init__(self, home: Path, model_dir: Path, scratch: Path) -> None:
        from backends.local import tracking
        from backends.local.backend import LocalBackend

        self.backend = LocalBackend(home)
        self.policy: RolloutPolicy = self.backend.endpoints
        self.model_name = f"contract-{uuid.uuid4().hex[:8]}"
        self.spec = DeploySpec(endpoint_name=f"c-{uuid.uuid4().hex[:10]}", workers=1)
        self._client = tracking.make_client(home)
        self._experiment = tracking.ensure_experiment(self._client, home)
        self._model_dir = model_dir
        self._scratch = scratch
        self._broken = False
        self._count = 0

    def model(self, accuracy: float = 0.8) -> ModelVersion:
        folder = self._model_dir
        if self._broken:  # a model whose pickle cannot be loaded: the host's smoke request fails
            folder = self._scratch / f"broken-{self._count}"
            shutil.copytree(self._model_dir, folder)
            for file in folder.iterdir():
                if file.suffix in {".skops", ".pkl"}:
                    file.write_bytes(b"not a model")
            self._broken = False
        run = self._client.create_run(self._experiment)
        self._client.log_artifacts(run.info.run_id, str(folder), "model")
        self._client.set_terminated(run.info.run_id)
        self._count += 1
        return self.backend.register(sweep_of(run.info.run_id, self._count, accuracy), model_name=self.model_name)

    def _manager(self) -> Any:
        from backends.local.endpoint import LocalEndpointManager

        return LocalEndpointManager(self.backend.home, self.spec.endpoint_name)

    def traffic(self) -> dict[str, int]:
        status = self._manager().status()
        return {} if status is None else {k: int(v) for k, v in status.traffic.items() if int(v) > 0}

    def deployments(self) -> set[str]:
        status = self._manager().status()
        return set() if status is None else {d.name for d in status.deployments}

    def set_traffic(self, traffic: dict[str, int]) -> None:
        self._manager().set_traffic(traffic)

    def break_next_deployment(self) -> None:
        self._broken = True

    def mirror(self) -> dict[str, int]:
        from backends.local.endpoint.state import read_state

        state = read_state(self._manager().paths)
        return {} if state is None or state.mirror is None else {state.mirror.deployment: state.mirror.percent}

    def close(self) -> None:
        self._manager().stop()


class AzureHarness:
    def __init__(self, azure_settings: Any) -> None:
        from backends.azure import AzureBackend
        from backends.azure.resilience import RetryPolicy
        from tests.unit.azure.fakes import FakeAzure

        self.fake = FakeAzure()
        self.backend = AzureBackend(azure_settings, ml_client=self.fake, blob_service=object(),
                                    trial_reader=self.fake.trial_reader,
                                    retry=RetryPolicy(attempts=2, initial_s=0, max_s=0, sleep=lambda s: None),
                                    sleep=lambda s: None)
        self.policy: RolloutPolicy = self.backend.endpoints
        self.model_name = "heart-classifier"
        self.spec = DeploySpec(endpoint_name=f"c-{uuid.uuid4().hex[:10]}")
        self._count = 0

    @property
    def endpoint_name(self) -> str:
        names = list(self.fake.endpoints)
        return names[0] if names else self.spec.endpoint_name

    def model(self, accuracy: float = 0.8) -> ModelVersion:
        self._count += 1
        return self.backend.register(sweep_of(f"sweep_{self._count}", self._count, accuracy), model_name=self.model_name)

    def traffic(self) -> dict[str, int]:
        if self.endpoint_name not in self.fake.endpoints:
            return {}
        read = self.fake.online_endpoints.get(self.endpoint_name)
        return {k: int(v) for k, v in (read.traffic or {}).items() if int(v) > 0}

    def deployments(self) -> set[str]:
        return {d for (e, d) in self.fake.deployments if e == self.endpoint_name}

    def set_traffic(self, traffic: dict[str, int]) -> None:
        endpoint = self.fake.online_endpoints.get(self.endpoint_name)
        endpoint.traffic = dict(traffic)
        self.fake.online_endpoints.begin_create_or_update(endpoint).result()

    def break_next_deployment(self) -> None:
        from tests.unit.azure.fakes import http_error

        self.fake.deployment_error = http_error(400, "ResourceNotReady: User container has crashed or terminated")

    def mirror(self) -> dict[str, int]:
        if self.endpoint_name not in self.fake.endpoints:
            return {}
        read = self.fake.online_endpoints.get(self.endpoint_name)
        return {k: int(v) for k, v in (read.mirror_traffic or {}).items() if int(v) > 0}

    def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contract-home")


@pytest.fixture(params=["local", "azure"])
def harness(request: pytest.FixtureRequest, local_home: Path, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        model_dir = request.getfixturevalue("trained_model_dir")
        made: Any = LocalHarness(local_home, model_dir, tmp_path)
    else:
        made = AzureHarness(request.getfixturevalue("settings"))
    try:
        yield made
    finally:
        made.close()

