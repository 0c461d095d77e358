"""Issue 17 through the whole flow (real MLflow, worker processes, the HTTP endpoint on 127.0.0.1, Prefect's
temporary API), on generated tables:

- labels drawn apart from every column: the first version is refused by the no-skill floor; the run ends
  Failed with the floor's line, the version is tagged rejected, nothing serves, the rejection is an event;
- 10 % positive, swept by ROC AUC with an automatic threshold: promoted; the endpoint applies the stored
  threshold, and its labels, the holdout report's and the stored model's own at that threshold agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from backends.client.evaluation import records_of
from backends.domain.sources import load_spec_data
from backends.domain.spec import DataSpec, DeploySpec, PipelineSpec, SweepSpec
from backends.local import tracking
from backends.local.backend import LocalBackend
from flows.train_and_deploy import train_and_deploy
from src.metrics import model_threshold
from src.model_files import find_model_dir, load_sklearn_model
from tests.tables import LABELS, TARGET, user_table, write_table

pytestmark = pytest.mark.slow

NOISE, RARE = "noise-endpoint", "rare-endpoint"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("heartflow-decisions")
    yield path
    for endpoint in (NOISE, RARE):
        LocalBackend(path).teardown(endpoint)


def _spec(home: Path, table: Path, endpoint: str, model: str, **sweep: Any) -> PipelineSpec:
    return PipelineSpec(home=str(home), model_name=model, data=DataSpec(path=str(table), target=TARGET),
                        sweep=SweepSpec(max_total_trials=2, max_concurrent_trials=2, **sweep),
                        deploy=DeploySpec(endpoint_name=endpoint))


def test_a_first_model_without_skill_is_refused_and_nothing_serves(home: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.events

    emitted: list[tuple[str, dict[str, Any]]] = []
    real_emit = tasks.events.emit_event
    monkeypatch.setattr(tasks.events, "emit_event",
                        lambda **kw: emitted.append((kw["event"], kw["payload"])) or real_emit(**kw))
    table = write_table(user_table(rows=500, seed=4, noise=True), tmp_path / "noise.csv")
    state = train_and_deploy(spec=_spec(home, table, NOISE, "noise-classifier"), return_state=True)
    assert state.is_failed()
    assert state.message.startswith("no model beats the no-skill baseline: accuracy "), state.message
    assert "noise-classifier v1 was rejected by the promotion gate; nothing serves on noise-endpoint" in state.message
    backend = LocalBackend(home)
    assert backend.serving(NOISE) is None and backend.champion("noise-classifier") is None
    tags = backend.get_model("noise-classifier", "1").tags
    assert tags["heartflow.status"] == "rejected"
    assert tags["heartflow.reason"].startswith("no model beats the no-skill baseline: accuracy")
    entry = backend.history(NOISE)[-1]
    assert entry.event == "rejected" and entry.gate is not None and entry.gate.baseline is not None
    rejected = [payload for event, payload in emitted if event == tasks.events.REJECTED]
    assert rejected and rejected[0]["metric"] == "accuracy" and rejected[0]["baseline"] == entry.gate.baseline


def test_a_roc_auc_sweep_on_a_rare_class_is_promoted_and_the_endpoint_applies_its_threshold(
        home: Path, tmp_path: Path) -> None:
    table = write_table(user_table(rows=1500, seed=11, positive_share=0.1, label_noise=1.2), tmp_path / "rare.csv")
    spec = _spec(home, table, RARE, "rare-classifier", metric="roc_auc", threshold="auto")
    summary = train_and_deploy(spec=spec)
    assert summary.decision.promote and summary.decision.metric == "roc_auc" and summary.decision.baseline == 0.5
    assert summary.sweep.primary_metric == "roc_auc" and summary.model.metric_name == "roc_auc"

    client = tracking.make_client(home)
    model = load_sklearn_model(find_model_dir(tracking.served_model_dir(client, home, "rare-classifier", "1")))
    threshold = model_threshold(model)
    assert threshold is not None and threshold != 0.5
    assert threshold == pytest.approx(summary.sweep.best.metrics["threshold"])

    holdout = load_spec_data(spec.data).prepared.holdout
    features = holdout.drop(columns=[TARGET])
    proba = model.predict_proba(features)[:, 1]
    own = (proba >= threshold).astype(int)
    assert (own != model.predict(features)).any()  # the threshold changes some labels: the test can fail
    assert list(summary.report.predictions) == own.tolist()  # the holdout report, scored through the endpoint
    key = (home / "endpoints" / RARE / "key").read_text().strip()
    answer = requests.post(summary.endpoint.scoring_uri, timeout=30, headers={"Authorization": f"Bearer {key}"},
                           data=json.dumps({"data": records_of(features), "return_probabilities": True})).json()
    assert answer["predictions"] == [LABELS[v] for v in own]  # the endpoint, asked as a client asks
    assert np.allclose(np.asarray(answer["probabilities"])[:, 1], proba)  # probabilities unchanged
