"""The Azure side of a scheduled retrain on the SDK-spec'd fakes: what serves, lineage tags, decay series."""

from __future__ import annotations


from backends.azure.settings import AzureSettings
from backends.azure.watch import TAG_DECAY
from backends.domain.spec import DeploySpec
from tests.unit.azure.fakes import FakeAzure
from tests.unit.azure.builders import DATA, ENDPOINT, SPEC, make, report



def test_serving_names_the_champion_and_none_after_teardown(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    assert backend.serving(ENDPOINT) is None  # no endpoint yet
    model = backend.register(backend.sweep(DATA, SPEC))
    backend.promote(backend.deploy(model, DeploySpec()), model, report(0.9))
    serving = backend.serving(ENDPOINT)
    assert serving is not None and (serving.deployment, serving.model_version) == ("blue", model.version)
    fake.online_deployments.get.assert_called_with(name="blue", endpoint_name=ENDPOINT)
    backend.teardown(ENDPOINT)
    assert backend.serving(ENDPOINT) is None


def test_lineage_tags_and_the_decay_series_live_on_the_model_version(settings: AzureSettings) -> None:
    fake = FakeAzure()
    backend = make(settings, fake)
    model = backend.register(backend.sweep(DATA, SPEC))
    backend.tag_model(model, {"heartflow.source_uri": "az://incoming/heart.csv", "heartflow.source_rows": "700"})
    assert backend.record_champion_score(model, 0.9, 300) == (0.9,)
    assert backend.record_champion_score(model, 0.8125, 280) == (0.9, 0.8125)
    stored = backend.get_model(model.name, model.version).tags
    assert stored["heartflow.source_uri"] == "az://incoming/heart.csv" and stored["heartflow.status"] == "candidate"
    assert '0.8125,280]' in stored[TAG_DECAY]
