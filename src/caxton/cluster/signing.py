"""`BusSigner`: every cluster message carries a signature made with ``cluster_secret``.

nats-server checks a route's credentials only on the side that accepts it: a node with no
secret (or another one) that a secured node dials as its seed would otherwise take part in
the cluster, hear its heartbeats and its messages. So each message the node publishes carries
a ``Caxton-Mac`` header, an HMAC-SHA256 of its subject and payload under a key derived from the
secret (a reply's under ``reply:`` and the request's subject), and each message the node takes
is checked: one without a signature, or with another secret's, is dropped (a request goes
unanswered) and the node logs why, at most once per `INTERVAL` for each cause. A node without
a secret signs nothing and drops signed messages: it cannot check them, and they tell it that
its peers use a secret it lacks.

The secret itself is never logged or sent; a signature reveals nothing of it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping

from caxton.clock import SYSTEM_CLOCK, Clock

__all__ = ["HEADER", "INTERVAL", "BusSigner"]

log = logging.getLogger("caxton.cluster")

#: The NATS header that carries the signature.
HEADER = "Caxton-Mac"
#: Seconds during which the same refusal is logged only once.
INTERVAL = 30.0

_HINT = "every node needs the same [coordination] cluster_secret"


class BusSigner:
    """Signs and checks the node's NATS messages (module docstring)."""

    def __init__(self, secret: str | None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._key = (
            None
            if secret is None
            else hashlib.sha256(b"caxton cluster bus\0" + secret.encode()).digest()
        )
        self._clock = clock
        self._logged: dict[str, float] = {}
        #: Messages dropped for a missing or wrong signature, since start.
        self.refused = 0

    def _mac(self, scope: str, payload: bytes) -> str:
        assert self._key is not None
        return hmac.new(self._key, scope.encode() + b"\0" + payload, hashlib.sha256).hexdigest()

    def headers(self, scope: str, payload: bytes) -> dict[str, str] | None:
        """The headers to publish ``payload`` with (None without a secret)."""
        if self._key is None:
            return None
        return {HEADER: self._mac(scope, payload)}

    def accepts(self, scope: str, headers: Mapping[str, str] | None, payload: bytes) -> bool:
        """Whether a message taken on ``scope`` may be handled; logs why not."""
        given = None if headers is None else headers.get(HEADER)
        if self._key is None:
            if given is None:
                return True
            return self._refuse(
                "unexpected",
                f"cluster: a message on {scope} is signed with a cluster_secret and this node "
                f"has none: dropped ({_HINT})",
            )
        if given is None:
            return self._refuse(
                "unsigned",
                f"cluster: a message on {scope} came from a node without cluster_secret: "
                f"dropped ({_HINT})",
            )
        if not hmac.compare_digest(given, self._mac(scope, payload)):
            return self._refuse(
                "wrong",
                f"cluster: a message on {scope} is signed with another cluster_secret: "
                f"dropped ({_HINT})",
            )
        return True

    def _refuse(self, cause: str, line: str) -> bool:
        self.refused += 1
        now = self._clock.monotonic()
        last = self._logged.get(cause)
        if last is None or now - last >= INTERVAL:
            self._logged[cause] = now
            log.error(line)
        return False
