"""Lineage tags: what a registered model version records about where it came from, written and read here only.

Every backend writes the same tags in the same format (``lineage_tags``) and reads them back the same way
(``read_lineage``, ``model_version_of``). The reader also reads records written before this module existed:
hyperparameters as ``k=v, k=v`` text in ``heartflow.params`` (local and in-memory) beside a JSON copy in
``heartflow.params_json`` (local), and metric values written as ``%.6f`` (local) or ``repr`` (Azure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backends.results import ModelVersion, SweepResult

PREFIX = "heartflow."
# Where the version came from (written once, at registration).
TAG_SWEEP = "heartflow.sweep_run"
TAG_TRIAL = "heartflow.trial_run"
TAG_TRIAL_NUMBER = "heartflow.trial_number"
TAG_DATA_SHA = "heartflow.data_sha256"
TAG_DATA_URI = "heartflow.data_uri"
TAG_METRIC_NAME = "heartflow.metric_name"
TAG_METRIC_VALUE = "heartflow.metric_value"  # repr(float): reads back exactly
TAG_PARAMS = "heartflow.params"  # a JSON object, keys sorted
TAG_CODE_VERSION = "heartflow.code_version"
TAG_SPLIT = "heartflow.split"  # "<rule>;holdout_fraction=<f>" (backends.domain.split): how its training rows were chosen
# What happened to it since (the rollout policy's decisions).
TAG_STATUS = "heartflow.status"  # candidate | champion | rejected | retired
TAG_HOLDOUT_ACCURACY = "heartflow.holdout_accuracy"
TAG_REASON = "heartflow.reason"
TAG_PROMOTED_AT = "heartflow.promoted_at"
TAG_RETIRED_AT = "heartflow.retired_at"
TAG_REJECTED_AT = "heartflow.rejected_at"
TAG_METRIC = "heartflow.metric"  # the model's chosen metric, when its run recorded one (else accuracy)
TAG_CHAMPION_SCORES = "heartflow.champion_scores"  # JSON list of [time, accuracy, rows], newest last
# What a run read for it (backends.domain.sources.DataSource.tags).
TAG_SOURCE_URI = "heartflow.source_uri"
TAG_SOURCE_RESOLVED = "heartflow.source_resolved"
TAG_SOURCE_VERSION = "heartflow.source_version"
TAG_SOURCE_SHA = "heartflow.source_sha256"
TAG_SOURCE_ROWS = "heartflow.source_rows"
TAG_SOURCE_PARTS = "heartflow.source_parts"
TAG_SOURCE_PARTS_COUNT = "heartflow.source_parts_count"
# What the run measured against the champion's data (tasks.watch), on the new version.
TAG_DRIFT_PSI = "heartflow.drift.psi."  # + column name: that column's PSI
TAG_DRIFT_DRIFTED = "heartflow.drift.drifted"  # the drifted columns, comma-separated, or "none"
SOURCE_TAGS = {"source_uri": TAG_SOURCE_URI, "source_version": TAG_SOURCE_VERSION, "source_sha256": TAG_SOURCE_SHA,
               "source_rows": TAG_SOURCE_ROWS}

# Read only: where records written before this module kept the JSON copy of the hyperparameters.
OLD_TAG_PARAMS_JSON = "heartflow.params_json"


def drift_tags(psi: Mapping[str, float], drifted: Sequence[str]) -> dict[str, str]:
    """The drift measured before training, as tags of the version it trained."""
    tags = {f"{TAG_DRIFT_PSI}{column}": f"{value:.4f}" for column, value in psi.items()}
    tags[TAG_DRIFT_DRIFTED] = ",".join(drifted) or "none"
    return tags


def holdout_tag(metric: str) -> str:
    """The tag of a version's holdout figure for ``metric`` (accuracy keeps its historical name)."""
    return f"heartflow.holdout_{metric}"


@dataclass(frozen=True)
class Lineage:
    """What a version's tags say about where it came from (empty or None where a record does not say)."""

    sweep_id: str
    trial_run: str
    trial_number: int | None
    data_sha256: str
    data_uri: str
    metric_name: str
    metric_value: float
    params: Mapping[str, Any] | None
    code_version: str
    split: str
    status: str


