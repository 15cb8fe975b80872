"""Authentication tokens (JWT HS256) for the API and the CLI's `caxton token create`."""

from caxton.security.tokens import Claims, TokenIssuer

__all__ = ["Claims", "TokenIssuer"]
