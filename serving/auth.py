"""Optional API-key authentication and the admin key that unlocks ``?arm=`` overrides.

Keys come from the environment (``FLYWHEEL_API_KEYS``, comma-separated; ``FLYWHEEL_ADMIN_KEY``).
A client sends its key as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping


class AuthError(Exception):
    """Refused request; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key of a request (``X-API-Key`` first, then a Bearer token), or None."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _matches(key: str, accepted: Iterable[str]) -> bool:
    """Constant-time membership test (every key is compared)."""
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def check_api_key(headers: Mapping[str, str], accepted: frozenset[str]) -> None:
    """Raise :class:`AuthError` (401) unless authentication is off or a valid key is presented."""
    if not accepted:
        return
    key = presented_key(headers)
    if key is None:
        raise AuthError(401, "missing API key: send 'X-API-Key: <key>' or 'Authorization: Bearer <key>'")
    if not _matches(key, accepted):
        raise AuthError(401, "invalid API key")


def check_admin(headers: Mapping[str, str], admin_key: str | None) -> None:
    """Raise :class:`AuthError` (403) unless the request carries the admin key (``X-Admin-Key``)."""
    if not admin_key:
        raise AuthError(403, "arm overrides are disabled (no admin key is configured)")
    key = headers.get("x-admin-key", "")
    if not key or not hmac.compare_digest(key.encode(), admin_key.encode()):
        raise AuthError(403, "?arm= needs a valid X-Admin-Key header")
