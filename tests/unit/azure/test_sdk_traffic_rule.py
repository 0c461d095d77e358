"""The fakes' traffic rule is the SDK's: the real ``MLClient.online_endpoints.begin_create_or_update`` is called
with an endpoint whose traffic maps hold mixed-case names and zero shares, over an HTTP transport of this test's
(requests' public adapter interface: no network), and what it leaves in the caller's entity and what it puts on
the wire are compared with ``fakes.strip_zero_traffic``. A new SDK that changes the rule fails here, not in Azure."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
import urllib3
from azure.ai.ml import MLClient
from azure.ai.ml.entities import ManagedOnlineEndpoint
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter

from tests.unit.azure.fakes import strip_zero_traffic

WORKSPACE = {
    "name": "ws", "location": "westeurope",
    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
    "properties": {"mlFlowTrackingUri": "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/"
                                        "rg/providers/Microsoft.MachineLearningServices/workspaces/ws"},
}


class _Sent(Exception):
    """The endpoint PUT reached the wire: its body, and nothing further is needed."""


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 2**31)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("token", 2**31)


class _Service(BaseAdapter):
    """Answers the workspace GET (the SDK reads its location) and stops at the endpoint PUT with its body."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.method == "PUT":
            raise _Sent(request.body)
        response = requests.Response()
        response.status_code, response.url, response.request = 200, str(request.url), request
        response.headers["content-type"] = "application/json"
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(json.dumps(WORKSPACE).encode()), status=200,
                                            headers={"content-type": "application/json"}, preload_content=False)
        return response

    def close(self) -> None:
        pass


def test_the_sdk_sends_traffic_as_the_fakes_strip_it() -> None:
    session = requests.Session()
    session.mount("https://", _Service())
    client = MLClient(_Credential(), "00000000-0000-0000-0000-000000000000", "rg", "ws",  # type: ignore[arg-type]
                      transport=RequestsTransport(session=session))
    traffic, mirror = {"BLUE": 100, "green": 0, "Red": 0}, {"Green": 10, "blue": 0}
    endpoint = ManagedOnlineEndpoint(name="e-1", traffic=dict(traffic), mirror_traffic=dict(mirror))
    with pytest.raises(_Sent) as sent:
        client.online_endpoints.begin_create_or_update(endpoint)
    body = json.loads(sent.value.args[0])["properties"]
    assert strip_zero_traffic(traffic) == {"blue": 100} and strip_zero_traffic(mirror) == {"green": 10}
    assert endpoint.traffic == body["traffic"] == strip_zero_traffic(traffic)  # the caller's entity, in place
    assert endpoint.mirror_traffic == body["mirrorTraffic"] == strip_zero_traffic(mirror)
