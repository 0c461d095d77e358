"""What a finished run prints: the holdout report, the model, and how to call and stop the endpoint (the
same for a local and an Azure run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console


def print_summary(console: Console, summary: Any, spec: Any, prepared: Any, message: str | None = None) -> None:
    """The report, the model, and how to call and stop the endpoint; ``prepared`` is the data the CLI
    validated before the run (its first holdout row makes the example request)."""
    from backends.reporting import reports
    from backends.client.evaluation import records_of

    if summary is None:  # the run ended before a new deployment: its final state says why
        console.print(message or 'nothing to do', style='bold', highlight=False, markup=False)
        return
    report = summary.report
    console.rule(f"[bold]Holdout evaluation through the endpoint[/] ({report.rows} rows, {report.requests} request(s))")
    console.print(report.report_text, highlight=False)
    console.print(reports.confusion_markdown(report), highlight=False)
    console.print(f"[bold]{summary.decision.reason}[/]")
    for warning in summary.decision.warnings:
        console.print(f"[yellow]gate:[/] {warning}", highlight=False)
    model, endpoint = summary.model, summary.endpoint
    console.print(f"model: {model.name} v{model.version}  (best trial #{summary.sweep.best.number}, "
                  f"validation {model.metric_name}={model.metric_value:.4f})")
    local = spec.backend == "local"
    if local:
        from backends.local import tracking

        store = tracking.redact(tracking.resolve_tracking_uri(Path(spec.home), spec.tracking_uri))
        console.print(f"MLflow UI: {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri "
                      f"{store}  (then http://127.0.0.1:5000)" if store.startswith("sqlite:") else f"MLflow: {store}",
                      highlight=False)
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
