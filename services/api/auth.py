"""Who is calling: a tenant API key, a node credential, or the platform operator token."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from litestar import Request

from core.db import transaction
from core.errors import Forbidden, Unauthorized
from fleet import nodes
from services.components import Components
from tenants import service as tenants
from tenants.schemas import Scope
from wire.contract import NODE_CREDENTIAL_PREFIX

# Not a Scope an API key can carry: only a node credential grants it.
NODE_SCOPE = "node"
NODE_ONLY = (
    "a node credential may only heartbeat, read its desired state, list its peers and download "
    "its tenant's models; use an API key (HANGAR_TOKEN) for this"
)


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID
    scopes: frozenset[str]
    key_id: uuid.UUID | None = None
    node_id: uuid.UUID | None = None

    def require(self, *allowed: Scope, node: bool = False) -> None:
        """``admin`` can do everything in its tenant; other scopes only what is listed;
        a node only routes that pass ``node=True`` (downloads), never admin actions."""
        if NODE_SCOPE in self.scopes:
            if node:
                return
            raise Forbidden(NODE_ONLY)
        if Scope.admin in self.scopes or self.scopes & {s.value for s in allowed}:
            return
        names = ", ".join(s.value for s in (Scope.admin, *allowed))
        raise Forbidden(
            f"this key's scopes ({', '.join(sorted(self.scopes))}) do not allow this; it needs one of: {names}"
        )

    def require_admin(self) -> None:
        """Only the tenant's ``admin`` keys (what changes things goes through here)."""
        self.require()

    def require_node(self) -> uuid.UUID:
        if self.node_id is None:
            raise Forbidden(
                "this route is for nodes: call it with the node credential from `hangar node enroll`"
            )
        return self.node_id


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "missing credentials: send 'Authorization: Bearer <API key>' (set HANGAR_TOKEN for the CLI)"
        )
    return token.strip()


async def provide_principal(request: Request, hangar: Components) -> Principal:
    secret = bearer(request)
    # Its own short transaction: a long upload must not hold the key's row lock.
    async with transaction(hangar.sessions) as session:
        if secret.startswith(NODE_CREDENTIAL_PREFIX):
            node = await nodes.authenticate(session, secret=secret)
            return Principal(
                tenant_id=node.tenant_id, scopes=frozenset({NODE_SCOPE}), node_id=node.id
            )
        key = await tenants.authenticate(session, secret=secret)
    return Principal(tenant_id=key.tenant_id, scopes=frozenset(key.scopes), key_id=key.id)


async def provide_operator(request: Request, hangar: Components) -> None:
    expected = hangar.settings.operator_token.get_secret_value()
    if not expected or not hmac.compare_digest(bearer(request).encode(), expected.encode()):
        raise Unauthorized("this route needs the platform operator token (HANGAR_OPERATOR_TOKEN)")
