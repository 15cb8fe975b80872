"""Malformed input is a 4xx in the JSON error envelope, never a 500.

One test per root cause schemathesis found: non-ASCII digits and huge numbers in ids and
numeric parameters, multipart bodies aiohttp cannot parse, an unknown JSON charset, JSON
nested a thousand deep, and names that end in a newline. A real node, real wasm, a real socket.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from caxton.api.json_body import MAX_JSON_DEPTH
from caxton.config import NetworkingConfig
from tests.api.clients import api_client
from tests.support import example, fast_runtime

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    networking = dataclasses.replace(NetworkingConfig(), request_timeout=10.0)
    async with api_client(tmp_path, runtime=fast_runtime(), networking=networking) as test_client:
        yield test_client


async def envelope(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The error of a response that must be ``status`` in the JSON error envelope."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    error: dict[str, Any] = json.loads(text)["error"]
    assert error["code"] == code, text
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    return error


def raw(client: Client, path_and_query: str) -> URL:
    """A URL sent exactly as written (percent-escapes and all)."""
    return URL(str(client.make_url("/")).rstrip("/") + path_and_query, encoded=True)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("ident", ["%C2%B9", "%D9%A3", "%EF%BC%91", "-1", "1_0", "+1", "0x1"])
async def test_redrive_ids_are_ascii_digits(client: Client, ident: str) -> None:
    resp = await client.session.post(raw(client, f"/api/v1/dead-letters/{ident}/redrive"))
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert error["details"]["field"] == "id"


@pytest.mark.parametrize("ident", ["99999999999999999999", "9223372036854775808", "9" * 5000])
async def test_redrive_ids_beyond_sqlite_are_not_found(client: Client, ident: str) -> None:
    resp = await client.session.post(raw(client, f"/api/v1/dead-letters/{ident}/redrive"))
    await envelope(resp, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "query",
    ["fuel=%C2%B9", "fuel=%D9%A3", "fuel=99999999999999999999", "memory=%D9%A3MB"],
)
async def test_wasm_deploy_settings_take_ascii_numbers(client: Client, query: str) -> None:
    resp = await client.session.post(
        raw(client, f"/api/v1/agents?name=echo&{query}"),
        data=example("echo"),
        headers={"Content-Type": "application/wasm"},
    )
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert error["details"]["field"] in query


@pytest.mark.parametrize("param", ["limit=%D9%A3", "offset=%C2%B9", "limit=", "limit=1_0"])
async def test_query_numbers_are_ascii_digits(client: Client, param: str) -> None:
    resp = await client.session.get(raw(client, f"/api/v1/agents?{param}"))
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert error["details"]["field"] == param.partition("=")[0]


BOUNDARY = "a222103b9b30b1f9e8be6882ecedb1d2"
BAD_MULTIPART = [
    # a part with no headers at all, only junk before the closing boundary
    f"--{BOUNDARY}\r\n[]--{BOUNDARY}--\r\n",
    # a part whose name holds control characters (not a valid header line)
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="\x00ab"\r\n\r\nx\r\n--{BOUNDARY}--\r\n',
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="\x11"\r\n\r\nx\r\n--{BOUNDARY}--\r\n',
]


@pytest.mark.parametrize("body", BAD_MULTIPART)
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/agents"), ("PUT", "/echo")])
async def test_malformed_multipart_is_400(
    client: Client, method: str, path: str, body: str
) -> None:
    await client.post(
        "/api/v1/agents", json={"name": "echo", "wasm": base64.b64encode(example("echo")).decode()}
    )
    url = path if path.startswith("/api") else f"/api/v1/agents{path}"
    resp = await client.request(
        method,
        url,
        data=body.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert "multipart" in error["message"]


@pytest.mark.parametrize("charset", ["bogus", "rot13", "base64"])
async def test_unknown_json_charset_is_415(client: Client, charset: str) -> None:
    resp = await client.post(
        "/api/v1/agents",
        data=b'{"name": "x", "wasm": ""}',
        headers={"Content-Type": f"application/json; charset={charset}"},
    )
    error = await envelope(resp, 415, "INVALID_REQUEST")
    assert charset in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/agents", deep(1000)),
        ("POST", "/api/v1/agents", '{"a":' * 1000 + "1" + "}" * 1000),
        ("PUT", "/api/v1/agents/echo", deep(1000)),
        ("POST", "/api/v1/messages", '{"a":' * 1000 + "1" + "}" * 1000),
        ("POST", "/api/v1/messages", deep(1000)),
        ("POST", "/api/v1/messages", "[" * 5000),
        (
            "POST",
            "/api/v1/messages",
            '{"performative": "inform", "receiver": "echo", "content": ' + deep(1000) + "}",
        ),
        (
            "POST",
            "/api/v1/messages",
            '[{"performative": "inform", "receiver": "echo", "content": ' + deep(1000) + "}]",
        ),
    ],
)
async def test_json_nested_too_deep_is_400(
    client: Client, method: str, path: str, body: str
) -> None:
    resp = await client.request(
        method, path, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert "deep" in error["message"]


async def test_content_nested_within_the_limit_is_delivered_and_readable(client: Client) -> None:
    """The limit leaves room for real content: one level under it is accepted, stored and
    read back; brackets inside strings do not count."""
    content: Any = ["[[[[{{{{" * 200]
    for _ in range(MAX_JSON_DEPTH - 2):  # the message object and the outer list are two
        content = [content]
    body = {"performative": "inform", "receiver": "nobody", "content": content}
    resp = await client.post("/api/v1/messages", json=body)
    assert resp.status == 202, await resp.text()
    conversation = (await resp.json())["conversation_id"]
    resp = await client.get(f"/api/v1/conversations/{conversation}")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"][0]["content"] == content


@pytest.mark.parametrize("name", ["echo\n", "echo\r\n", "\necho", "echo\x00"])
async def test_agent_names_ending_in_a_newline_are_refused(client: Client, name: str) -> None:
    wasm = base64.b64encode(example("echo")).decode()
    assert (await client.post("/api/v1/agents", json={"name": "echo", "wasm": wasm})).status == 201
    resp = await client.post("/api/v1/agents", json={"name": name, "wasm": wasm})
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert error["details"]["field"] == "name"
    resp = await client.session.post(
        raw(client, "/api/v1/agents?name=echo%0A"),
        data=example("echo"),
        headers={"Content-Type": "application/wasm"},
    )
    await envelope(resp, 400, "INVALID_REQUEST")
    listed = await (await client.get("/api/v1/agents")).json()
    assert [agent["name"] for agent in listed["agents"]] == ["echo"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("receiver", "echo\n"),
        ("receiver", ["echo", "echo\n"]),
        ("sender", "client\n"),
        ("reply_by", "2099-01-01T00:00:00Z\n"),
    ],
)
async def test_message_names_ending_in_a_newline_are_refused(
    client: Client, field: str, value: Any
) -> None:
    body: dict[str, Any] = {"performative": "inform", "receiver": "echo", field: value}
    resp = await client.post("/api/v1/messages", json=body)
    error = await envelope(resp, 400, "INVALID_REQUEST")
    assert error["details"]["field"] == field
