"""The `heartflow` command line. Errors a user can cause print one clear line and exit 1; no traceback."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from backends.domain.shadow import settle_watches

if TYPE_CHECKING:
    from flows.early_server import EarlyServer

from flows import cli_monitor, cli_status
from backends.base import DEFAULT_ENDPOINT_NAME, DEFAULT_MODEL_NAME
from flows.cli_common import (  # noqa: F401 - PREFECT_DEFAULTS is read by the tests
    PREFECT_DEFAULTS,
    BackendName,
    BackendOption,
    CaptureRateOption,
    EndpointOption,
    HomeOption,
    ModelNameOption,
    TrackingOption,
    apply_prefect_defaults,
    check,
    console,
    fail,
    resolve_home,
)
from flows.run_options import build_spec, with_run_options

app = typer.Typer(
    help="heartflow: train, tune, deploy and test a classifier (local or Azure ML) as one Prefect flow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schema_app = typer.Typer(help="Dataset schemas: propose one for your table.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
app.command()(cli_monitor.feedback)
app.command()(cli_monitor.monitor)
app.command()(cli_status.status)


@schema_app.command("infer")
def schema_infer(
    data: Annotated[Path, typer.Argument(help="Your CSV")],
    target: Annotated[str, typer.Option("--target", help="The label column")],
    positive_class: Annotated[str | None, typer.Option("--positive-class", help="The target's positive label")] = None,
) -> None:
    """Print a proposed schema (YAML, a comment per column saying why) to review and pass to --schema."""
    from flows.cli_spec import infer_schema_yaml

    console.print(check(infer_schema_yaml, data, target, positive_class), end="", highlight=False, markup=False)


@schema_app.command("show")
def schema_show(
    home: HomeOption = None,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
    model_version: Annotated[str | None, typer.Option("--model-version", help="Default: the champion")] = None,
) -> None:
    """Print the schema a registered model was trained with (local), to retrain with the same --schema."""
    from flows.cli_spec import recorded_schema_yaml

    console.print(check(recorded_schema_yaml, resolve_home(home), model_name, model_version), end="", highlight=False, markup=False)


@app.command()
@with_run_options
def run(
    ctx: typer.Context,
    models: Annotated[str, typer.Option("--models", help="Model families to sweep: rf, hgb, logreg (comma-separated)")] = "rf",
    search_space: Annotated[Path | None, typer.Option("--search-space", help="Search space file, YAML or JSON")] = None,
    spec_file: Annotated[Path | None, typer.Option("--spec", help="The whole PipelineSpec (YAML or JSON), as a deployment's parameters")] = None,
    plan_dir: Annotated[Path | None, typer.Option("--plan-dir", help="Azure dry run: also write the plan as Azure ML CLI v2 YAML files here")] = None,
    **options: Any,
) -> None:
    """Run the whole flow: upload -> sweep -> register -> deploy -> evaluate through the endpoint -> gate."""
    # Prefect's temporary server boots in its own process, first thing, while this one builds the spec,
    # validates the data and imports the flow (a bad input ends the command, and the server with it).
    from flows.early_server import EarlyServer, start_temporary_server_early

    server = start_temporary_server_early() if spec_file is None and options["backend"] == "local" else EarlyServer()
    if spec_file is None and options["backend"] == "local" and not options["dry_run"]:
        # The sweep's workers start too (each a process importing scikit-learn), beside the CLI's own work.
        from backends.domain.spec import default_concurrency
        from backends.local.scheduler import prestart_workers, stop_prestarted

        prestart_workers(min(options["concurrency"] or default_concurrency(), options["trials"]))
        ctx.call_on_close(stop_prestarted)  # those no sweep took, when the command ends (also in process)
    from backends.domain.spec import family_search_space
    from flows.cli_spec import load_data_of, load_search_space, load_spec

    if spec_file is not None:
        given = [p.opts[0] for p in ctx.command.params if p.name not in {"spec_file", "home", "backend", "plan_dir", "tracking_uri", "artifact_root"}
                 and getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") not in {"DEFAULT", "DEFAULT_MAP"}]
        if given:
            fail(f"--spec gives the whole spec: put {', '.join(given)} in {spec_file} instead of the command line")
        spec = check(load_spec, spec_file)
        if spec.backend == "local" and spec.home is None:
            spec = spec.model_copy(update={"home": str(resolve_home(options["home"]))})
    else:
        space = check(load_search_space, search_space) if search_space else check(
            family_search_space, [m.strip() for m in models.split(",") if m.strip()])
        spec = check(build_spec, search_space=space, **options)
    if plan_dir is not None and not (spec.dry_run and spec.backend == "azure"):
        fail("--plan-dir writes the plan of an Azure dry run: add --backend azure --dry-run")
    if spec_file is not None and spec.backend == "local":
        server = start_temporary_server_early()
    loaded = check(load_data_of, spec)  # read and validated once: the flow is handed these rows
    prepared = loaded.prepared
    if prepared.inferred:
        console.print(f"no --schema given: inferred one from {prepared.source} (numeric {len(prepared.schema.numeric)}, "
                      f"categorical {len(prepared.schema.categorical)}, dropped {list(prepared.schema.drop)}); it is "
                      f"recorded with the model. Review it with `heartflow schema infer {prepared.source} --target "
                      f"{prepared.schema.target}`", highlight=False)
    if prepared.missing_cells:
        console.print(f"missing cells imputed inside the model, per column: {prepared.missing_cells}", highlight=False)
    if spec.backend == "azure":
        from flows.azure_cli import run_azure

        check(run_azure, spec, loaded, plan_dir=plan_dir)
        return
    _run_local(spec, loaded, server)


RUN_PREFETCH = (
    "backends.local.backend", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
    "skops.io", "mlflow.sklearn", "backends.reporting.plots",
)


def _run_local(spec: Any, loaded: Any, server: EarlyServer | None = None) -> None:
    from flows.early_server import EarlyServer
    from flows.progress import sweep_progress
    from flows.run_warmup import open_store, start_first_trials
    from flows.summary import print_summary
    from flows.train_and_deploy import train_and_deploy
    from tasks.watch import CheckedData

    # While Prefect's server is still starting (on a busy machine the CLI waits for it): the imports the run
    # needs later (the backend and its store, the model writer, the plots), then the store opened.
    with (server or EarlyServer()).serving(prefetch=(*RUN_PREFETCH, functools.partial(open_store, spec))):
        start_first_trials(spec, loaded)  # they run while Prefect starts the flow (one core waits on the other)
        with sweep_progress(console):
            try:
                state = check(train_and_deploy, spec=spec, data=CheckedData.of(spec.data, loaded), return_state=True)
            except RuntimeError as exc:
                if "ephemeral Prefect API server" not in str(exc):
                    raise
                fail(
                    "the temporary Prefect API did not start in time (a busy machine?): start one with "
                    "`prefect server start --host 127.0.0.1` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
                    "or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
                )
        ended_early = state.is_completed() and state.data is None  # no new deployment: the message says why
        print_summary(console, None if ended_early else check(state.result), spec, loaded.prepared, state.message)


@app.command()
def upload(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    data: Annotated[Path | None, typer.Option("--data")] = None,
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
) -> None:
    """Validate the data, set the holdout aside and store the training split (the upload stage alone)."""
    from backends.domain.dataset import prepare_data
    from backends.domain.spec import DataSpec
    from backends.factory import create_backend

    prepared = check(prepare_data, data, schema, DataSpec().holdout_fraction)
    store = check(create_backend, backend.value, home=resolve_home(home))
    ref = check(store.upload, prepared.train)
    console.print(f"stored {ref.rows} training rows at {ref.uri} (sha256 {ref.sha256}); {len(prepared.holdout)} rows held out")


@app.command()
def serve(
    home: HomeOption = None,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    port: Annotated[int, typer.Option("--port", help="0 picks a free port")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 1,
    model_version: Annotated[str | None, typer.Option("--model-version", help="Default: the champion")] = None,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
    host: Annotated[str, typer.Option("--host", help="Bind address (loopback by default)")] = "127.0.0.1",
    tracking_uri: TrackingOption = None,
    capture_rate: CaptureRateOption = 1.0,
) -> None:
    """Serve the champion (or --model-version) in the foreground until Ctrl-C."""
    from backends.local.endpoint.capture import set_capture_rate
    from backends.local.endpoint.state import EndpointPaths

    from backends.local import tracking
    from backends.local.backend import LocalBackend
    from backends.local.endpoint import serve_foreground

    local = check(LocalBackend, resolve_home(home), tracking_uri)
    model = local.registry.get(model_name, model_version) if model_version else local.champion(model_name)
    if model is None:
        fail(f"no champion of {model_name!r} in {local.mlflow_uri}: run `heartflow run` first or pass --model-version")
    model_dir = check(tracking.served_model_dir, local.mlflow_client, local.home, model.name, model.version)
    set_capture_rate(EndpointPaths(local.home, endpoint_name).root, capture_rate)

    def listening(status: Any) -> None:
        console.print(
            f"serving {model.name} v{model.version} at {status.scoring_uri} "
            f"(key: {status.key_path}; OpenAPI: {status.openapi_url}); Ctrl-C stops", highlight=False, soft_wrap=True,
        )

    check(serve_foreground, local.home, endpoint_name, model_dir, model.name, model.version, port=port,
           workers=workers, host=host, on_listening=listening)


@app.command()
def history(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    tracking_uri: TrackingOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts and alerts")] = False,
) -> None:
    """Every promotion, rejection and rollback: what served when, and why."""
    from backends.reporting import reports
    from backends.factory import create_backend

    store = check(create_backend, backend.value, home=resolve_home(home), tracking_uri=tracking_uri)
    entries = settle_watches(check(store.history, endpoint_name))  # a promotion says how its watch ended
    if as_json:
        from flows.cli_json import history_records

        for line in history_records(store, entries):
            typer.echo(line)
        return
    rows = reports.history_rows(entries)
    if not rows:
        console.print(f"no promotions or rejections recorded for {endpoint_name}")
        return
    console.print(f"[bold]history of {endpoint_name}[/] (oldest first)")
    for row in rows:
        accuracy = "" if row["accuracy"] is None else f" accuracy={row['accuracy']}"
        versus = "" if row["champion_accuracy"] is None else f" champion={row['champion_accuracy']}"
        console.print(
            f"{row['time']}  {row['event']:<9} {row['model']} on {row['deployment']}{accuracy}{versus}  "
            f"by {row['by']}\n    {row['reason']}" + (f"\n    gate: {row['gate']}" if row["gate"] else "")
            + (f"\n    shadow: {row['shadow']}" if row["shadow"] else "") + (f"\n    watch: {row['watch']}" if row["watch"] else ""),
            highlight=False, soft_wrap=True,
        )


@app.command()
def rollback(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    data: Annotated[Path | None, typer.Option("--data", help="Data whose holdout checks the restored model")] = None,
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
    model_name: ModelNameOption = DEFAULT_MODEL_NAME,
    target: Annotated[str | None, typer.Option("--target", help="A model version that served on this endpoint as champion (`heartflow history` lists them); default: the previous champion")] = None,
) -> None:
    """Put the previous champion (or --target VERSION, an earlier one) back in front, through the same safe
    path (deploy beside, check through the endpoint, switch)."""
    from flows.rollback import rollback_endpoint

    result = check(rollback_endpoint, backend.value, resolve_home(home), endpoint_name, data, schema, model_name,
                    target=target)
    console.print(result)


@app.command()
def provision(
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    compute: Annotated[str | None, typer.Option("--compute", help="Compute cluster name")] = None,
    create_workspace: Annotated[bool, typer.Option("--create-workspace", help="Create the workspace if missing")] = False,
) -> None:
    """Azure: get-or-create the compute cluster, environment, blob container and datastore (idempotent)."""
    from backends.domain.spec import PipelineSpec
    from flows.azure_cli import provision_azure

    spec = check(lambda: PipelineSpec.model_validate({
        "backend": "azure", "deploy": {"endpoint_name": endpoint_name},
        "azure_overrides": {"compute": compute} if compute else {},
    }))
    check(provision_azure, spec, create_workspace=create_workspace)


@app.command("check")
def check_workspace(
    backend: BackendOption = BackendName.azure,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    compute: Annotated[str | None, typer.Option("--compute", help="Compute cluster name")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Parallel trials the sweep will ask for")] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type", help="Endpoint VM size")] = None,
) -> None:
    """Azure: read-only readiness of the workspace (credential, region, cluster, quota, endpoint name,
    storage); exits 1 if anything blocks a run."""
    if backend is not BackendName.azure:
        fail("`heartflow check` checks an Azure workspace: use --backend azure")
    from backends.domain.spec import PipelineSpec
    from flows.azure_cli import check_azure

    spec = check(lambda: PipelineSpec.model_validate({
        "backend": "azure", "sweep": {"max_concurrent_trials": concurrency},
        "deploy": {"endpoint_name": endpoint_name, **({"instance_type": instance_type} if instance_type else {})},
        "azure_overrides": {"compute": compute} if compute else {},
    }))
    check(check_azure, spec)


@app.command()
def teardown(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = DEFAULT_ENDPOINT_NAME,
    all_resources: Annotated[bool, typer.Option("--all", help="Azure: also delete what heartflow created")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Stop the endpoint (idempotent). Local: the host stops, its deployments stay recorded for the next
    deploy. Azure: the endpoint is deleted; --all also removes what heartflow created."""
    if backend is BackendName.azure:
        from flows.azure_cli import teardown_azure

        check(teardown_azure, endpoint_name, all_resources=all_resources, yes=yes)
        return
    from backends.local.backend import LocalBackend

    check(LocalBackend(resolve_home(home)).teardown, endpoint_name)
    console.print(f"endpoint {endpoint_name} stopped")


def main() -> None:
    """The console script. Once every exit handler has run (Prefect's log and event workers have sent what
    they held, the temporary server has stopped, logging has flushed), the process ends without Python's
    teardown of its modules: with scikit-learn, pandas, MLflow and Prefect loaded that teardown frees
    nothing anyone keeps and took 1-2 s of every command's wait, measured."""
    status: list[int] = [1]  # what the command exits with; an uncaught exception leaves 1
    atexit.register(_end_process, status)  # registered first: runs after every other exit handler
    apply_prefect_defaults()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SystemExit as exc:
        status[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    except KeyboardInterrupt:
        status[0] = 130
        raise
    else:
        status[0] = 0


def _end_process(status: list[int]) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing left to flush
            stream.flush()
    os._exit(status[0])


if __name__ == "__main__":
    main()
