"""A season on the Azure backend, in process, on the SDK-spec'd control-plane fakes (tests/unit/azure/fakes.py).

Each night a new ``AzureBackend`` (a new process) plays the flow's stages in the flow's order against one
workspace that outlives the nights: the champion and what serves, sweep, register, deploy beside the
champion, evaluate both, the gate (``decide_gate``, the flow's rule), promote or reject. The data plane that
Azure would host is played by scikit-learn models fitted here with each trial's parameters on the night's
real training split, so the gate decides on real predictions of real holdout rows.

A crash is injected through the fake's constructor (``crash=CrashPoint(...)``): the n-th call of an SDK
operation raises ``ProcessDied``, before the service did it or after. It is a BaseException, as SIGKILL
leaves no ``except`` a chance. Quota errors and throttling go through the fake's own arguments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from backends.azure import AzureBackend
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import DataRef, EvalReport, ModelVersion
from backends.domain.convergence import converge, inconsistencies
from backends.domain.dataset import PreparedData, prepare_data
from backends.domain.selection import decide_gate
from backends.domain.spec import DeploySpec, SweepSpec
from backends.errors import HeartflowError
from src.model_train import train_trial
from tests.lifecycle.data import POSITIVE, SeasonTable
from tests.lifecycle.invariants import decision_problems
from tests.lifecycle.season import SeasonReport
from tests.tables import TARGET
from tests.unit.azure.fakes import FakeAzure, http_error

MODEL = "season-classifier"
ENDPOINT = "season-azure-ep"
TRIAL_PARAMS = ({"n_estimators": 50, "max_depth": 4, "criterion": "gini", "max_features": "sqrt"},
                {"n_estimators": 100, "max_depth": -1, "criterion": "entropy", "max_features": "log2"})


class ProcessDied(BaseException):
    """The process that ran the night was killed at this call."""


@dataclass(frozen=True)
class CrashPoint:
    operation: str  # "online_deployments.begin_create_or_update": an operations object and its method
    call: int = 1  # the n-th call of the night
    after: bool = True  # the service carried the call out, then the process died

    @property
    def name(self) -> str:
        return f"{self.operation}#{self.call}{'+' if self.after else '-'}"


# The stage boundaries of a night in which a champion serves, as SDK calls.
AZURE_BOUNDARIES: dict[str, CrashPoint] = {
    "sweep": CrashPoint("jobs.create_or_update"),
    "register": CrashPoint("models.create_or_update"),
    "deploy": CrashPoint("online_deployments.begin_create_or_update"),
    "deploy-traffic": CrashPoint("online_endpoints.begin_create_or_update", 1, after=False),
    "evaluate": CrashPoint("online_endpoints.get_keys", 1, after=False),
    "promote-traffic": CrashPoint("online_endpoints.begin_create_or_update", 2),
    "promote-retire": CrashPoint("models.create_or_update", 2),
    "promote-alias": CrashPoint("models.create_or_update", 3),
    "promote-delete": CrashPoint("online_deployments.begin_delete", 1, after=False),
    "history": CrashPoint("online_endpoints.begin_create_or_update", 3, after=False),
}


class CrashingAzure(FakeAzure):
    """FakeAzure whose calls count per night and die at ``crash`` (armed again for each night)."""

    def __init__(self, *, crash: CrashPoint | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._armed: tuple[CrashPoint, Callable[..., Any], Any] | None = None
        self.arm(crash)

    def arm(self, crash: CrashPoint | None) -> None:
        if self._armed is not None:  # the previous night's crash point is put back
            point, original, method = self._armed
            method.side_effect = original
            self._armed = None
        if crash is None:
            return
        group, name = crash.operation.split(".")
        method = getattr(getattr(self, group), name)
        original = method.side_effect
        calls = Counter[str]()

        def dying(*args: Any, **kwargs: Any) -> Any:
            calls[crash.operation] += 1
            if calls[crash.operation] != crash.call:
                return original(*args, **kwargs)
            if crash.after:
                original(*args, **kwargs)
            raise ProcessDied(crash.name)

        method.side_effect = dying
        self._armed = (crash, original, method)


class FittedPlane:
    """The data plane: each registered version answers with a model fitted on its night's training rows."""

    def __init__(self) -> None:
        self.by_run: dict[str, Any] = {}
        self.by_version: dict[str, Any] = {}

    def evaluate(self, fake: FakeAzure, endpoint: str, deployment: str, holdout: pd.DataFrame) -> EvalReport:
        if (endpoint, deployment) not in fake.deployments:
            raise HeartflowError(f"deployment {deployment} of {endpoint} does not exist")
        version = str(fake.deployment(endpoint, deployment).model).rsplit(":", 1)[1]
        labels = holdout[TARGET].astype(int).tolist()
        predictions = [int(p) for p in self.by_version[version].predict(holdout.drop(columns=[TARGET]))]
        return EvalReport(
            endpoint=endpoint, deployment=deployment, model_version=version, rows=len(labels), labels=tuple(labels),
            predictions=tuple(predictions), accuracy=float(accuracy_score(labels, predictions)),
            report_text=str(classification_report(labels, predictions, labels=[0, 1], zero_division=0)),
            report=classification_report(labels, predictions, labels=[0, 1], zero_division=0, output_dict=True),
            confusion_matrix=tuple(tuple(int(x) for x in row) for row in confusion_matrix(labels, predictions, labels=[0, 1])),
            requests=1, latency_ms_p50=1.0, row_ids=tuple(map(str, holdout.index)),
        )


