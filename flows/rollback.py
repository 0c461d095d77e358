"""`heartflow rollback`: the previous champion (or, with ``--target``, any earlier champion of the
endpoint) goes back in front through the same safe path as a promotion (deployed beside the serving
model, checked through the endpoint, then switched)."""

from __future__ import annotations

import os
from pathlib import Path

from backends.base import DEFAULT_MODEL_NAME, Backend
from backends.domain.rollback import checked_rollback_target
from backends.domain.rollout import previous_champion_version
from backends.errors import DeploymentError, EvaluationError, RegistrationError
from backends.factory import create_backend
from backends.domain.spec import DataSpec, DeploySpec
from tasks.rollout import rollout_slot


def rollback_version(
    backend: Backend, endpoint_name: str, model_name: str, current: str | None, target: str | None
) -> str:
    """The version a rollback restores: ``target``, checked (it is in the registry, served on this endpoint
    as champion and does not serve now), or the previous champion when no target is given."""
    entries = backend.history(endpoint_name)
    if target is None:
        previous = previous_champion_version(entries, current)
        if previous is None:
            raise DeploymentError(
                f"no earlier champion of {model_name!r} on {endpoint_name} to roll back to: see `heartflow history`"
            )
        return previous
    try:
        backend.get_model(model_name, target)
    except RegistrationError as exc:
        raise RegistrationError(f"cannot roll back {endpoint_name} to {model_name} v{target}: {exc}") from exc
    return checked_rollback_target(entries, model_name, endpoint_name, target, current)


def rollback_endpoint(
    backend_name: str, home: Path, endpoint_name: str, data: Path | None, schema: Path | None,
    model_name: str = DEFAULT_MODEL_NAME,
    target: str | None = None,
) -> str:
    """Restore ``target`` (a version that served on the endpoint as champion; default: the previous
    champion). Raises DeploymentError, RegistrationError or EvaluationError with what to do."""
    from backends.domain.dataset import prepare_data

    backend = create_backend(backend_name, home=home)
    prepared = prepare_data(data, schema, DataSpec().holdout_fraction)
    # The champion and the target are read inside the slot: a scheduled run may promote while we wait for it.
    with rollout_slot(backend_name, endpoint_name, holder=f"heartflow rollback (pid {os.getpid()})"), \
            backend.rollout_lock(endpoint_name):
        current = backend.champion(model_name)
        target_version = rollback_version(backend, endpoint_name, model_name, current.version if current else None,
                                          target)
        model = backend.get_model(model_name, target_version)
        endpoint = backend.deploy(model, DeploySpec(endpoint_name=endpoint_name))
        try:
            report = backend.evaluate(endpoint, prepared.holdout, prepared.schema.target, deployment=endpoint.deployment)
        except (EvaluationError, DeploymentError):
            backend.reject(endpoint, model, "rollback smoke test failed", triggered_by="heartflow rollback")
            raise
        endpoint = backend.promote(
            endpoint, model, report, event="rollback",
            reason=f"rollback from v{current.version if current else '?'} to v{model.version}",
            triggered_by="heartflow rollback",
        )
    from prefect.settings import PREFECT_API_URL

    from tasks import events

    if PREFECT_API_URL.value():  # a server automations listen on; never start a temporary one for an event
        events.emit(events.ROLLED_BACK, model=model.name, version=model.version, endpoint=endpoint.name,
                    data_sha256=model.data_sha256, payload={"from_version": current.version if current else None})
    return (
        f"rolled back {endpoint.name} to {model.name} v{model.version} (holdout accuracy {report.accuracy:.4f}); "
        f"it now serves 100 % of traffic on deployment {endpoint.deployment}"
    )
