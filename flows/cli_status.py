"""`heartflow status`: the champion, what serves, what does not agree on the endpoint (and who holds its
rollout slot), and the last monitor figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from flows import cli_monitor
from backends.base import DEFAULT_ENDPOINT_NAME, DEFAULT_MODEL_NAME
from flows.cli_common import EndpointOption, HomeOption, ModelNameOption, TrackingOption, check, console, resolve_home

if TYPE_CHECKING:
    from backends.local.backend import LocalBackend


def status(
    home: HomeOption = None, endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    tracking_uri: TrackingOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts and alerts")] = False,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
) -> None:
    """The champion in the registry, and what the local endpoint serves now."""
    from backends.domain.history import recorded_holdout_accuracy
    from backends.local.backend import LocalBackend

    local = check(LocalBackend, resolve_home(home), tracking_uri)
    champion = local.champion(model_name)
    endpoint = local.endpoint(endpoint_name)
    problems = status_problems(local, endpoint_name, model_name)
    if as_json:  # only JSON on stdout, for scripts
        from flows.cli_json import status_record

        from backends.local.monitoring import last_figures

        typer.echo(status_record(endpoint_name, endpoint, champion, problems, last_figures(local.home, endpoint_name)))
        raise typer.Exit(code=0 if endpoint is not None else 3)
    for problem in problems:
        console.print(f"[bold yellow]inconsistent:[/] {problem}", highlight=False)
    if champion is None:
        console.print(f"no champion of {model_name} in {local.mlflow_uri}", highlight=False)
    else:
        accuracy = recorded_holdout_accuracy(champion)
        console.print(f"champion: {champion.name} v{champion.version}"
                      + (f" (holdout accuracy {accuracy:.4f})" if accuracy is not None else "")
                      + f" in {local.mlflow_uri}", highlight=False)
    if endpoint is None:
        console.print(f"endpoint {endpoint_name} is not running")
        raise typer.Exit(code=3)
    from backends.reporting import reports

    console.print(reports.endpoint_markdown(endpoint), highlight=False)
    from backends.local.monitoring import last_figures

    figures = last_figures(local.home, endpoint_name)
    console.print("last " + cli_monitor.render(figures) if figures else "no monitor figures yet: run `heartflow monitor`",
                  highlight=False, soft_wrap=True)


def status_problems(local: LocalBackend, endpoint_name: str, model_name: str) -> tuple[str, ...]:
    """The endpoint's inconsistencies, then the rollout slot's holder when it is held (read from the configured
    Prefect API only: status never starts a temporary server for it)."""
    from backends.domain.convergence import inconsistencies

    found = list(inconsistencies(local.rollout_policy(), endpoint_name, model_name))
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        from tasks.rollout import slot_holder

        holder = slot_holder("local", endpoint_name)
        if holder is not None:
            found.append(f"rollout slot held by {holder.holder} on {holder.host} (pid {holder.pid}) since "
                         f"{holder.acquired}, last heartbeat {holder.heartbeat}; a holder that is gone is reclaimed "
                         "by the next run")
    return tuple(found)
