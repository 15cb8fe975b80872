"""`RouteDiagnosis`: why a route to another node was refused, in one line an operator reads.

nats-server logs a refused route on every attempt and in its own words (``authentication
error - User "caxton-route"``, ``Route Error 'Authorization Violation'``, ``TLS route handshake
error: ... certificate signed by unknown authority``), and it redials every second. The node's
log gets those lines as they are (logger ``caxton.cluster.nats``); `RouteDiagnosis.observe`
reads each one and, when it is such a refusal, logs one ERROR line on ``caxton.cluster`` that
says what is wrong in Caxton's terms (``cluster: route to 127.0.0.1:7946 refused: wrong
cluster_secret on one side``), at most once per `INTERVAL` for the same cause and peer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from caxton.clock import SYSTEM_CLOCK, Clock

__all__ = ["INTERVAL", "RouteDiagnosis", "explain"]

log = logging.getLogger("caxton.cluster")

#: Seconds during which the same cause with the same peer is explained only once.
INTERVAL = 30.0

_PEER = r"^(?P<peer>\S+) - rid:\d+ - "
_SECRET = (
    "wrong cluster_secret on one side (every node needs the same [coordination] cluster_secret)"
)
_CA = (
    "its certificate is not signed by the CA this node trusts ([networking] tls_ca_path; "
    "every node's certificate must be signed by the same CA)"
)


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    why: str


_RULES = (
    _Rule(
        "secret",
        re.compile(_PEER + r"authentication error"),
        "route from {peer} refused: " + _SECRET,
    ),
    _Rule(
        "secret",
        re.compile(_PEER + r"Route Error 'Authorization Violation'"),
        "route to {peer} refused: " + _SECRET,
    ),
    _Rule(
        "tls-ca",
        re.compile(_PEER + r"TLS route handshake error: .*certificate signed by unknown authority"),
        "route TLS handshake with {peer} failed: " + _CA,
    ),
    _Rule(
        "tls-refused",
        re.compile(_PEER + r"TLS route handshake error: remote error: tls: bad certificate"),
        "route TLS handshake with {peer} failed: the peer refused this node's certificate (it "
        "is not signed by the CA the peer trusts: [networking] tls_ca_path must name the CA "
        "that signs every node's certificate)",
    ),
    _Rule(
        "tls-usage",
        re.compile(_PEER + r"TLS route handshake error: .*incompatible key usage"),
        "route TLS handshake with {peer} failed: a node certificate is used both to accept and "
        "to dial routes, so it must allow server and client authentication (extendedKeyUsage "
        "serverAuth and clientAuth)",
    ),
    _Rule(
        "tls-name",
        re.compile(
            _PEER + r"TLS route handshake error: .*(?:certificate is valid for|doesn't contain any"
            r" IP SANs|not valid for any names)"
        ),
        "route TLS handshake with {peer} failed: the peer's certificate does not name the "
        "address it was dialled on (add the seed names and advertised addresses to its "
        "subjectAltName)",
    ),
    _Rule(
        "tls-mismatch",
        re.compile(
            _PEER + r"(?:.*TLS Required|.*first record does not look like a TLS handshake"
            r"|.*TLS route handshake error: (?:EOF|.*tls: unexpected message))"
        ),
        "route with {peer} failed: [networking] tls_enabled differs between the nodes (both "
        "must use TLS, or neither)",
    ),
    _Rule(
        "tls",
        re.compile(_PEER + r"TLS route handshake error: (?P<detail>.*)$"),
        "route TLS handshake with {peer} failed: {detail}",
    ),
)


def explain(line: str) -> tuple[str, str, str] | None:
    """(kind, peer, explanation) of a nats-server log line that refuses a route, else None."""
    for rule in _RULES:
        match = rule.pattern.search(line)
        if match is None:
            continue
        peer = match["peer"]
        detail = match.groupdict().get("detail") or ""
        why = rule.why.format(peer=peer, detail=detail)
        return rule.kind, peer, f"cluster: {why}"
    return None


class RouteDiagnosis:
    """Explains refused routes from the child's log lines (see the module docstring)."""

    def __init__(
        self, name: str = "", *, clock: Clock = SYSTEM_CLOCK, interval: float = INTERVAL
    ) -> None:
        """`name`: the nats-server's (this node's) name, for the log record."""
        self.name = name
        self._clock = clock
        self._interval = interval
        self._said: dict[tuple[str, str], float] = {}
        #: Refusals seen, by kind (all of them, also those not logged again).
        self.seen: dict[str, int] = {}

    def observe(self, line: str) -> str | None:
        """Read one line of the child; log and return the explanation when one is due."""
        found = explain(line)
        if found is None:
            return None
        kind, peer, text = found
        self.seen[kind] = self.seen.get(kind, 0) + 1
        host = peer.rsplit(":", 1)[0]  # inbound routes come from a new port each time
        key, now = (kind, host), self._clock.monotonic()
        said = self._said.get(key)
        if said is not None and now - said < self._interval:
            return None
        if len(self._said) > 1000:  # many peers: forget the old ones
            self._said.clear()
        self._said[key] = now
        log.error("%s", text, extra={"peer": peer, "cause": kind, "nats_server": self.name})
        return text
