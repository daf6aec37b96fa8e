"""API keys: a random token shown once; the service stores only its SHA-256.

Scopes per key: ``read`` (schema, history, state, predict, simulate, live events,
dashboard) and ``write`` (observations, schema changes, knowledge, scored predictions),
each for a list of twins or ``*``. An admin key can do everything, including creating
twins and keys: the one in settings, or, with none configured, one generated at the
first start (stored as a hash like every key, printed once). Only ``insecure`` settings
turn authentication off, and ``lmtwin serve`` allows that on a loopback address only.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection

from lmtwin.service.db import ServiceDB
from lmtwin.service.errors import Forbidden, Unauthorized
from lmtwin.service.settings import Settings, hash_key

Scope = Literal["read", "write", "admin"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, a key (by id, never by secret), or anyone (auth off)."""

    id: str
    twins: tuple[str, ...]
    scopes: tuple[str, ...]

    def allows(self, scope: Scope, twin: str | None) -> bool:
        if "admin" in self.scopes:
            return True
        if scope not in self.scopes:
            return False
        return twin is None or "*" in self.twins or twin in self.twins


ADMIN = Principal("admin", ("*",), ("admin", "read", "write"))


def new_key(prefix: str = "") -> tuple[str, str, str]:
    """A fresh key: (id, secret, stored hash)."""
    key_id = prefix + secrets.token_hex(6)
    secret = f"lmt_{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, secret, hash_key(secret)


def ensure_admin(db: ServiceDB, settings: Settings) -> str | None:
    """With authentication on and no admin key in settings, make sure the database holds
    an active admin key; return the secret of one generated now (shown once), else None."""
    if not settings.auth or settings.admin_key is not None or db.has_admin_key():
        return None
    key_id, secret, digest = new_key("admin-")
    db.add_key(key_id, "admin (generated at first start)", digest, ["*"], ["admin"])
    return secret


def presented_key(conn: HTTPConnection, allow_query: bool) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    if allow_query:  # EventSource cannot set headers; the access log never shows queries
        return conn.query_params.get("key")
    return None


class KeyCache:
    """Recently seen keys by hash, for ``ttl`` seconds: a request then authenticates
    without touching the database. Revocation through this service clears it at once;
    through another process sharing the database, within ``ttl``."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, Principal | None]] = {}

    def get(self, digest: str, db: ServiceDB) -> Principal | None:
        now = time.monotonic()
        hit = self._items.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        record = db.key_by_hash(digest)
        principal = None if record is None else Principal(
            record["id"], tuple(record["twins"]), tuple(record["scopes"]))
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[digest] = (now, principal)
        return principal

    def clear(self) -> None:
        self._items.clear()


def authenticate(conn: HTTPConnection, settings: Settings, db: ServiceDB,
                 allow_query: bool = False, cache: KeyCache | None = None) -> Principal:
    if not settings.auth:
        return ADMIN
    key = presented_key(conn, allow_query)
    if not key:
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
    if len(key) > 200:
        raise Unauthorized("unknown API key")
    if settings.admin_key is not None and hmac.compare_digest(
            key.encode(), settings.admin_key.get_secret_value().encode()):
        return ADMIN
    cache = cache or KeyCache(ttl=0)
    principal = cache.get(hash_key(key), db)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    return principal


def require(principal: Principal, scope: Scope, twin: str | None = None) -> None:
    if not principal.allows(scope, twin):
        what = f" on twin {twin!r}" if twin else ""
        raise Forbidden(f"this key lacks the {scope!r} scope{what}")
