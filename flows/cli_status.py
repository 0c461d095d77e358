"""`heartflow status`: the champion, what serves, what does not agree on the endpoint (and who holds its
rollout slot), and the last monitor figures; on the local endpoint or (``--backend azure``) the managed one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows import cli_monitor
from backends.base import DEFAULT_ENDPOINT_NAME, DEFAULT_MODEL_NAME, EndpointMonitor
from flows.cli_common import (
    BackendName, BackendOption, EndpointOption, HomeOption, ModelNameOption, TrackingOption, check, console, resolve_home,
)

if TYPE_CHECKING:
    from backends.base import Backend, Endpoint, ModelVersion


def status(
    home: HomeOption = None, endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    tracking_uri: TrackingOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts and alerts")] = False,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
    backend: BackendOption = BackendName.local,
) -> None:
    """The champion in the registry, and what the endpoint serves now (local, or the Azure managed one)."""
    if backend is BackendName.azure:
        _azure_status(endpoint_name, model_name, as_json)
        return
    from backends.local.backend import LocalBackend
    from backends.local.monitoring import last_figures

    local = check(LocalBackend, resolve_home(home), tracking_uri)
    champion = local.champion(model_name)
    endpoint = local.endpoint(endpoint_name)
    problems = status_problems(local, endpoint_name, model_name)
    _show(endpoint_name, endpoint, champion, problems, last_figures(local.home, endpoint_name), as_json,
          local.mlflow_uri, "no monitor figures yet: run `heartflow monitor`",
          model_name)


def _azure_status(endpoint_name: str, model_name: str, as_json: bool) -> None:
    """What serves on the workspace's endpoint (its own name for the tutorial's), its champion, and the last
    figures of `heartflow monitor --backend azure` or the monitor-endpoint flow (kept in blob storage)."""
    azure = _azure_backend(model_name)
    champion = check(azure.champion, model_name)
    endpoint = check(azure.serving, endpoint_name)
    problems = check(status_problems, azure, endpoint_name, model_name, BackendName.azure.value)
    history = check(azure.monitor_history, endpoint_name, 1) if isinstance(azure, EndpointMonitor) else []
    name = endpoint.name if endpoint is not None else azure.rollout_policy().endpoint_name(endpoint_name)
    _show(name, endpoint, champion, problems, history[-1] if history else None, as_json,
          f"workspace {azure.settings.workspace_name}", "no monitor figures yet: run `heartflow monitor --backend azure`",
          model_name)


def _azure_backend(model_name: str) -> Any:
    """The Azure backend from the environment's settings (tests replace this)."""
    from backends.factory import create_backend

    return check(create_backend, BackendName.azure.value, model_name=model_name)


def _show(endpoint_name: str, endpoint: Endpoint | None, champion: ModelVersion | None, problems: tuple[str, ...],
          figures: dict[str, Any] | None, as_json: bool, registry: str, no_figures: str, model_name: str) -> None:
    """One JSON object (``--json``: only JSON on stdout, for scripts), or the text; exit 3 when nothing serves."""
    if as_json:
        from flows.cli_json import status_record

        typer.echo(status_record(endpoint_name, endpoint, champion, problems, figures))
        raise typer.Exit(code=0 if endpoint is not None else 3)
    from backends.domain.history import recorded_holdout_accuracy

    for problem in problems:
        console.print(f"[bold yellow]inconsistent:[/] {problem}", highlight=False)
    if champion is None:
        console.print(f"no champion of {model_name} in {registry}", highlight=False)
    else:
        accuracy = recorded_holdout_accuracy(champion)
        console.print(f"champion: {champion.name} v{champion.version}"
                      + (f" (holdout accuracy {accuracy:.4f})" if accuracy is not None else "")
                      + f" in {registry}", highlight=False)
    if endpoint is None:
        console.print(f"endpoint {endpoint_name} is not running")
        raise typer.Exit(code=3)
    from backends.reporting import reports

    console.print(reports.endpoint_markdown(endpoint), highlight=False)
    console.print("last " + cli_monitor.render(figures) if figures else no_figures, highlight=False, soft_wrap=True)


def status_problems(backend: Backend, endpoint_name: str, model_name: str, backend_name: str = "local") -> tuple[str, ...]:
    """The endpoint's inconsistencies, then the rollout slot's holder when it is held (read from the configured
    Prefect API only: status never starts a temporary server for it)."""
    from backends.domain.convergence import inconsistencies

    found = list(inconsistencies(backend.rollout_policy(), endpoint_name, model_name))
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        from tasks.rollout import slot_holder

        holder = slot_holder(backend_name, endpoint_name)
        if holder is not None:
            found.append(f"rollout slot held by {holder.holder} on {holder.host} (pid {holder.pid}) since "
                         f"{holder.acquired}, last heartbeat {holder.heartbeat}; a holder that is gone is reclaimed "
                         "by the next run")
    return tuple(found)
