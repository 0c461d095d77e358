"""Every backend registers a version with the same lineage tags in the same format (backends.domain.lineage),
and reads them back the same way."""

from __future__ import annotations

import json

from backends.domain.lineage import TAG_PARAMS, lineage_tag_names, read_lineage
from tests.contract.harnesses import Harness


def test_a_registered_version_carries_every_lineage_tag_in_the_one_format(harness: Harness) -> None:
    model = harness.model(0.8125)
    assert set(lineage_tag_names()) <= set(model.tags)
    assert json.loads(model.tags[TAG_PARAMS]) == {"n_estimators": 10 * (int(model.tags["heartflow.trial_number"]) + 1)}
    read = read_lineage(model.tags)
    assert read.metric_value == model.metric_value == 0.8125 and read.trial_run == model.source_run_id
    assert read.status == "candidate" and read.data_sha256 == model.data_sha256 and read.code_version
    again = harness.backend.get_model(model.name, model.version)
    assert again.tags[TAG_PARAMS] == model.tags[TAG_PARAMS] and read_lineage(again.tags) == read