@dataclass
class AzureSeason:
    root: Path
    settings: AzureSettings
    label: str = "azure"
    fake: CrashingAzure = field(default_factory=CrashingAzure)
    plane: FittedPlane = field(default_factory=FittedPlane)

    def __post_init__(self) -> None:
        self.table = SeasonTable(self.root / "exports", seed=11)
        self.report = SeasonReport(self.label, backend="azure")

    def backend(self) -> AzureBackend:
        return AzureBackend(self.settings, model_name=MODEL, ml_client=self.fake, blob_service=object(),
                            trial_reader=self.fake.trial_reader, sleep=lambda s: None,
                            retry=RetryPolicy(attempts=3, initial_s=0, max_s=0, sleep=lambda s: None))

    def _sweep_of_tonight(self, prepared: PreparedData) -> None:
        """What tonight's sweep job reports, and the models its trials would have written."""
        self.fake.trials, self._fitted = {}, {}
        for number, params in enumerate(TRIAL_PARAMS):
            fit = train_trial(prepared.train, prepared.schema, params, seed=42, method="split")
            self.fake.trials[number] = ("Completed", params, {"accuracy": fit.metrics["accuracy"]})
            self._fitted[number] = fit.model
        self.fake.statuses = ["Running", "Completed"]
        best = max(self.fake.trials, key=lambda n: (self.fake.trials[n][2]["accuracy"], -n))
        self.fake.best_child = lambda name: f"{name}_{best}"

    def run_night(self, prepared: PreparedData) -> str:
        """One night, in the flow's order (flows/train_and_deploy.py); returns promoted, rejected or unchanged.
        Before it deploys, and when it ends early, the run repairs what a crashed run left (``converge``)."""
        backend, spec = self.backend(), DeploySpec(endpoint_name=ENDPOINT)
        who = f"night {self.report.nights} run {self.report.runs}"
        champion, serving = backend.champion(MODEL), backend.serving(ENDPOINT)
        if champion is not None and champion.data_sha256 == prepared.train_sha256:
            return self._early_end(backend, spec, champion, serving, who)
        self._sweep_of_tonight(prepared)
        sha = prepared.train_sha256
        data = DataRef(uri=f"https://heartacct.blob.core.windows.net/data4ml/heartflow/train/{sha}.csv", sha256=sha,
                       rows=len(prepared.train))
        sweep = backend.sweep(data, SweepSpec(max_total_trials=2, max_concurrent_trials=2), prepared.schema)
        for trial in sweep.trials:
            self.plane.by_run[trial.run_id] = self._fitted[trial.number]
        model = backend.register(sweep, MODEL)
        self.plane.by_version[model.version] = self.plane.by_run[model.source_run_id]
        if champion is not None and champion.source_run_id == model.source_run_id:
            return self._early_end(backend, spec, champion, serving, who)
        converge(backend.rollout_policy(), ENDPOINT, MODEL, who, model)  # as the flow: this run's version is adopted
        endpoint = backend.deploy(model, spec)
        backend.endpoint_key(endpoint)  # the evaluation's first call, as evaluate_over_http needs the key
        report = self.plane.evaluate(self.fake, endpoint.name, endpoint.deployment, prepared.holdout)
        rivals = [d for d, share in endpoint.traffic.items() if share > 0 and d != endpoint.deployment]
        champion_report = self.plane.evaluate(self.fake, endpoint.name, rivals[0], prepared.holdout) if rivals else None
        return self._gate(backend, endpoint, model, report, champion_report, who)

    def _early_end(self, backend: AzureBackend, spec: DeploySpec, champion: ModelVersion, serving: Any,
                   who: str) -> str:
        """No new data: repair what a crashed run left, and put the champion back when nothing serves."""
        if converge(backend.rollout_policy(), ENDPOINT, MODEL, who):
            serving = backend.serving(ENDPOINT)
        if serving is None:
            backend.deploy(champion, spec)
        return "unchanged"

    def _gate(self, backend: AzureBackend, endpoint: Any, model: ModelVersion, report: EvalReport,
              champion_report: EvalReport | None, who: str) -> str:
        tags = backend.get_model(MODEL, champion_report.model_version).tags if champion_report else None
        decision = decide_gate(report, champion_report, rule="paired", alpha=0.05, champion_tags=tags)
        if decision.promote:
            backend.promote(endpoint, model, report, reason=decision.reason, triggered_by=who, gate=decision.figures())
            return "promoted"
        backend.reject(endpoint, model, decision.reason, report=report, triggered_by=who, gate=decision.figures())
        return "rejected"

    def prepared(self, data: str) -> PreparedData:
        if data == "append":
            self.table.append(60)
        elif data == "drift":
            self.table.append(80, cholesterol_shift=70.0)
        path = self.table.write_worse(seed=self.report.nights) if data == "worse" else self.table.write_good()
        return prepare_data(path, None, 0.1, target=TARGET, positive_class=POSITIVE)

    def play_night(self, data: str, crash: str | None = None, fault: str | None = None) -> None:
        """One night with at most one crash (a key of AZURE_BOUNDARIES) and one fault (quota, throttle, or the
        endpoint deleted before the night); a crashed or failed night is retried at once, and the retry must
        complete."""
        report = self.report
        report.nights += 1
        number = report.nights
        prepared = self.prepared(data)
        for injected in (f"crash@{crash}" if crash else None, fault):
            if injected:
                report.faults_injected[injected] += 1
        if fault == "quota":
            self.fake.deployment_error = http_error(400, "Not enough quota available for Standard_DS3_v2 (QuotaExceeded)")
        if fault == "throttle":
            self.fake.throttled = {"jobs.create_or_update", "online_deployments.begin_create_or_update",
                                   "online_endpoints.begin_create_or_update", "models.create_or_update"}
        if fault == "endpoint-deleted":  # an operator deleted the endpoint to stop the bill
            self.backend().teardown(ENDPOINT)
        self.fake.arm(AZURE_BOUNDARIES[crash] if crash else None)
        outcomes = [self._attempt(number, data, prepared, expect_failure=fault == "quota")]
        self.fake.arm(None)
        self.fake.deployment_error = None
        if outcomes[0] == "killed":
            report.faults_landed[f"crash@{crash}"] += 1
        elif fault and (fault != "quota" or outcomes[0] == "failed"):
            report.faults_landed[fault] += 1
        if outcomes[0] in {"killed", "failed"}:
            outcomes.append(self._attempt(number, data, prepared))
            if outcomes[-1] in {"killed", "failed"}:
                report.violate(number, "the next run completes after the fault", [outcomes[-1]])
        if data == "worse" and crash is None and fault is None and outcomes[0] != "rejected":
            report.violate(number, "the worse night's candidate is rejected", [outcomes[0]])
        for invariant, problems in azure_invariants(self.backend(), self.fake).items():
            report.violate(number, invariant, problems)
        report.nights_log.append(f"night {number}: {data}, crash {crash or 'none'}, fault {fault or 'none'}: "
                                 + " then ".join(outcomes))

    def _attempt(self, number: int, data: str, prepared: PreparedData, expect_failure: bool = False) -> str:
        self.report.runs += 1
        try:
            outcome = self.run_night(prepared)
        except ProcessDied:
            outcome = "killed"
        except HeartflowError as exc:
            outcome = "failed"
            if not expect_failure:
                self.report.violate(number, "a night without a fault completes", [f"{type(exc).__name__}: {exc}"])
        self.report.outcomes[outcome] += 1
        return outcome


