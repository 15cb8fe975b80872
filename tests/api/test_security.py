"""The [security] keys at run time: tokens, rate limits and CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from caxton.config import Secret
from caxton.errors import SecurityError
from caxton.security import TokenIssuer
from tests.api.clients import api_client

SECRET = "a-test-secret-of-some-length"


async def _client(tmp_path: Path, **security: Any) -> AsyncIterator[TestClient[Any, Any]]:
    async with api_client(tmp_path, **security) as client:
        yield client


@pytest.fixture
async def auth_client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async for client in _client(tmp_path, auth_enabled=True, jwt_secret=Secret(SECRET)):
        yield client


async def test_auth_needs_a_valid_token(auth_client: TestClient[Any, Any]) -> None:
    assert (await auth_client.get("/health")).status == 200
    assert (await auth_client.get("/ready")).status == 200
    resp = await auth_client.get("/api/v1/agents")
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert "caxton token create" in body["error"]["message"]

    token = TokenIssuer(SECRET, default_expiry=60).create("tester")
    ok = await auth_client.get("/api/v1/agents", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200
    by_key = await auth_client.get("/api/v1/agents", headers={"X-API-Key": token})
    assert by_key.status == 200

    forged = TokenIssuer("another-secret-entirely", default_expiry=60).create("x")
    bad = await auth_client.get("/api/v1/agents", headers={"Authorization": f"Bearer {forged}"})
    assert bad.status == 401
    expired = TokenIssuer(SECRET, default_expiry=60).create("x", now=1000.0)
    old = await auth_client.get("/api/v1/agents", headers={"X-API-Key": expired})
    assert old.status == 401
    assert "expired" in (await old.json())["error"]["message"]


async def test_rate_limit_answers_429_after_the_burst(tmp_path: Path) -> None:
    async for client in _client(
        tmp_path, rate_limit_enabled=True, rate_limit_per_second=0.5, rate_limit_burst=3
    ):
        statuses = [(await client.get("/api/v1/agents")).status for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        resp = await client.get("/api/v1/agents")
        assert (await resp.json())["error"]["code"] == "RATE_LIMITED"
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await client.get("/health")).status == 200


async def test_cors_preflight_and_headers(tmp_path: Path) -> None:
    async for client in _client(
        tmp_path,
        cors_enabled=True,
        cors_origins=("https://dashboard.example.com",),
        cors_methods=("GET", "POST"),
    ):
        pre = await client.options(
            "/api/v1/agents",
            headers={
                "Origin": "https://dashboard.example.com",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert pre.status == 204
        assert pre.headers["Access-Control-Allow-Origin"] == "https://dashboard.example.com"
        assert pre.headers["Access-Control-Allow-Methods"] == "GET, POST"
        other = await client.options(
            "/api/v1/agents",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert other.status == 403
        plain = await client.get("/health", headers={"Origin": "https://dashboard.example.com"})
        assert plain.headers["Access-Control-Allow-Origin"] == "https://dashboard.example.com"
        none = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in none.headers


def test_tokens_allow_a_small_clock_skew() -> None:
    """A token minted on a machine whose clock is a few seconds ahead is accepted; one whose
    ``iat`` or ``nbf`` is further in the future than `CLOCK_SKEW_LEEWAY` is not."""
    import time
    import warnings

    import jwt

    from caxton.security.tokens import CLOCK_SKEW_LEEWAY

    def encode(claims: dict[str, Any]) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the test secret is under 32 bytes
            return jwt.encode(claims, SECRET)

    issuer = TokenIssuer(SECRET, default_expiry=600)
    ahead = time.time() + 20
    assert CLOCK_SKEW_LEEWAY == 30.0
    assert issuer.verify(issuer.create("laptop", now=ahead)).subject == "laptop"
    payload = {"iss": "caxton", "sub": "laptop", "iat": int(ahead), "exp": int(ahead) + 600}
    assert issuer.verify(encode({**payload, "nbf": int(ahead)})).subject == "laptop"
    # A token that expired a few seconds ago on this clock is still fine, for the same reason.
    late = time.time() - 600 - 10
    assert issuer.verify(issuer.create("slow", now=late)).subject == "slow"

    far = time.time() + 120
    with pytest.raises(SecurityError, match="not yet valid"):
        issuer.verify(issuer.create("future", now=far))
    with pytest.raises(SecurityError, match="not yet valid"):
        issuer.verify(encode({**payload, "nbf": int(far)}))


def test_serve_and_config_check_refuse_the_same_secrets() -> None:
    from caxton.security.tokens import MIN_SECRET_CHARS, secret_problem

    assert secret_problem("x" * MIN_SECRET_CHARS) is None
    problem = secret_problem("x" * (MIN_SECRET_CHARS - 1))
    assert problem is not None
    with pytest.raises(SecurityError) as info:
        TokenIssuer("x" * (MIN_SECRET_CHARS - 1), default_expiry=60)
    assert info.value.message == problem


async def test_a_browser_websocket_offers_its_token_as_a_subprotocol(
    auth_client: TestClient[Any, Any],
) -> None:
    token = TokenIssuer(SECRET, default_expiry=60).create("browser")
    async with auth_client.ws_connect(
        "/api/v1/events", protocols=("caxton.events", f"caxton.token.{token}")
    ) as ws:
        assert ws.protocol == "caxton.events"
        assert (await ws.receive_json())["type"] == "subscribed"
    forged = TokenIssuer("another-secret-entirely", default_expiry=60).create("x")
    for protocols in [("caxton.events",), ("caxton.events", f"caxton.token.{forged}")]:
        resp = await auth_client.get(
            "/api/v1/events",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol": ", ".join(protocols),
            },
        )
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "UNAUTHORIZED"


async def test_the_dashboards_files_need_no_token_and_open_no_way_around_it(
    auth_client: TestClient[Any, Any],
) -> None:
    page = await auth_client.get("/ui/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert (await auth_client.get("/ui/app.js")).status == 200
    for sneaky in (
        "/ui/../api/v1/agents",
        "/ui/%2E%2E/api/v1/agents",
        "/ui/..%2Fapi%2Fv1%2Fagents",
        "/ui//api/v1/agents",
        "/uiapi/v1/agents",
    ):
        resp = await auth_client.get(sneaky)
        body = await resp.text()
        assert resp.status in (401, 404), (sneaky, resp.status, body)
        assert '"agents"' not in body, sneaky
