"""Which MLflow store the local backend uses, and that no password travels in a URI."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backends.errors import ConfigurationError
from backends.local import tracking
from backends.domain.spec import PipelineSpec


def test_the_flag_wins_over_the_environment_which_wins_over_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(tmp_path) == tracking.tracking_uri(tmp_path)
    assert not tracking.is_shared(tracking.resolve_tracking_uri(tmp_path), tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert tracking.resolve_tracking_uri(tmp_path, "postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert tracking.is_shared("http://127.0.0.1:5000", tmp_path)


def test_a_password_is_masked_in_messages_and_refused_where_others_see_it() -> None:
    uri = "postgresql+psycopg2://mlflow:s3cret@db.example:5432/mlflow"
    assert tracking.redact(uri) == "postgresql+psycopg2://mlflow:***@db.example:5432/mlflow"
    assert tracking.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(ConfigurationError, match="contains a password") as caught:
        tracking.check_no_password(uri)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValidationError, match="contains a password"):
        PipelineSpec(tracking_uri=uri)
    assert PipelineSpec(tracking_uri="postgresql+psycopg2://mlflow@db/mlflow").tracking_uri


def test_trial_models_are_staged_only_when_artifacts_are_not_a_local_folder(tmp_path: Path) -> None:
    local = tracking.trial_model_dir(tmp_path, "r1", (tmp_path / "artifacts" / "r1").as_uri())
    assert local == tmp_path / "artifacts" / "r1" / "model"
    served = tracking.trial_model_dir(tmp_path, "r1", "mlflow-artifacts:/1/r1/artifacts")
    assert served == tmp_path / tracking.STAGING_DIR / "r1" / "model"
