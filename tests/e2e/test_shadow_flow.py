"""The whole flow with a shadow and a watch, under wrk load on the endpoint: a fine candidate is mirrored live
requests for 20 s, promoted, watched, and the watch passes; the history says so, and wrk sees no error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.client.evaluation import records_of
from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec
from backends.local.backend import LocalBackend
from flows.cli import app
from flows.train_and_deploy import train_and_deploy
from tests.conftest import load_heart_frame
from tests.wrk_load import need_wrk, wrk_load

pytestmark = pytest.mark.slow

ENDPOINT = "shadow-e2e"


def _spec(home: Path, **deploy: object) -> PipelineSpec:
    return PipelineSpec(home=str(home), data=DataSpec(force=True),
                        sweep=SweepSpec(max_total_trials=3, max_concurrent_trials=1, seed=int(deploy.pop("seed", 42))),  # type: ignore[call-overload]
                        deploy=DeploySpec(endpoint_name=ENDPOINT, **deploy))  # type: ignore[arg-type]


def test_a_fine_candidate_is_shadowed_under_load_promoted_and_its_watch_passes(tmp_path: Path) -> None:
    need_wrk()
    home = tmp_path / "home"
    backend = LocalBackend(home)
    try:
        first = train_and_deploy(spec=_spec(home))
        endpoint = backend.endpoint(ENDPOINT)
        assert endpoint is not None and endpoint.model_version == first.model.version
        rows = records_of(load_heart_frame().drop(columns=["output"]).head(60))
        bodies = [{"data": rows[i:i + 20]} for i in range(0, 60, 20)]
        # The holdout gate is opened wide (tolerance 1): what is under test is the shadow's reading of live traffic.
        with wrk_load(endpoint.scoring_uri, backend.endpoint_key(endpoint), bodies, seconds=600) as load:
            second = train_and_deploy(spec=_spec(home, seed=7, shadow_seconds=20, shadow_min_requests=50,
                                                 watch_seconds=8, promotion_tolerance=1.0))
        assert load.result is not None and load.result.requests > 1000
        assert (load.result.non2xx, load.result.errors) == (0, 0)
        assert second.decision.promote and "shadow:" not in second.decision.reason

        result = CliRunner().invoke(app, ["history", "--home", str(home), "--endpoint-name", ENDPOINT, "--json"])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.output.splitlines()]
        promoted = [e for e in lines if e["event"] == "promoted" and e["model_version"] == second.model.version]
        assert len(promoted) == 1
        shadow, watch = promoted[0]["shadow"], promoted[0]["watch"]
        assert shadow["mirrored"] >= 50 and shadow["candidate_errors"] == 0
        assert set(shadow) >= {"mirrored", "disagreement", "candidate_errors", "candidate_p99_ms", "champion_p99_ms"}
        assert shadow["disagreement"] <= 0.15  # the default --max-disagreement
        assert watch["outcome"] == "passed" and watch["requests"] > 0 and watch["errors"] == 0
        assert lines[-1]["event"] == "watch-passed" and lines[-1]["triggered_by"] == "watch"
        assert backend.endpoints.read_traffic(ENDPOINT) == {second.endpoint.deployment: 100}  # the old one removed
        first_line = next(e for e in lines if e["model_version"] == first.model.version)
        assert first_line["shadow"] is None and first_line["watch"] is None  # nothing to compare with on a first run
    finally:
        backend.teardown(ENDPOINT)
