"""``GET /api/v1/stats``: the node's counters, read twice to make rates, on a real node with a
real wasm agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from caxton.api import stats
from caxton.config import Secret
from caxton.security import TokenIssuer
from tests.api.clients import api_client
from tests.support import EXAMPLES, eventually


async def test_stats_count_handled_messages_handling_time_and_dead_letters(
    tmp_path: Path,
) -> None:
    async with api_client(tmp_path) as client:
        before = await (await client.get("/api/v1/stats")).json()
        assert before["messages"] == {"sent": 0, "handled": 0, "failed": 0}
        assert before["processing"]["count"] == 0
        assert set(before["dead_letters"].values()) == {0}
        assert before["started_at"] is not None

        wasm = (EXAMPLES / "echo.wasm").read_bytes()
        resp = await client.post(
            "/api/v1/agents?name=echo", data=wasm, headers={"Content-Type": "application/wasm"}
        )
        assert resp.status == 201
        for i in range(3):
            reply = await client.post(
                "/api/v1/messages?wait=5s",
                json={"receiver": "echo", "performative": "request", "content": i},
            )
            assert reply.status == 200
        lost = await client.post(
            "/api/v1/messages", json={"receiver": "nobody", "performative": "inform"}
        )
        assert lost.status == 202

        async def counted() -> dict[str, Any] | None:
            body: dict[str, Any] = await (await client.get("/api/v1/stats")).json()
            return body if body["dead_letters"]["unknown_receiver"] == 1 else None

        after = await eventually(counted, what="the dead letter was counted")
        messages, processing, agents = after["messages"], after["processing"], after["agents"]
        assert messages["handled"] == 3
        assert messages["failed"] == 0
        assert messages["sent"] >= 4  # the client's 4 and echo's 3 replies
        assert processing["count"] == 3
        assert processing["seconds_sum"] > 0
        assert sum(processing["buckets"]) == 3
        assert len(processing["buckets"]) == len(processing["bounds"]) + 1
        assert agents["total"] == 1


async def test_stats_need_a_token_when_authentication_is_on(tmp_path: Path) -> None:
    secret = "a-test-secret-of-some-length"
    async with api_client(tmp_path, auth_enabled=True, jwt_secret=Secret(secret)) as client:
        assert (await client.get("/api/v1/stats")).status == 401
        token = TokenIssuer(secret, default_expiry=60).create("tester")
        ok = await client.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"})
        assert ok.status == 200


async def test_stats_keep_the_last_minutes_of_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats, "SAMPLE_SECONDS", 0.05)
    async with api_client(tmp_path) as client:
        wasm = (EXAMPLES / "echo.wasm").read_bytes()
        resp = await client.post(
            "/api/v1/agents?name=echo", data=wasm, headers={"Content-Type": "application/wasm"}
        )
        assert resp.status == 201
        for i in range(2):
            reply = await client.post(
                "/api/v1/messages?wait=5s",
                json={"receiver": "echo", "performative": "request", "content": i},
            )
            assert reply.status == 200

        async def sampled() -> list[dict[str, Any]] | None:
            body = await (await client.get("/api/v1/stats")).json()
            history: list[dict[str, Any]] = body["history"]
            return history if history and history[-1]["handled"] == 2 else None

        history = await eventually(sampled, what="a sample counted both messages")
        assert len(history) <= stats.HISTORY_SAMPLES
        assert [h["handled"] for h in history] == sorted(h["handled"] for h in history)
        assert history[-1]["sent"] >= 4
        assert history[-1]["seconds_sum"] > 0
        times = [h["time"] for h in history]
        assert times == sorted(times)
