"""What every `heartflow` command shares: the consoles, the option types, one-line errors, Prefect defaults."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from backends.errors import HeartflowError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class BackendName(str, Enum):
    local = "local"
    azure = "azure"


class SamplingName(str, Enum):
    grid = "grid"
    random = "random"
    bayesian = "bayesian"


class GateRule(str, Enum):
    tolerance = "tolerance"
    paired = "paired"


# The choices of spec fields the CLI passes on as they are (typer offers them as choices); the type checker
# holds them to the Literal fields of backends.domain.spec (DataSpec, ValidationSpec).
FolderRuleName = Literal["newest", "all"]
RetrainOnName = Literal["always", "drift"]
ValidationName = Literal["split", "kfold"]
MetricName = Literal["accuracy", "balanced_accuracy", "f1", "roc_auc", "average_precision", "log_loss"]


HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Local state folder (MLflow, data, endpoints). Default: $HEARTFLOW_HOME or ./.heartflow"),
]
BackendOption = Annotated[BackendName, typer.Option("--backend", help="Where to run: local or azure")]
CaptureRateOption = Annotated[
    float,
    typer.Option("--capture-rate", min=0.0, max=1.0,
                 help="Share of answered requests captured with their rows for `heartflow monitor` (refusals always counted)"),
]
EndpointOption = Annotated[str, typer.Option("--endpoint-name", help="Endpoint name (3-32 chars, starts with a letter)")]
TrackingOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="Local: a shared MLflow tracking server or database, without a password "
                 "(default: $MLFLOW_TRACKING_URI, else <home>/mlflow.db)"),
]
ArtifactRootOption = Annotated[
    str | None,
    typer.Option("--artifact-root", help="Local, with a database --tracking-uri: artifacts every machine can read "
                 "(default: $HEARTFLOW_ARTIFACT_ROOT)"),
]


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



# Defaults for the temporary Prefect API a run starts when PREFECT_API_URL is unset (the user's own settings
# win). The server's analytics heartbeat logs a "database is locked" traceback on a first start and, offline,
# "Failed to send telemetry"; Prefect's 20 s start-up timeout is missed on a busy 2-core machine.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def apply_prefect_defaults() -> None:
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


