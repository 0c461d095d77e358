"""`heartflow run --backend azure --dry-run` as a user types it: a plan, no Azure call, clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AZURE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-heartflow",
    "AZUREML_WORKSPACE_NAME": "ws-heartflow",
    "AZURE_STORAGE_ACCOUNT_URL": "https://heartflowdata.blob.core.windows.net",
}


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "AZUREML"))}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--backend", "azure", "--dry-run", *args],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, env={**clean, **(env or {})},
    )


def test_dry_run_prints_the_whole_plan_and_calls_nothing(tmp_path: Path) -> None:
    result = _cli(tmp_path, "--trials", "30", "--compute", "cpu-cluster", env=AZURE_ENV)
    assert result.returncode == 0, result.stderr
    for expected in ("nothing was called on Azure", "sweep", "max_total_trials=30", "cpu-cluster",
                     "derived from the workspace", "auth_mode key", "Standard_DS3_v2", "n_estimators", "score.py"):
        assert expected in result.stdout
    assert "Traceback" not in result.stderr


def test_missing_settings_are_named_all_at_once(tmp_path: Path) -> None:
    result = _cli(tmp_path)
    assert result.returncode == 1
    for variable in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "AZURE_STORAGE_"):
        assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_azure_limit_is_refused_before_any_call(tmp_path: Path) -> None:
    too_long = "e" * 33
    result = _cli(tmp_path, "--endpoint-name", too_long, env=AZURE_ENV)
    assert result.returncode == 1 and "endpoint_name" in result.stderr and "3 to 32 characters" in result.stderr
    result = _cli(tmp_path, "--trials", "1001", env=AZURE_ENV)
    assert result.returncode != 0 and "less than or equal to 1000" in result.stderr + result.stdout
