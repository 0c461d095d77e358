"""The `heartflow` command line. Errors a user can cause print one clear line and exit 1; no traceback."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from backends.errors import HeartflowError

app = typer.Typer(
    help="heartflow: train, tune, deploy and test a classifier (local or Azure ML) as one Prefect flow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class BackendName(str, Enum):
    local = "local"
    azure = "azure"


class SamplingName(str, Enum):
    grid = "grid"
    random = "random"
    bayesian = "bayesian"


HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Local state folder (MLflow, data, endpoints). Default: $HEARTFLOW_HOME or ./.heartflow"),
]
BackendOption = Annotated[BackendName, typer.Option("--backend", help="Where to run: local or azure")]
EndpointOption = Annotated[str, typer.Option("--endpoint-name", help="Endpoint name (3-32 chars, starts with a letter)")]


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _home(home: Path | None) -> Path:
    from backends.local.backend import default_home

    return home.resolve() if home else default_home()


def _check(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` and turn heartflow's own errors (and spec errors) into one line on stderr."""
    from pydantic import ValidationError

    try:
        return fn(*args, **kwargs)
    except HeartflowError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid settings: {problems}")
    return None


@app.command()
def run(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    data: Annotated[Path | None, typer.Option("--data", help="Your CSV (default: the embedded 303-row heart table)")] = None,
    schema: Annotated[Path | None, typer.Option("--schema", help="Dataset schema, YAML or JSON")] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, max=1000, help="max_total_trials")] = 25,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Parallel trials (default: cores)")] = None,
    sampling: Annotated[SamplingName, typer.Option("--sampling")] = SamplingName.random,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the holdout split, sampling and forests")] = 42,
    validation: Annotated[str, typer.Option("--validation", help="kfold (5 stratified folds, then refit on all training rows) or split (the tutorial's 70/30)")] = "kfold",
    folds: Annotated[int, typer.Option("--folds", min=2, max=20)] = 5,
    timeout: Annotated[int | None, typer.Option("--timeout", min=1, help="Sweep timeout, seconds")] = None,
    trial_timeout: Annotated[int | None, typer.Option("--trial-timeout", min=1, help="Per-trial timeout, seconds")] = None,
    model_name: Annotated[str, typer.Option("--model-name", help="Registered model name")] = "heart-classifier",
    endpoint_name: EndpointOption = "heart-classify-endpoint",
    port: Annotated[int | None, typer.Option("--port", help="Local endpoint port (default: a free one)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Endpoint worker processes")] = 1,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Promotion gate: accuracy may drop by this much")] = 0.0,
    stop_endpoint: Annotated[bool, typer.Option("--stop-endpoint", help="Stop the local endpoint when the flow ends")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Azure: build and validate everything, call nothing")] = False,
    compute: Annotated[str | None, typer.Option("--compute", help="Azure compute cluster name")] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type", help="Azure endpoint VM size")] = None,
) -> None:
    """Run the whole flow: upload -> sweep -> register -> deploy -> evaluate through the endpoint -> gate."""
    from backends.dataset import prepare_data
    from backends.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec, ValidationSpec
    from flows.early_server import start_temporary_server_early

    spec: PipelineSpec = _check(
        lambda: PipelineSpec(
            backend=backend.value,
            home=str(_home(home)) if backend is BackendName.local else None,
            model_name=model_name,
            data=DataSpec(path=str(data) if data else None, schema_path=str(schema) if schema else None, seed=seed),
            sweep=SweepSpec(
                sampling=sampling.value, max_total_trials=trials, max_concurrent_trials=concurrency, seed=seed,
                validation=ValidationSpec(method=validation, folds=folds), timeout_s=timeout, trial_timeout_s=trial_timeout,
            ),
            deploy=DeploySpec(
                endpoint_name=endpoint_name, port=port, workers=workers, stop_endpoint=stop_endpoint,
                promotion_tolerance=tolerance, **({"instance_type": instance_type} if instance_type else {}),
            ),
            dry_run=dry_run,
        )
    )
    # Validate the data before Prefect starts: a bad file costs a second, not a server start-up.
    prepared = _check(prepare_data, spec.data.path, spec.data.schema_path, spec.data.holdout_fraction, spec.data.seed)
    if backend is BackendName.azure:
        from flows.azure_cli import run_azure

        _check(run_azure, spec, prepared, compute=compute)
        return
    # Prefect's temporary server boots in its own process while this one imports the flow.
    _run_local(spec, prepared, start_temporary_server_early())