def lineage_tags(sweep: SweepResult, code_version: str) -> dict[str, str]:
    """The tags a new version from ``sweep.best`` is registered with, on every backend."""
    best = sweep.best
    tags = {
        TAG_SWEEP: sweep.sweep_id, TAG_TRIAL: best.run_id, TAG_TRIAL_NUMBER: str(best.number),
        TAG_DATA_SHA: sweep.data.sha256, TAG_DATA_URI: sweep.data.uri,
        TAG_METRIC_NAME: sweep.primary_metric, TAG_METRIC_VALUE: repr(float(best.metrics[sweep.primary_metric])),
        TAG_PARAMS: json.dumps(dict(best.params), sort_keys=True, default=str),
        TAG_CODE_VERSION: code_version, TAG_STATUS: "candidate",
    }
    if sweep.data.split:
        tags[TAG_SPLIT] = sweep.data.split
    return tags


def _typed(text: str) -> Any:
    """One value of an old ``k=v`` record as the trial had it: int, float, None, bool, else the text."""
    literals = {"None": None, "True": True, "False": False}
    if text in literals:
        return literals[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _key_values(text: str) -> dict[str, Any] | None:
    """An old ``k=v, k=v`` record (keys are identifiers; a value may hold ', ' only if the next part has no '=')."""
    params: dict[str, Any] = {}
    last: str | None = None
    for part in text.split(", "):
        key, sep, value = part.partition("=")
        if sep and key.isidentifier():
            params[key], last = _typed(value), key
        elif last is not None:  # a string value that held ", ": glue it back
            params[last] = f"{params[last]}, {part}"
        else:
            return None
    return params or None


def params_of(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The hyperparameters a version was trained with, or None when its record has none: the JSON of
    ``heartflow.params``, else an old record's JSON copy, else an old record's ``k=v`` text."""
    for tag in (TAG_PARAMS, OLD_TAG_PARAMS_JSON):
        try:
            value = json.loads(tags.get(tag, ""))
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return _key_values(tags.get(TAG_PARAMS, ""))


def _float(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def read_lineage(tags: Mapping[str, str], run_id: str = "") -> Lineage:
    """A version's lineage from its tags; ``run_id`` (the registry's own link to the run) when no tag names it."""
    number = tags.get(TAG_TRIAL_NUMBER, "")
    return Lineage(
        sweep_id=tags.get(TAG_SWEEP, ""), trial_run=tags.get(TAG_TRIAL, "") or run_id,
        trial_number=int(number) if number.isdigit() else None,
        data_sha256=tags.get(TAG_DATA_SHA, ""), data_uri=tags.get(TAG_DATA_URI, ""),
        metric_name=tags.get(TAG_METRIC_NAME, ""), metric_value=_float(tags.get(TAG_METRIC_VALUE)),
        params=params_of(tags), code_version=tags.get(TAG_CODE_VERSION, ""), split=tags.get(TAG_SPLIT, ""),
        status=tags.get(TAG_STATUS, ""),
    )


def model_version_of(name: str, version: str, uri: str, tags: Mapping[str, Any], run_id: str = "") -> ModelVersion:
    """A registry's record as a ModelVersion, on every backend."""
    text = {str(k): str(v) for k, v in tags.items()}
    lineage = read_lineage(text, run_id)
    return ModelVersion(
        name=name, version=str(version), source_run_id=lineage.trial_run, sweep_id=lineage.sweep_id,
        metric_name=lineage.metric_name, metric_value=lineage.metric_value, data_sha256=lineage.data_sha256,
        uri=uri, tags=text,
    )


def recorded_holdout_accuracy(model: ModelVersion | None) -> float | None:
    """The holdout accuracy tagged on ``model`` when it was last evaluated for a gate, if any."""
    if model is None or TAG_HOLDOUT_ACCURACY not in model.tags:
        return None
    return float(model.tags[TAG_HOLDOUT_ACCURACY])


def lineage_tag_names() -> tuple[str, ...]:
    """The tags every registered version carries from its registration (a plan lists them)."""
    return (TAG_SWEEP, TAG_TRIAL, TAG_TRIAL_NUMBER, TAG_DATA_SHA, TAG_DATA_URI, TAG_METRIC_NAME, TAG_METRIC_VALUE,
            TAG_PARAMS, TAG_CODE_VERSION, TAG_STATUS)