def azure_invariants(backend: AzureBackend, fake: FakeAzure) -> dict[str, list[str]]:
    """The Azure invariants, read from the workspace as the service holds it."""
    champion = backend.champion(MODEL)
    traffic = fake.traffic(ENDPOINT) if ENDPOINT in fake.endpoints else {}
    live = {name: share for name, share in traffic.items() if share > 0}
    serves: list[str] = []
    agrees: list[str] = []
    if champion is not None:
        if list(live.values()) != [100]:
            serves.append(f"champion v{champion.version} exists; traffic of {ENDPOINT} is {traffic}")
        else:
            (deployment,) = live
            served = str(fake.deployment(ENDPOINT, deployment).model).rsplit(":", 1)[1]
            if served != champion.version:
                agrees.append(f"champion tag on v{champion.version}, {deployment} serves v{served}")
    elif live:
        agrees.append(f"{ENDPOINT} serves {live} but no version holds the champion tag")
    orphans = [f"deployment {d} of {ENDPOINT} has no traffic (and is billed)"
               for (e, d) in fake.deployments if e == ENDPOINT and traffic.get(d, 0) == 0]
    statuses = {str(v.version): (v.tags or {}).get("heartflow.status", "") for v in fake.model_versions.get(MODEL, [])}
    history = decision_problems(list(backend.history(ENDPOINT)), statuses)
    return {"something serves": serves, "alias agrees with what serves": agrees, "no orphan deployment": orphans,
            "one history record per decision": history,
            "status names no inconsistency": list(inconsistencies(backend.rollout_policy(), ENDPOINT, MODEL))}


def short_azure_season() -> list[tuple[str, str | None, str | None]]:
    """(data, crash, fault) per night: `make test`'s few nights."""
    return [("first", None, None), ("append", "deploy", None), ("append", "promote-traffic", None),
            ("unchanged", None, "throttle"), ("drift", "promote-alias", None), ("append", None, "quota"),
            ("worse", None, None), ("unchanged", None, "endpoint-deleted"), ("append", "evaluate", None)]


def long_azure_season(rounds: int = 3) -> list[tuple[str, str | None, str | None]]:
    """Every crash point at every boundary and every fault, ``rounds`` times, between ordinary nights."""
    plan: list[tuple[str, str | None, str | None]] = [("first", "deploy", None)]
    changes = ["append", "drift", "append", "append"]
    for r in range(rounds):
        for i, crash in enumerate(AZURE_BOUNDARIES):
            plan.append((changes[(i + r) % len(changes)], crash, None))
        plan += [("unchanged", None, "throttle"), ("append", None, "quota"), ("worse", None, None),
                 ("unchanged", None, "endpoint-deleted"), ("append", None, "throttle"), ("append", None, "endpoint-deleted")]
    return plan