def _run_local(spec: Any, prepared: Any, server_ready: Any = lambda: None) -> None:
    from flows.progress import sweep_progress
    from flows.train_and_deploy import train_and_deploy

    server_ready()
    with sweep_progress(console):
        summary = _check(train_and_deploy, spec=spec)
    _print_summary(summary, spec, prepared)


def _print_summary(summary: Any, spec: Any, prepared: Any) -> None:
    """The report, the model, and how to call and stop the endpoint; ``prepared`` is the data the CLI
    validated before the run (its first holdout row makes the example request)."""
    from backends import reports
    from backends.evaluation import records_of

    report = summary.report
    console.rule(f"[bold]Holdout evaluation through the endpoint[/] ({report.rows} rows, {report.requests} request(s))")
    console.print(report.report_text, highlight=False)
    console.print(reports.confusion_markdown(report), highlight=False)
    console.print(f"[bold]{summary.decision.reason}[/]")
    model, endpoint = summary.model, summary.endpoint
    console.print(f"model: {model.name} v{model.version}  (best trial #{summary.sweep.best.number}, "
                  f"validation {model.metric_name}={model.metric_value:.4f})")
    local = spec.backend == "local"
    if local:
        console.print(f"MLflow UI: {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri "
                      f"sqlite:///{Path(spec.home) / 'mlflow.db'}  (then http://127.0.0.1:5000)", highlight=False)
    if spec.deploy.stop_endpoint and local:
        console.print("endpoint stopped (--stop-endpoint)")
        return
    example = records_of(prepared.holdout.drop(columns=[prepared.schema.target]).head(1))[0]
    console.print(f"endpoint {endpoint.name} serves at {endpoint.scoring_uri}")
    console.print(f"key: {endpoint.key_hint}")
    if local:
        from backends.local.endpoint.state import EndpointPaths

        key_file = EndpointPaths(Path(spec.home), endpoint.name).key
        console.print(f"call it:\n  export HEARTFLOW_ENDPOINT_KEY=$(cat {key_file})\n  "
                      + reports.curl_example(endpoint, example).replace("\n", "\n  "), highlight=False, soft_wrap=True)
        console.print(f"stop it: heartflow teardown --home {spec.home} --endpoint-name {endpoint.name}")
    else:
        console.print("call it (key from the command above, in HEARTFLOW_ENDPOINT_KEY):\n  "
                      + reports.curl_example(endpoint, example).replace("\n", "\n  "), highlight=False, soft_wrap=True)
        console.print(f"delete it: heartflow teardown --backend azure --endpoint-name {endpoint.name}")


