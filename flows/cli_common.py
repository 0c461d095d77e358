"""What every `heartflow` command shares: the consoles, the option types, one-line errors (``fail``, ``check``),
the local home (``resolve_home``) and Prefect's defaults."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from backends.errors import HeartflowError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class BackendName(str, Enum):
    local = "local"
    azure = "azure"


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
ModelNameOption = Annotated[str, typer.Option("--model-name", help="Registered model name")]
TrackingOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="Local: a shared MLflow tracking server or database, without a password "
                 "(default: $MLFLOW_TRACKING_URI, else <home>/mlflow.db)"),
]


def fail(message: str) -> NoReturn:
    """Print one line on stderr and end the command with exit code 1."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def resolve_home(home: Path | str | None) -> Path:
    """The local state folder: ``home`` made absolute, else $HEARTFLOW_HOME or ./.heartflow."""
    from backends.local.backend import default_home

    return Path(home).resolve() if home else default_home()


def check(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` and turn heartflow's own errors (and spec errors) into one line on stderr."""
    from pydantic import ValidationError

    try:
        return fn(*args, **kwargs)
    except HeartflowError as exc:
        fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"invalid settings: {problems}")



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


