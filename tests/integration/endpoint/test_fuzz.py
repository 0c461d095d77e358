"""Generated bodies thrown at the running host: never a 5xx, and it keeps serving."""

from __future__ import annotations

import json

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.endpoint.conftest import RECORD, RunningEndpoint

FEATURES = list(RECORD)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
# records that are nearly right: every feature, some dropped, some replaced by any JSON value, some extras
near_records = st.fixed_dictionaries(
    {name: st.one_of(st.integers(-5, 400), st.floats(-1e6, 1e6), json_values) for name in FEATURES}
).flatmap(
    lambda record: st.sets(st.sampled_from(FEATURES), max_size=3).map(
        lambda dropped: {k: v for k, v in record.items() if k not in dropped}
    )
)
bodies = st.one_of(
    st.builds(lambda rows: {"data": rows}, st.lists(near_records, min_size=0, max_size=4)),
    st.builds(lambda rows, flag: {"data": rows, "return_probabilities": flag},
              st.lists(near_records, min_size=1, max_size=2), json_values),
    json_values,
    st.dictionaries(st.sampled_from(["data", "rows", "return_probabilities"]), json_values, max_size=2),
)
raw_bytes = st.one_of(
    st.binary(max_size=200),
    bodies.map(lambda b: json.dumps(b).encode()).flatmap(
        lambda encoded: st.integers(0, len(encoded)).map(lambda cut: encoded[:cut])  # truncated JSON
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_generated_json_bodies_never_5xx(endpoint: RunningEndpoint, body: object) -> None:
    response = endpoint.post(data=json.dumps(body).encode())
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert set(response.json()) == {"error"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=raw_bytes)
def test_generated_bytes_never_5xx(endpoint: RunningEndpoint, raw: bytes) -> None:
    response = endpoint.post(data=raw)
    assert response.status_code < 500, response.text


def test_host_still_serves_after_fuzzing(endpoint: RunningEndpoint) -> None:
    assert requests.get(f"{endpoint.base}/health", timeout=5).status_code == 200
    assert endpoint.post({"data": [RECORD]}).status_code == 200


def test_schemathesis_against_openapi(endpoint: RunningEndpoint) -> None:
    """Requests generated from the served OpenAPI document (valid and invalid): no 5xx."""
    import schemathesis
    from hypothesis import given as h_given

    schema = schemathesis.openapi.from_url(f"{endpoint.base}/openapi.json")
    operation = schema["/score"]["POST"]
    strategy = operation.as_strategy()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @h_given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        headers = dict(case.headers or {})
        headers["Authorization"] = f"Bearer {endpoint.key}"
        headers.pop("azureml-model-deployment", None)
        response = case.call(base_url=endpoint.base, headers=headers, timeout=10)
        assert response.status_code < 500, response.text

    check()
