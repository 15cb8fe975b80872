"""The client's address behind a reverse proxy (``[security] trusted_proxies``).

Behind nginx or HAProxy every request comes from the proxy's address, so per-client rate limits
would put all clients in one bucket and the access log would name the proxy. When the TCP peer
is one of ``trusted_proxies``, the client is read from the headers the proxy sets instead:

* ``X-Forwarded-For`` (``a, b, c``: each proxy appends the address it got the request from):
  the right-most address that is not a trusted proxy. Entries to its left were written by the
  client or by untrusted hops and are not believed. If every entry is a trusted proxy, the
  left-most one. A malformed entry ends the walk (the last good one counts).
* else ``X-Real-IP`` (nginx: ``proxy_set_header X-Real-IP $remote_addr``).

A peer that is not trusted is the client, whatever its headers say. The middleware replaces
``request.remote`` for everything after it (rate limits, the access log).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from multidict import MultiMapping

__all__ = ["client_address", "forwarded_middleware", "parse_networks", "trusted_peer"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.0/8"``, ``"127.0.0.1"`` or ``"::1"`` as networks (a bare address is a /32 or
    /128)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.7:5000"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # "::ffff:127.0.0.1" from a dual stack
    return any(address in net or (mapped is not None and mapped in net) for net in networks)


def trusted_peer(peername: object, networks: tuple[Network, ...]) -> bool:
    """True when a socket's ``peername`` (``(host, port, ...)``) is one of the trusted proxies."""
    if not isinstance(peername, tuple) or not peername:
        return False
    address = _address(str(peername[0]))
    return address is not None and _trusted(address, networks)


def client_address(
    peer: str | None, headers: MultiMapping[str], networks: tuple[Network, ...]
) -> str | None:
    """The client's address for a request from ``peer`` with ``headers`` (see the module)."""
    peer_address = _address(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, networks):
        return peer
    forwarded = ",".join(headers.getall("X-Forwarded-For", ()))
    if forwarded:
        client = peer_address
        for entry in reversed(forwarded.split(",")):
            address = _address(entry)
            if address is None:
                break
            client = address
            if not _trusted(address, networks):
                break
        return str(client)
    real = _address(headers.get("X-Real-IP", ""))
    return str(real) if real is not None else peer


def forwarded_middleware(trusted: Iterable[str]) -> Any:
    """A middleware that sets ``request.remote`` to the client behind ``trusted`` proxies."""
    networks = parse_networks(trusted)

    @web.middleware
    async def forwarded(request: web.Request, handler: Any) -> web.StreamResponse:
        client = client_address(request.remote, request.headers, networks)
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
        response: web.StreamResponse = await handler(request)
        return response

    return forwarded
