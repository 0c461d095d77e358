"""What the Azure unit tests build on the control-plane fakes: a backend with no waits, a run's data and
sweep spec, an evaluation report. Test modules import these, never each other."""

from __future__ import annotations

from backends.azure import AzureBackend
from backends.azure.naming import workspace_endpoint_name
from backends.azure.resilience import RetryPolicy
from backends.azure.settings import AzureSettings
from backends.base import DataRef, EvalReport
from backends.domain.spec import SweepSpec
from tests.unit.azure.fakes import FakeAzure

SHA = "5e" * 32
DATA = DataRef(uri=f"https://heartacct.blob.core.windows.net/data4ml/heartflow/train/{SHA}.csv", sha256=SHA, rows=272)
SPEC = SweepSpec(sampling="grid", max_total_trials=3, max_concurrent_trials=2)
# The tutorial's endpoint name is replaced by the workspace's own (endpoint names are unique per region).
ENDPOINT = workspace_endpoint_name("00000000-0000-0000-0000-000000000000", "rg-heartflow", "ws-heartflow")


def make(settings: AzureSettings, fake: FakeAzure) -> AzureBackend:
    return AzureBackend(settings, ml_client=fake, blob_service=object(), trial_reader=fake.trial_reader,
                        retry=RetryPolicy(attempts=3, initial_s=0, max_s=0, sleep=lambda s: None), sleep=lambda s: None)


def report(accuracy: float, deployment: str = "blue") -> EvalReport:
    return EvalReport(endpoint=ENDPOINT, deployment=deployment, model_version="1", rows=31, labels=(1, 0),
                      predictions=(1, 0), accuracy=accuracy, report_text="", report={}, confusion_matrix=((1, 0), (0, 1)),
                      requests=1, latency_ms_p50=5.0)
