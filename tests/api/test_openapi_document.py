"""The OpenAPI document lists what the node answers.

schemathesis (test_schemathesis.py) holds the node to the document; these pin the parts a
client reads from it directly: the statuses each layer adds, the security schemes when
authentication is on, typed numbers, and the 426 of the WebSocket route when it is called
without an upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from caxton.config import Secret
from tests.api.clients import api_client

Client = TestClient[Any, Any]


async def _document(tmp_path: Path, **security: Any) -> AsyncIterator[tuple[Client, Any]]:
    async with api_client(tmp_path, **security) as client:
        resp = await client.get("/api/v1/openapi.json")
        assert resp.status == 200
        yield client, await resp.json()


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[tuple[Client, Any]]:
    async for pair in _document(tmp_path):
        yield pair


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Client, Any]]:
    async for pair in _document(
        tmp_path,
        auth_enabled=True,
        jwt_secret=Secret("a-test-secret-of-some-length"),
        rate_limit_enabled=True,
    ):
        yield pair


def statuses(doc: Any, method: str, path: str) -> set[int]:
    return {int(s) for s in doc["paths"][path][method]["responses"]}


async def test_every_status_a_layer_adds_is_listed(plain: tuple[Client, Any]) -> None:
    _, doc = plain
    # Any parameter can be malformed: an empty ?messages= is a 400 that must be listed.
    assert {200, 400, 404, 503} <= statuses(doc, "get", "/api/v1/agents/{name}/debug")
    assert {202, 400, 404, 503} <= statuses(doc, "post", "/api/v1/dead-letters/{id}/redrive")
    assert {201, 400, 413, 415, 503} <= statuses(doc, "post", "/api/v1/agents")
    assert 426 in statuses(doc, "get", "/api/v1/events")
    assert statuses(doc, "get", "/health") == {200}
    assert 401 not in statuses(doc, "get", "/api/v1/agents")
    assert "securitySchemes" not in doc["components"]
    for op in (op for item in doc["paths"].values() for op in item.values()):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema["required"] == ["error"]


async def test_numbers_are_typed_integers(plain: tuple[Client, Any]) -> None:
    _, doc = plain
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/agents"]["get"]["parameters"]}
    assert params["limit"]["type"] == "integer"
    assert params["limit"]["minimum"] == 1
    assert params["offset"] == {"type": "integer", "minimum": 0, "maximum": 2**31}


async def test_auth_and_rate_limits_are_listed_when_on(guarded: tuple[Client, Any]) -> None:
    _, doc = guarded
    assert {401, 429, 503} <= statuses(doc, "get", "/api/v1/agents")
    assert doc["paths"]["/api/v1/agents"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert 401 not in statuses(doc, "get", "/health")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}


async def test_the_events_route_without_an_upgrade_is_426(plain: tuple[Client, Any]) -> None:
    client, _ = plain
    resp = await client.get("/api/v1/events")
    assert resp.status == 426
    assert (await resp.json())["error"]["code"] == "INVALID_REQUEST"
