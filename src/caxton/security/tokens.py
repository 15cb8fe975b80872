"""API tokens: JSON Web Tokens signed with ``security.jwt_secret`` (HS256).

A token names its holder (``sub``), when it was issued and when it expires (``jwt_expiry`` by
default). The API accepts it as ``Authorization: Bearer <token>`` or in the header named by
``security.api_key_header`` (``X-API-Key``), so the same token works for clients that can only
set a fixed header. `caxton token create` issues one from the node's configuration.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

from caxton.errors import SecurityError

__all__ = [
    "ALGORITHM",
    "CLOCK_SKEW_LEEWAY",
    "MIN_SECRET_CHARS",
    "Claims",
    "TokenIssuer",
    "secret_problem",
]

ALGORITHM = "HS256"
ISSUER = "caxton"
MIN_RECOMMENDED_BYTES = 32
#: The shortest secret a node accepts (`serve`, `token create` and `config check` all refuse less).
MIN_SECRET_CHARS = 8
#: Seconds of clock skew allowed between the machine that issued a token and this node, for
#: ``iat``, ``nbf`` and ``exp`` (a token minted on a laptop a few seconds ahead still works).
CLOCK_SKEW_LEEWAY = 30.0


def secret_problem(secret: str) -> str | None:
    """Why `secret` cannot sign tokens, or None (the one rule serve and config check share)."""
    if len(secret) < MIN_SECRET_CHARS:
        return f"the JWT secret must be at least {MIN_SECRET_CHARS} characters"
    return None


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    subject: str
    issued_at: float
    expires_at: float


class TokenIssuer:
    """Issues and verifies tokens with one secret."""

    def __init__(self, secret: str, *, default_expiry: float) -> None:
        problem = secret_problem(secret)
        if problem is not None:
            raise SecurityError(problem)
        self._secret = secret
        self.default_expiry = default_expiry

    def create(
        self, subject: str, *, expires_in: float | None = None, now: float | None = None
    ) -> str:
        """A signed token for `subject`, valid for `expires_in` seconds (default: jwt_expiry)."""
        issued = time.time() if now is None else now
        lifetime = self.default_expiry if expires_in is None else expires_in
        payload = {
            "iss": ISSUER,
            "sub": subject,
            "iat": int(issued),
            "exp": int(issued + lifetime),
        }
        import jwt  # here, not at the top: PyJWT pulls in cryptography (~75 ms of startup)

        with warnings.catch_warnings():
            # PyJWT warns about keys under 32 bytes; `weak` reports it once, in our words.
            warnings.simplefilter("ignore")
            return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    @property
    def weak(self) -> bool:
        """True when the secret is shorter than the 32 bytes RFC 7518 recommends for HS256."""
        return len(self._secret.encode()) < MIN_RECOMMENDED_BYTES

    def verify(self, token: str) -> Claims:
        """The token's claims; `SecurityError` (401) saying why it is not acceptable."""
        import jwt

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                payload = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[ALGORITHM],
                    issuer=ISSUER,
                    leeway=CLOCK_SKEW_LEEWAY,
                    options={"require": ["exp", "iat", "sub"]},
                )
        except jwt.ExpiredSignatureError as exc:
            raise SecurityError("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise SecurityError(f"the token is not valid: {exc}") from exc
        return Claims(
            subject=str(payload["sub"]),
            issued_at=float(payload["iat"]),
            expires_at=float(payload["exp"]),
        )
