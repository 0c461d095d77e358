"""The rollout contract's harnesses (local for real, Azure on its fakes, in-memory) and the results a case
builds. tests/contract/conftest.py gives them to the cases as the `harness` fixture; other tests import the
builders from here."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Protocol

from backends.base import Backend, DataRef, EvalReport, ModelVersion, SweepResult, TrialResult, TrialStatus
from backends.domain.rollout import RolloutPolicy
from backends.domain.spec import DeploySpec

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

    def close(self) -> None:
        return None


class MemoryHarness:
    """Distinct model versions come from one real sweep (six small forests trained here); a broken
    deployment is a fault injected through the backend's constructor."""

    def __init__(self, frame: Any, scratch: Path) -> None:
        from backends.domain.spec import Choice, SweepSpec, ValidationSpec
        from backends.memory import Faults, InMemoryBackend
        from src.features import HEART_SCHEMA

        self.faults = Faults()
        self.backend = InMemoryBackend(scratch, faults=self.faults)
        self.policy: RolloutPolicy = self.backend.endpoints
        self.model_name = f"contract-{uuid.uuid4().hex[:8]}"
        self.spec = DeploySpec(endpoint_name=f"c-{uuid.uuid4().hex[:10]}")
        data = self.backend.upload(frame)
        space = {"n_estimators": Choice(values=[2, 3, 4, 5, 6, 7]), "max_depth": Choice(values=[3])}
        sweep = self.backend.sweep(data, SweepSpec(search_space=space, sampling="grid", max_total_trials=6,
                                                   validation=ValidationSpec(method="split")), HEART_SCHEMA)
        self._runs = [t.run_id for t in sweep.trials]
        self._count = 0

    def model(self, accuracy: float = 0.8) -> ModelVersion:
        run_id = self._runs[self._count]
        self._count += 1
        return self.backend.register(sweep_of(run_id, self._count, accuracy), model_name=self.model_name)

    def traffic(self) -> dict[str, int]:
        return {k: v for k, v in self.policy.read_traffic(self.spec.endpoint_name).items() if v > 0}

    def deployments(self) -> set[str]:
        return set(self.policy.read_traffic(self.spec.endpoint_name))

    def set_traffic(self, traffic: dict[str, int]) -> None:
        self.policy.set_traffic(self.spec.endpoint_name, traffic)

    def break_next_deployment(self) -> None:
        from backends.errors import DeploymentError

        self.faults.fail_next("deploy", DeploymentError("deployment did not pass its smoke request: the model's file is corrupt"))

    def close(self) -> None:
        self.backend.close()
