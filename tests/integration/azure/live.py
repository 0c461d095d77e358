"""The live suite's lifecycle on a real workspace, written once and rehearsed on the fakes:

provision -> upload -> a 2-trial sweep on a 1-node cluster -> register -> deploy on the smallest SKU a
managed online deployment accepts -> evaluate through the endpoint -> gate -> promote -> a second champion
-> rollback to the first -> teardown (in a ``finally``: it runs when a step fails, and deletes only what
this run created: the endpoint, and what its own ledger records, with the model versions archived).

Every name carries a random suffix, so the suite never touches a user's endpoint, cluster or model.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError

from backends.azure.backend import AzureBackend
from backends.azure.cost import CostEstimate, estimate_cost
from backends.azure.settings import AzureSettings
from backends.base import EvalReport, TrialStatus
from backends.domain.dataset import PreparedData
from backends.domain.rollout import previous_champion_version
from backends.domain.selection import decide_promotion
from backends.domain.spec import Choice, DeploySpec, SweepSpec
from backends.errors import HeartflowError

logger = logging.getLogger(__name__)

# The smallest VM size a managed online deployment accepts (the SDK warns that it is small; it serves this
# model). HEARTFLOW_LIVE_INSTANCE_TYPE picks another, e.g. where that size has no quota.
LIVE_INSTANCE_TYPE = os.environ.get("HEARTFLOW_LIVE_INSTANCE_TYPE", "Standard_DS1_v2")
LIVE_CLUSTER_SIZE = os.environ.get("HEARTFLOW_LIVE_CLUSTER_SIZE", "Standard_DS2_v2")
LIVE_SWEEP = SweepSpec(sampling="grid", max_total_trials=2, max_concurrent_trials=1, seed=7,
                       search_space={"n_estimators": Choice(values=[10, 30]), "max_depth": Choice(values=[6])})
TRIAL_MINUTES = 6.0  # a trial's job on a started node: image pull, data mount, fit, model upload
DEPLOYMENT_MINUTES = 15.0  # a managed online deployment becoming ready
DEPLOYMENTS = 3  # the first champion, the second, and the rollback's


@dataclass(frozen=True)
class LiveNames:
    """This run's own names (random suffix)."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))

    @property
    def compute(self) -> str:
        return f"hflive{self.suffix}"

    @property
    def endpoint(self) -> str:
        return f"hf-live-{self.suffix}"

    @property
    def model(self) -> str:
        return f"hf-live-{self.suffix}"


def live_overrides(names: LiveNames, workdir: Path) -> dict[str, Any]:
    """Settings of the live run: its own 1-node cluster and endpoint, and a ledger of its own, so teardown
    --all removes exactly what this run created."""
    return {"compute": names.compute, "compute_max_nodes": 1, "compute_size": LIVE_CLUSTER_SIZE,
            "endpoint_name": names.endpoint, "instance_type": LIVE_INSTANCE_TYPE,
            "ledger_path": str(workdir / "azure-created.json")}


def live_cost(settings: AzureSettings) -> CostEstimate:
    return estimate_cost(cluster_size=settings.compute_size, nodes=1, trials=LIVE_SWEEP.max_total_trials,
                         trial_minutes=TRIAL_MINUTES, idle_seconds=settings.compute_idle_seconds,
                         endpoint_size=settings.instance_type or LIVE_INSTANCE_TYPE, instances=1,
                         deployments=DEPLOYMENTS, deployment_minutes=DEPLOYMENT_MINUTES)


Evaluate = Callable[..., EvalReport]


def run_lifecycle(backend: AzureBackend, prepared: PreparedData, names: LiveNames, steps: list[str],
                  evaluate: Evaluate | None = None) -> None:
    """Every stage in order (``steps`` records each one done); the teardown runs whatever happens. When a
    stage failed, that failure is the one raised (a teardown failure is logged beside it)."""
    finished = False
    try:
        _stages(backend, prepared, names, steps, evaluate or backend.evaluate)
        finished = True
    finally:
        teardown(backend, names, steps, raise_failures=finished)


