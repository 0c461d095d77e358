"""The CLI's Azure commands: dry run, run, provision and teardown."""

from __future__ import annotations

import typer
from rich.console import Console

from backends.dataset import PreparedData
from backends.factory import backend_for_spec
from backends.spec import PipelineSpec

console = Console()


def run_azure(spec: PipelineSpec, prepared: PreparedData, *, compute: str | None = None) -> None:
    """--dry-run prints the plan and calls nothing on Azure; otherwise the flow runs on Azure.
    ``prepared`` is the data the CLI already validated."""
    if compute:
        spec = spec.model_copy(update={"azure_overrides": {**spec.azure_overrides, "compute": compute}})
    if spec.dry_run:
        backend = backend_for_spec(spec)
        plan = backend.plan(spec, data_sha256=prepared.train_sha256)  # type: ignore[attr-defined]
        console.print(plan.render(), highlight=False, soft_wrap=True)
        console.print("[bold]dry run:[/] every object above was validated with the Azure ML SDK; nothing was called on Azure.")
        return
    from flows.cli import _print_summary  # the same summary as a local run
    from flows.train_and_deploy import train_and_deploy

    state = train_and_deploy(spec=spec, return_state=True)
    _print_summary(None if state.is_completed() and state.data is None else state.result(), spec, prepared, state.message)


def provision_azure(spec: PipelineSpec, *, create_workspace: bool) -> None:
    report = backend_for_spec(spec).provision(create_workspace=create_workspace)  # type: ignore[attr-defined]
    console.print(report.render(), highlight=False, soft_wrap=True)


def teardown_azure(endpoint_name: str, *, all_resources: bool, yes: bool) -> None:
    spec = PipelineSpec(backend="azure", deploy={"endpoint_name": endpoint_name})
    backend = backend_for_spec(spec)
    backend.teardown(endpoint_name)
    console.print(f"endpoint {endpoint_name} deleted (or was already gone)")
    if not all_resources:
        return
    planned = backend.teardown_all(yes=False)  # type: ignore[attr-defined]
    console.print(planned.render(), highlight=False, soft_wrap=True)
    if not yes and not typer.confirm("Delete these resources permanently?", default=False):
        console.print("nothing else deleted")
        return
    console.print(backend.teardown_all(yes=True).render(), highlight=False, soft_wrap=True)  # type: ignore[attr-defined]
