"""``[security] trusted_proxies``: the client behind nginx or HAProxy, for rate limits and logs."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from caxton.api.forwarded import client_address, parse_networks
from caxton.config import load_config
from caxton.errors import ConfigError

from .test_security import _client

PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


def _headers(**fields: str) -> CIMultiDict[str]:
    return CIMultiDict({name.replace("_", "-"): value for name, value in fields.items()})


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # nginx on the same host: $proxy_add_x_forwarded_for appends the address it saw
        ("127.0.0.1", {"X_Forwarded_For": "198.51.100.7"}, "198.51.100.7"),
        # a client's own X-Forwarded-For is to the left of what the proxy appended: not believed
        ("127.0.0.1", {"X_Forwarded_For": "203.0.113.9, 198.51.100.7"}, "198.51.100.7"),
        # two trusted hops (HAProxy in 10/8, then nginx on loopback): the first untrusted one
        ("127.0.0.1", {"X_Forwarded_For": "198.51.100.7, 10.0.1.10"}, "198.51.100.7"),
        # every hop trusted: the left-most
        ("127.0.0.1", {"X_Forwarded_For": "10.0.0.5, 10.0.1.10"}, "10.0.0.5"),
        # a malformed entry ends the walk at the last good address
        ("127.0.0.1", {"X_Forwarded_For": "not-an-ip, 10.0.1.10"}, "10.0.1.10"),
        # ports and brackets as some proxies write them
        ("127.0.0.1", {"X_Forwarded_For": "198.51.100.7:5123"}, "198.51.100.7"),
        ("::1", {"X_Forwarded_For": "[2001:db8::5]:443"}, "2001:db8::5"),
        # no X-Forwarded-For: X-Real-IP
        ("127.0.0.1", {"X_Real_IP": "198.51.100.8"}, "198.51.100.8"),
        ("127.0.0.1", {"X_Real_IP": "garbage"}, "127.0.0.1"),
        # a peer that is not a trusted proxy is the client, whatever it claims
        ("198.51.100.66", {"X_Forwarded_For": "1.2.3.4", "X_Real_IP": "1.2.3.4"}, "198.51.100.66"),
        # a trusted proxy that says nothing
        ("10.0.1.10", {}, "10.0.1.10"),
        # an IPv4-mapped IPv6 peer from a dual-stack listener is matched as IPv4
        ("::ffff:127.0.0.1", {"X_Forwarded_For": "198.51.100.7"}, "198.51.100.7"),
    ],
)
def test_client_address(peer: str, headers: dict[str, str], client: str) -> None:
    assert client_address(peer, _headers(**headers), PROXIES) == client


def test_several_x_forwarded_for_headers_read_as_one_list() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add("X-Forwarded-For", "203.0.113.9")
    headers.add("X-Forwarded-For", "198.51.100.7")
    assert client_address("127.0.0.1", headers, PROXIES) == "198.51.100.7"


_ipv4 = st.ip_addresses(v=4).map(str)


def _is_proxy(address: str) -> bool:
    return any(ipaddress.ip_address(address) in net for net in PROXIES)


@given(peer=_ipv4, chain=st.lists(_ipv4, max_size=5))
def test_only_a_trusted_peer_is_believed_and_only_up_to_the_first_untrusted_hop(
    peer: str, chain: list[str]
) -> None:
    got = client_address(peer, _headers(X_Forwarded_For=", ".join(chain)), PROXIES)
    if not _is_proxy(peer) or not chain:
        assert got == peer
        return
    assert got in chain
    # Nothing left of the right-most untrusted address is ever chosen.
    untrusted = [
        i for i, a in enumerate(chain) if not any(ipaddress.ip_address(a) in n for n in PROXIES)
    ]
    if untrusted:
        assert got == chain[untrusted[-1]]


async def test_rate_limits_count_each_client_behind_a_trusted_proxy(tmp_path: Path) -> None:
    async for client in _client(
        tmp_path,
        rate_limit_enabled=True,
        rate_limit_per_second=0.1,
        rate_limit_burst=2,
        trusted_proxies=("127.0.0.1",),
    ):
        alice = {"X-Forwarded-For": "198.51.100.1"}
        bob = {"X-Forwarded-For": "198.51.100.2"}
        statuses = [(await client.get("/api/v1/agents", headers=alice)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        # Bob, behind the same proxy, has his own bucket.
        assert (await client.get("/api/v1/agents", headers=bob)).status == 200
        # Alice cannot escape hers by prepending an address of her choosing.
        spoof = {"X-Forwarded-For": "203.0.113.50, 198.51.100.1"}
        assert (await client.get("/api/v1/agents", headers=spoof)).status == 429


async def test_without_trusted_proxies_forwarded_headers_change_nothing(tmp_path: Path) -> None:
    async for client in _client(
        tmp_path, rate_limit_enabled=True, rate_limit_per_second=0.1, rate_limit_burst=2
    ):
        statuses = [
            (
                await client.get("/api/v1/agents", headers={"X-Forwarded-For": f"198.51.100.{n}"})
            ).status
            for n in range(3)
        ]
        assert statuses == [200, 200, 429]  # one peer, one bucket


async def test_the_access_log_names_the_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="caxton.http")
    async for client in _client(tmp_path, trusted_proxies=("127.0.0.1",)):
        resp = await client.get("/api/v1/agents", headers={"X-Real-IP": "198.51.100.9"})
        assert resp.status == 200
    [record] = [r for r in caplog.records if getattr(r, "path", None) == "/api/v1/agents"]
    assert getattr(record, "remote", None) == "198.51.100.9"  # set by the log call's `extra`


def test_a_bad_trusted_proxy_names_the_key_and_the_item(tmp_path: Path) -> None:
    path = tmp_path / "caxton.toml"
    path.write_text('[security]\ntrusted_proxies = ["10.0.0.0/8", "nginx.local"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "security.trusted_proxies" in message
    assert "item 2" in message
    assert "nginx.local" in message
    path.write_text('[security]\ntrusted_proxies = ["10.0.1.7/24", "::1"]\n')
    assert load_config(path, environ={}).security.trusted_proxies == ("10.0.1.0/24", "::1/128")