def _stages(backend: AzureBackend, prepared: PreparedData, names: LiveNames, steps: list[str], evaluate: Evaluate) -> None:
    target = prepared.schema.target
    backend.provision(create_workspace=False)
    steps.append("provision")
    data = backend.upload(prepared.train)
    steps.append("upload")
    sweep = backend.sweep(data, LIVE_SWEEP, schema=prepared.schema)
    completed = [t for t in sweep.trials if t.status is TrialStatus.COMPLETED]
    assert len(sweep.trials) == 2 and len(completed) == 2, sweep.trials
    steps.append("sweep")
    first = backend.register(sweep, names.model)
    steps.append("register")
    spec = DeploySpec(endpoint_name=names.endpoint, instance_type=backend.settings.instance_type or LIVE_INSTANCE_TYPE)
    endpoint = backend.deploy(first, spec)
    steps.append("deploy")
    report = evaluate(endpoint, prepared.holdout, target, deployment=endpoint.deployment)
    assert report.rows == len(prepared.holdout) and 0.5 < report.accuracy <= 1.0, report
    steps.append("evaluate")
    gate = decide_promotion(report.accuracy, None)
    assert gate.promote, gate
    backend.record_gate(first, {"rule": gate.rule, "rows": report.rows, "candidate_accuracy": gate.candidate,
                                "champion_accuracy": gate.champion, "tolerance": gate.tolerance})
    backend.promote(endpoint, first, report, reason=gate.reason, triggered_by="live suite")
    steps.append("gate")
    # A second champion (the other trial), so there is an earlier one to roll back to.
    other = next(t for t in completed if t.run_id != sweep.best.run_id)
    second = backend.register(replace(sweep, best=other), names.model)
    candidate = backend.deploy(second, spec)
    second_report = evaluate(candidate, prepared.holdout, target, deployment=candidate.deployment)
    backend.promote(candidate, second, second_report, reason="live suite: a second champion", triggered_by="live suite")
    back_to = previous_champion_version(backend.history(names.endpoint), second.version)
    assert back_to == first.version, (back_to, first.version)
    restored = backend.deploy(backend.get_model(names.model, back_to), spec)
    restored_report = evaluate(restored, prepared.holdout, target, deployment=restored.deployment)
    final = backend.promote(restored, first, restored_report, event="rollback", triggered_by="live suite",
                            reason=f"rollback from v{second.version} to v{first.version}")
    champion = backend.champion(names.model)
    assert champion is not None and champion.version == first.version
    assert dict(final.traffic).get(final.deployment) == 100, final.traffic
    assert [e.event for e in backend.history(names.endpoint)] == ["promoted", "promoted", "rollback"]
    steps.append("rollback")


def teardown(backend: AzureBackend, names: LiveNames, steps: list[str], *, raise_failures: bool = True) -> None:
    """Delete the endpoint, everything this run's ledger records, and archive this run's model versions;
    each part tried even when another fails (what could not be removed is logged and raised last)."""
    failures: list[str] = []
    for what, action in (
        ("endpoint", lambda: backend.teardown(names.endpoint)),
        ("resources", lambda: backend.teardown_all(yes=True)),
        ("models", lambda: _archive_models(backend, names.model)),
    ):
        try:
            action()
        except (HeartflowError, AzureError) as exc:  # teardown goes on; every failure is reported below
            logger.error("live teardown of %s failed: %s", what, exc)
            failures.append(f"{what}: {exc}")
    steps.append("teardown")
    if failures and raise_failures:
        raise RuntimeError("live teardown left resources behind (delete them in the portal): " + "; ".join(failures))


def _archive_models(backend: AzureBackend, model_name: str) -> None:
    client = backend.client("teardown")
    for version in backend.registry.versions(model_name):
        backend.call("archive a model version", client.models.archive, name=model_name, version=str(version.version))
