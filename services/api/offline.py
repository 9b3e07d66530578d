"""Routes for sites with no link: the installation's public key, offline nodes, bundles,
report files, and monthly usage statements between installations. Thin: auth, one
service call; the formats are in ``wire.signed_files`` and ``wire.offline``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Response, Stream
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import resolve_tenant
from core.db import utcnow
from core.settings import Settings
from fleet.bundles import BundlePlan, plan_bundle
from fleet.offline import create_offline_node
from fleet.reports_import import ReportsImported, import_reports
from metering.periods import Period
from metering.statements import (
    IssuerOut,
    StatementImported,
    import_statement,
    list_issuers,
    trust_issuer,
    write_statement,
)
from services.api.auth import Principal, provide_operator
from services.api.openapi import doc
from services.components import Components
from wire import signed_files
from wire.offline import OfflineIdentity

# Report files carry heartbeats (a few KB each); statements are smaller still.
MAX_REPORTS_FILE = 64 * 1024 * 1024
MAX_STATEMENT_FILE = 8 * 1024 * 1024
SIGNED = "application/vnd.hangar.signed"


def installation_key(settings: Settings) -> Ed25519PrivateKey:
    return signed_files.load_or_create_key(settings.installation_key_path)


class InstallationKey(BaseModel):
    public_key: str
    key_id: str


class OfflineNodeCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    labels: dict[str, str] = Field(default_factory=dict)


class BundleCreate(BaseModel):
    node_id: uuid.UUID | None = None
    labels: dict[str, str] | None = Field(default=None, description="a label selector")


class IssuerCreate(BaseModel):
    tenant: str = Field(description="tenant name or id")
    name: str = Field(min_length=1, max_length=128)
    public_key: str = Field(description="ed25519:… as `hangar installation key` prints it")


class InstallationController(Controller):
    path = "/v1/installation"
    tags = ["offline"]

    @get("/key", security=[])
    async def key(self, hangar: Components) -> InstallationKey:
        """The public half of the key that signs this installation's bundles and usage
        statements: nodes and other installations verify them with it."""
        public = installation_key(hangar.settings).public_key()
        return InstallationKey(
            public_key=signed_files.key_text(public), key_id=signed_files.key_id(public)
        )


class OfflineFleetController(Controller):
    path = "/v1/offline"
    tags = ["offline"]

    @post("/nodes", status_code=201, opt=doc(402, 404, 409))
    async def create_node(
        self, db: AsyncSession, hangar: Components, principal: Principal, data: OfflineNodeCreate
    ) -> OfflineIdentity:
        """A node for a machine that never reaches the control plane. The answer is its
        identity file (credential shown once): carry it to the machine."""
        principal.require_admin()
        public = installation_key(hangar.settings).public_key()
        return await create_offline_node(
            db,
            tenant_id=principal.tenant_id,
            name=data.name,
            labels=data.labels,
            control_plane_key=signed_files.key_text(public),
            node_limit=hangar.quotas,
        )

    @post("/bundles", status_code=200, opt=doc(402, 404, 409))
    async def bundle(
        self, db: AsyncSession, hangar: Components, principal: Principal, data: BundleCreate
    ) -> Stream:
        """One signed file with the desired state of the node (or of every node with the
        labels) and the blobs it names. Its bytes are egress, metered like downloads."""
        principal.require_admin()
        plan = await plan_bundle(
            db,
            tenant_id=principal.tenant_id,
            node_id=data.node_id,
            selector=data.labels,
            key=installation_key(hangar.settings),
        )
        total = sum(b.size for b in plan.blobs)
        # Refused before a byte is sent: a 402 beats a truncated file.
        await hangar.quotas.check_download(tenant_id=principal.tenant_id, nbytes=total)
        node = plan.node_ids[0] if len(plan.node_ids) == 1 else None
        return Stream(
            _bundle_bytes(hangar, plan, tenant_id=principal.tenant_id, node_id=node),
            media_type=SIGNED,
            headers={
                "Content-Length": str(plan.size),
                "Content-Disposition": 'attachment; filename="site.hangar"',
            },
        )

    @post(
        "/reports",
        status_code=200,
        request_max_body_size=MAX_REPORTS_FILE,
        opt=doc(400, 404, 409, 413),
    )
    async def import_reports(
        self, request: Request, db: AsyncSession, principal: Principal
    ) -> ReportsImported:
        """A node's signed report file (`hangar node export-reports`). Verified, stored
        once per report id; a refused file stores nothing."""
        principal.require_admin()
        return await import_reports(db, tenant_id=principal.tenant_id, data=await request.body())


async def _bundle_bytes(
    hangar: Components, plan: BundlePlan, *, tenant_id: uuid.UUID, node_id: uuid.UUID | None
) -> AsyncIterator[bytes]:
    yield plan.header
    for blob in plan.blobs:
        dl = await hangar.downloads.open(
            tenant_id=tenant_id, name=blob.name, ref=blob.digest, node_id=node_id
        )
        async for chunk in dl.body:
            yield chunk


class StatementController(Controller):
    """The operator's: writing this installation's statements, and accepting other
    installations' statements for a tenant."""

    path = "/v1/usage/statements"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @get("/", opt=doc(404, 409))
    async def write(
        self,
        db: AsyncSession,
        hangar: Components,
        operator: None,
        period: str,
        tenant: Annotated[list[str] | None, Parameter(description="only these tenants")] = None,
    ) -> Response[bytes]:
        """A finished month's billed quantities per tenant, signed by this installation."""
        ids = [(await resolve_tenant(db, t)).id for t in tenant] if tenant else None
        data = await write_statement(
            db,
            period=Period.parse(period),
            now=utcnow(),
            key=installation_key(hangar.settings),
            tenant_ids=ids,
        )
        return Response(data, media_type=SIGNED)

    @post("/issuers", status_code=201, opt=doc(404, 409))
    async def trust(self, db: AsyncSession, operator: None, data: IssuerCreate) -> IssuerOut:
        """Let a tenant's statements come from this installation key."""
        tenant = await resolve_tenant(db, data.tenant)
        return await trust_issuer(
            db, tenant_id=tenant.id, name=data.name, public_key=data.public_key
        )

    @get("/issuers", opt=doc(404))
    async def issuers(self, db: AsyncSession, operator: None, tenant: str) -> list[IssuerOut]:
        return await list_issuers(db, tenant_id=(await resolve_tenant(db, tenant)).id)

    @post(
        "/import",
        status_code=200,
        request_max_body_size=MAX_STATEMENT_FILE,
        opt=doc(400, 404, 409, 413),
    )
    async def import_file(
        self, request: Request, db: AsyncSession, hangar: Components, operator: None, tenant: str
    ) -> StatementImported:
        """A statement file from a trusted installation, imported as the tenant's usage."""
        found = await resolve_tenant(db, tenant)
        return await import_statement(
            db,
            tenant_id=found.id,
            data=await request.body(),
            now=utcnow(),
            max_events=hangar.settings.billing.import_max_events,
        )


OFFLINE_ROUTES = [InstallationController, OfflineFleetController, StatementController]
