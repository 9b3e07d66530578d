"""Console sign-in: a signed, expiring session cookie that never holds the key.

Why a signed cookie and not a server-side table: API processes are stateless behind a
load balancer (an in-process store would sign people out at random), and a session
table would be a migration for one lookup. The cookie holds only the API key's *id*
(or, for the operator, an HMAC fingerprint of the operator token), the tenant, an
expiry and a nonce, signed with HMAC-SHA256. Every request re-reads the key by id, so
revoking the key (or rotating the operator token) ends its sessions at once; signing
out deletes the cookie, and the expiry bounds a copied cookie's life.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from litestar import Request
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select

from core.db import transaction
from core.errors import Forbidden, Unauthorized
from core.settings import Settings
from services.api.auth import Principal
from services.components import Components
from tenants import service as tenants
from tenants.models import ApiKey, Tenant
from tenants.schemas import Scope

COOKIE = "hangar_console"
PATH = "/console"


class ConsoleSettings(BaseSettings):
    """``HANGAR_CONSOLE_SECRET`` signs session and CSRF cookies: set the same value on
    every API process. Unset, it is derived from the operator token (or random per
    process when there is none, which signs people out on restart)."""

    model_config = SettingsConfigDict(env_prefix="HANGAR_CONSOLE_")
    secret: SecretStr = SecretStr("")
    session_hours: float = 8.0


def signing_secret(settings: Settings, console: ConsoleSettings) -> bytes:
    own = console.secret.get_secret_value()
    if own:
        return own.encode()
    operator = settings.operator_token.get_secret_value()
    if operator:
        # One-way: knowing the signing key tells nothing about the operator token.
        return hmac.new(operator.encode(), b"hangar-console-session", hashlib.sha256).digest()
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class ConsoleUser:
    """Who is signed in: a tenant principal (admin, finance, read) or the operator."""

    principal: Principal | None
    tenant: str = ""
    key_name: str = ""

    @property
    def operator(self) -> bool:
        return self.principal is None

    def can(self, *allowed: Scope | str) -> bool:
        """What the page shows; the handler still calls ``principal.require``."""
        if self.principal is None:
            return False
        try:
            self.principal.require(*(Scope(s) for s in allowed))
        except Forbidden:
            return False
        return True

    @property
    def admin(self) -> bool:
        return self.can()

    @property
    def role(self) -> str:
        if self.principal is None:
            return "operator"
        return ", ".join(sorted(self.principal.scopes))

    def tenant_principal(self) -> Principal:
        if self.principal is None:
            raise Forbidden(
                "the operator token manages tenants only; sign in with a tenant's API key for this page"
            )
        return self.principal

    def require_operator(self) -> None:
        if self.principal is not None:
            raise Forbidden("this page needs the platform operator token (HANGAR_OPERATOR_TOKEN)")


class Sessions:
    def __init__(self, secret: bytes, hours: float, operator_token: str):
        self._secret = secret
        self.max_age = int(hours * 3600)
        self._operator_token = operator_token

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def _operator_fingerprint(self) -> str:
        return self._sign(b"operator:" + self._operator_token.encode())[:32]

    def issue(self, *, key: ApiKey | None) -> str:
        body = {"exp": int(time.time()) + self.max_age, "n": secrets.token_hex(8)}
        if key is None:
            body["op"] = self._operator_fingerprint()
        else:
            body["key"] = str(key.id)
        payload = base64.urlsafe_b64encode(json.dumps(body).encode())
        return f"{payload.decode()}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> dict | None:
        """The cookie's claims if its signature holds and it has not expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, sig = cookie.partition(".")
        if not hmac.compare_digest(sig, self._sign(payload.encode())):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload.encode()))
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("exp", 0) < time.time():
            return None
        if "op" in body and not (
            self._operator_token and hmac.compare_digest(body["op"], self._operator_fingerprint())
        ):
            return None
        return body

    def is_operator_token(self, secret: str) -> bool:
        return bool(self._operator_token) and hmac.compare_digest(
            secret.encode(), self._operator_token.encode()
        )


SIGNED_OUT = (
    "your console session has ended (signed out, expired, or its key was revoked); sign in again"
)


async def sign_in(hangar: Components, sessions: Sessions, secret: str) -> str:
    """Check an API key or the operator token, as the API would; return the cookie value."""
    secret = secret.strip()
    if sessions.is_operator_token(secret):
        return sessions.issue(key=None)
    if not secret:
        raise Unauthorized("paste an API key (hgr_…) or the operator token to sign in")
    async with transaction(hangar.sessions) as session:
        key = await tenants.authenticate(session, secret=secret)
    return sessions.issue(key=key)


async def current_user(request: Request, hangar: Components, sessions: Sessions) -> ConsoleUser:
    claims = sessions.read(request.cookies.get(COOKIE))
    if claims is None:
        raise Unauthorized(SIGNED_OUT)
    if "op" in claims:
        return ConsoleUser(principal=None)
    async with transaction(hangar.sessions) as session:
        row = (
            await session.execute(
                select(ApiKey, Tenant.name)
                .join(Tenant, Tenant.id == ApiKey.tenant_id)
                .where(ApiKey.id == uuid.UUID(claims["key"]))
            )
        ).one_or_none()
    if row is None or row[0].revoked_at is not None:
        raise Unauthorized(SIGNED_OUT)
    key, tenant_name = row
    return ConsoleUser(
        principal=Principal(tenant_id=key.tenant_id, scopes=frozenset(key.scopes), key_id=key.id),
        tenant=tenant_name,
        key_name=key.name,
    )