@app.command()
def upload(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    data: Annotated[Path | None, typer.Option("--data")] = None,
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """Validate the data, set the holdout aside and store the training split (the upload stage alone)."""
    from backends.dataset import prepare_data
    from backends.spec import DataSpec
    from backends.factory import create_backend

    prepared = _check(prepare_data, data, schema, DataSpec().holdout_fraction, seed)
    store = _check(create_backend, backend.value, home=_home(home))
    ref = _check(store.upload, prepared.train)
    console.print(f"stored {ref.rows} training rows at {ref.uri} (sha256 {ref.sha256}); {len(prepared.holdout)} rows held out")


@app.command()
def serve(
    home: HomeOption = None,
    endpoint_name: EndpointOption = "heart-classify-endpoint",
    port: Annotated[int, typer.Option("--port", help="0 picks a free port")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 1,
    model_version: Annotated[str | None, typer.Option("--model-version", help="Default: the champion")] = None,
    model_name: Annotated[str, typer.Option("--model-name")] = "heart-classifier",
    host: Annotated[str, typer.Option("--host", help="Bind address (loopback by default)")] = "127.0.0.1",
) -> None:
    """Serve the champion (or --model-version) in the foreground until Ctrl-C."""
    from backends.local import tracking
    from backends.local.backend import LocalBackend
    from backends.local.endpoint import serve_foreground

    local = _check(LocalBackend, _home(home))
    model = local.registry.get(model_name, model_version) if model_version else local.champion(model_name)
    if model is None:
        _fail(f"no champion of {model_name!r} in {local.home}: run `heartflow run` first or pass --model-version")
    model_dir = tracking.local_path(local.registry.model_dir(model.name, model.version))

    def listening(status: Any) -> None:
        console.print(
            f"serving {model.name} v{model.version} at {status.scoring_uri} "
            f"(key: {status.key_path}; OpenAPI: {status.openapi_url}); Ctrl-C stops", highlight=False, soft_wrap=True,
        )

    _check(serve_foreground, local.home, endpoint_name, model_dir, model.name, model.version, port=port,
           workers=workers, host=host, on_listening=listening)


@app.command()
def status(home: HomeOption = None, endpoint_name: EndpointOption = "heart-classify-endpoint") -> None:
    """What the local endpoint serves now."""
    from backends.local.backend import LocalBackend

    local = _check(LocalBackend, _home(home))
    endpoint = local.endpoint(endpoint_name)
    if endpoint is None:
        console.print(f"endpoint {endpoint_name} is not running")
        raise typer.Exit(code=3)
    from backends import reports

    console.print(reports.endpoint_markdown(endpoint), highlight=False)


@app.command()
def history(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = "heart-classify-endpoint",
) -> None:
    """Every promotion, rejection and rollback: what served when, and why."""
    from backends import reports
    from backends.factory import create_backend

    store = _check(create_backend, backend.value, home=_home(home))
    rows = reports.history_rows(_check(store.history, endpoint_name))
    if not rows:
        console.print(f"no promotions or rejections recorded for {endpoint_name}")
        return
    console.print(f"[bold]history of {endpoint_name}[/] (oldest first)")
    for row in rows:
        accuracy = "" if row["accuracy"] is None else f" accuracy={row['accuracy']}"
        versus = "" if row["champion_accuracy"] is None else f" champion={row['champion_accuracy']}"
        console.print(
            f"{row['time']}  {row['event']:<9} {row['model']} on {row['deployment']}{accuracy}{versus}  "
            f"by {row['by']}\n    {row['reason']}", highlight=False, soft_wrap=True,
        )


@app.command()
def rollback(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = "heart-classify-endpoint",
    data: Annotated[Path | None, typer.Option("--data", help="Data whose holdout checks the restored model")] = None,
    schema: Annotated[Path | None, typer.Option("--schema")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    model_name: Annotated[str, typer.Option("--model-name")] = "heart-classifier",
) -> None:
    """Put the previous champion back in front, through the same safe path (deploy beside, check, switch)."""
    from flows.rollback import rollback_endpoint

    result = _check(rollback_endpoint, backend.value, _home(home), endpoint_name, data, schema, seed, model_name)
    console.print(result)


@app.command()
def provision(
    endpoint_name: EndpointOption = "heart-classify-endpoint",
    compute: Annotated[str | None, typer.Option("--compute", help="Compute cluster name")] = None,
    create_workspace: Annotated[bool, typer.Option("--create-workspace", help="Create the workspace if missing")] = False,
) -> None:
    """Azure: get-or-create the compute cluster, environment, blob container and datastore (idempotent)."""
    from backends.spec import PipelineSpec
    from flows.azure_cli import provision_azure

    spec = _check(lambda: PipelineSpec(backend="azure", deploy={"endpoint_name": endpoint_name},
                                       azure_overrides={"compute": compute} if compute else {}))
    _check(provision_azure, spec, create_workspace=create_workspace)


@app.command()
def teardown(
    backend: BackendOption = BackendName.local,
    home: HomeOption = None,
    endpoint_name: EndpointOption = "heart-classify-endpoint",
    all_resources: Annotated[bool, typer.Option("--all", help="Azure: also delete what heartflow created")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Stop the endpoint (idempotent). Local: the host stops, its deployments stay recorded for the next
    deploy. Azure: the endpoint is deleted; --all also removes what heartflow created."""
    if backend is BackendName.azure:
        from flows.azure_cli import teardown_azure

        _check(teardown_azure, endpoint_name, all_resources=all_resources, yes=yes)
        return
    from backends.local.backend import LocalBackend

    _check(LocalBackend(_home(home)).teardown, endpoint_name)
    console.print(f"endpoint {endpoint_name} stopped")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    sys.exit(main())
