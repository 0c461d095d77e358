"""The CLI's Azure commands: dry run, run, provision and teardown."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from backends.domain.sources import LoadedData
from backends.factory import provisioner_for_spec
from backends.domain.spec import PipelineSpec
from backends.errors import ConfigurationError

console = Console()


def run_azure(spec: PipelineSpec, loaded: LoadedData, *, plan_dir: Path | None = None) -> None:
    """--dry-run prints the plan and calls nothing on Azure (``plan_dir``: also writes it as Azure ML CLI v2
    YAML); otherwise the flow runs on Azure. ``loaded`` is the data the CLI already read and validated: the
    flow is handed it rather than reading the source again."""
    prepared = loaded.prepared
    if spec.dry_run:
        backend = provisioner_for_spec(spec)
        plan = backend.plan(spec, data_sha256=prepared.train_sha256)
        console.print(plan.render(), highlight=False, soft_wrap=True)
        if plan_dir is not None:
            from backends.azure.plan import AzurePlan
            from backends.azure.plan_yaml import write_plan_yaml

            if not isinstance(plan, AzurePlan):  # Provisioner.plan promises a report, not Azure ML objects
                raise ConfigurationError(f"--plan-dir writes Azure ML YAML: the {spec.backend} backend's plan is not one")
            console.print(write_plan_yaml(plan, plan_dir).render(), highlight=False, soft_wrap=True)
        console.print("[bold]dry run:[/] every object above was validated with the Azure ML SDK; nothing was called on Azure.")
        return
    from flows.summary import print_summary  # the same summary as a local run
    from flows.train_and_deploy import train_and_deploy
    from tasks.watch import CheckedData

    state = train_and_deploy(spec=spec, data=CheckedData.of(spec.data, loaded), return_state=True)
    print_summary(console, None if state.is_completed() and state.data is None else state.result(), spec, prepared,
                  state.message)


def provision_azure(spec: PipelineSpec, *, create_workspace: bool) -> None:
    report = provisioner_for_spec(spec).provision(create_workspace=create_workspace)
    console.print(report.render(), highlight=False, soft_wrap=True)


def teardown_azure(endpoint_name: str, *, all_resources: bool, yes: bool) -> None:
    spec = PipelineSpec.model_validate({"backend": "azure", "deploy": {"endpoint_name": endpoint_name}})
    backend = provisioner_for_spec(spec)
    from backends.azure.backend import AzureBackend

    # The name the backend deletes: the tutorial's default stands for the workspace's derived hf-<hash> name.
    deleted = backend.endpoints.endpoint_name(endpoint_name) if isinstance(backend, AzureBackend) else endpoint_name
    backend.teardown(endpoint_name)
    console.print(f"endpoint {deleted} deleted (or was already gone)")
    if not all_resources:
        return
    planned = backend.teardown_all(yes=False)
    console.print(planned.render(), highlight=False, soft_wrap=True)
    if not yes and not typer.confirm("Delete these resources permanently?", default=False):
        console.print("nothing else deleted")
        return
    console.print(backend.teardown_all(yes=True).render(), highlight=False, soft_wrap=True)


def check_azure(spec: PipelineSpec) -> None:
    """Read-only readiness of the workspace, one table; exit 1 if anything blocks a run."""
    from rich.table import Table

    from backends.azure.backend import AzureBackend
    from backends.azure.readiness import check_readiness

    backend = provisioner_for_spec(spec)
    if not isinstance(backend, AzureBackend):  # readiness reads Azure's own clients, beyond the Provisioner protocol
        raise ConfigurationError(f"`heartflow check` checks an Azure workspace: the {spec.backend} backend has none")
    report = check_readiness(backend, spec)
    table = Table(title="Azure readiness (read-only)", show_lines=False)
    for column in ("check", "status", "found", "what to do"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    for line in report.lines:
        table.add_row(line.name, f"[{style[line.status]}]{line.status}[/]", line.detail, line.fix)
    console.print(table)
    if not report.ready:
        console.print("[bold red]not ready:[/] fix the failing lines above, then run the check again.")
        raise typer.Exit(code=1)
    console.print("[bold green]ready:[/] nothing blocks an Azure run.")
