"""Monthly usage statements between installations: an on-premise Hangar writes the
billed quantities of a finished month, signed by its installation key
(``wire.signed_files``); the vendor's Hangar verifies it against an issuer the tenant
registered (``hangar usage trust-installation``) and imports it as ordinary usage
events, so the contract is rated exactly as if the usage had been metered online.

Idempotent: one statement per issuer and month; the same file again adds nothing, a
different statement for a month already imported is refused (409), and a month already
invoiced refuses the import as any late usage does."""

from __future__ import annotations

import io
import uuid
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import new_id
from core.errors import BadRequest, Conflict, NotFound
from metering.bounds import refuse_sums_past_limits
from metering.closing import refuse_events_in_closed_months
from metering.ingest import insert_events, parse_events, refuse_conflicts
from metering.meters import BILLED
from metering.models import UsageEvent, UsageIssuer, UsageStatement
from metering.periods import Period
from tenants.models import Tenant
from wire import signed_files
from wire.offline import STATEMENT, StatementBody, StatementLine, model_body


class IssuerOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    key_id: str
    public_key: str
    created_at: datetime


class StatementImported(BaseModel):
    statement_id: uuid.UUID
    issuer: str
    period: str
    tenants: int
    written: int
    duplicates: int


def _finished(period: Period, now: datetime) -> None:
    if period.end > now:
        raise BadRequest(
            f"{period} is not over yet: a statement covers a finished month (the last one is "
            f"{Period.containing(now).previous()})"
        )


async def write_statement(
    session: AsyncSession,
    *,
    period: Period,
    now: datetime,
    key: Ed25519PrivateKey,
    tenant_ids: list[uuid.UUID] | None = None,
) -> bytes:
    """The month's sum per billed meter for every tenant with billed usage (or those
    named), signed by this installation."""
    _finished(period, now)
    stmt = (
        select(UsageEvent.tenant_id, Tenant.name, UsageEvent.meter, func.sum(UsageEvent.quantity))
        .join(Tenant, Tenant.id == UsageEvent.tenant_id)
        .where(
            UsageEvent.meter.in_(BILLED),
            UsageEvent.occurred_at >= period.start,
            UsageEvent.occurred_at < period.end,
        )
        .group_by(UsageEvent.tenant_id, Tenant.name, UsageEvent.meter)
    )
    if tenant_ids is not None:
        stmt = stmt.where(UsageEvent.tenant_id.in_(tenant_ids))
    lines: dict[uuid.UUID, StatementLine] = {}
    for tenant_id, name, meter, total in await session.execute(stmt):
        line = lines.setdefault(
            tenant_id, StatementLine(tenant_id=tenant_id, tenant=name, quantities={})
        )
        line.quantities[meter] = int(total)
    if tenant_ids is not None:  # a named tenant without usage is stated as zero
        for tenant_id, name in await session.execute(
            select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids))
        ):
            lines.setdefault(
                tenant_id, StatementLine(tenant_id=tenant_id, tenant=name, quantities={})
            )
    body = StatementBody(
        period=str(period),
        installation_key=signed_files.key_text(key.public_key()),
        tenants=sorted(lines.values(), key=lambda line: line.tenant),
    )
    return signed_files.header(kind=STATEMENT, body=model_body(body), key=key)


def _issuer_out(i: UsageIssuer) -> IssuerOut:
    return IssuerOut(
        id=i.id,
        tenant_id=i.tenant_id,
        name=i.name,
        key_id=i.key_id,
        public_key=i.public_key,
        created_at=i.created_at,
    )


async def trust_issuer(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str, public_key: str
) -> IssuerOut:
    """Accept statements signed by ``public_key`` for this tenant (the key an on-premise
    installation's `hangar installation key` prints)."""
    try:
        key_id = signed_files.key_id(public_key)
    except signed_files.SignedFileError as exc:
        raise BadRequest(str(exc)) from None
    if not name.strip() or len(name) > 128:
        raise BadRequest("give the installation a name of 1 to 128 characters")
    if await session.get(Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id}; `hangar tenants ls` lists them")
    issuer = UsageIssuer(
        id=new_id(), tenant_id=tenant_id, name=name, public_key=public_key.strip(), key_id=key_id
    )
    try:
        async with session.begin_nested():
            session.add(issuer)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"this tenant already trusts an installation named {name!r} or the key {key_id}"
        ) from None
    return _issuer_out(issuer)


async def list_issuers(session: AsyncSession, *, tenant_id: uuid.UUID) -> list[IssuerOut]:
    rows = await session.scalars(
        select(UsageIssuer).where(UsageIssuer.tenant_id == tenant_id).order_by(UsageIssuer.name)
    )
    return [_issuer_out(i) for i in rows]


def _refuse(problem: str) -> BadRequest:
    return BadRequest(f"statement refused: {problem}. Nothing was imported.")


async def _parse(
    session: AsyncSession, *, tenant_id: uuid.UUID, data: bytes
) -> tuple[UsageIssuer, dict, StatementBody]:
    issuers = {
        i.key_id: i
        for i in await session.scalars(
            select(UsageIssuer).where(UsageIssuer.tenant_id == tenant_id)
        )
    }
    found: list[UsageIssuer] = []

    def issuer_key(manifest: dict) -> signed_files.Ed25519PublicKey:
        issuer = issuers.get(str(manifest.get("signer")))
        if issuer is None:
            raise signed_files.SignedFileError(
                f"it is signed by installation key {manifest.get('signer')!r}, which this tenant "
                "does not trust; register it with `hangar usage trust-installation NAME PUBKEY "
                "--tenant T`"
            )
        found.append(issuer)
        return signed_files.parse_key(issuer.public_key)

    try:
        manifest = signed_files.open_signed(
            io.BytesIO(data), kind=STATEMENT, key_for=issuer_key, size=len(data)
        )
        body = StatementBody.model_validate(manifest)
    except signed_files.SignedFileError as exc:
        raise _refuse(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _refuse(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    if body.installation_key != found[0].public_key:
        raise _refuse("the installation key it names is not the key that signed it")
    return found[0], manifest, body


async def import_statement(
    session: AsyncSession, *, tenant_id: uuid.UUID, data: bytes, now: datetime, max_events: int
) -> StatementImported:
    issuer, manifest, body = await _parse(session, tenant_id=tenant_id, data=data)
    period = Period.parse(body.period)
    _finished(period, now)
    statement_id = uuid.UUID(str(manifest["id"]))
    done = await session.scalar(
        select(UsageStatement).where(
            UsageStatement.issuer_id == issuer.id, UsageStatement.period == period.first_day
        )
    )
    if done is not None and done.statement_id != statement_id:
        raise Conflict(
            f"a different statement for {period} from {issuer.name!r} was imported on "
            f"{done.imported_at:%Y-%m-%d} (statement {done.statement_id}); a month is stated "
            "once — correct an invoice with a credit note"
        )
    events = []
    for line in body.tenants:
        for meter, quantity in line.quantities.items():
            if meter not in BILLED:
                raise _refuse(f"{meter!r} is not a billed meter ({', '.join(BILLED)})")
            events.append(
                {
                    "tenant_id": str(tenant_id),
                    "id": f"statement:{issuer.key_id}:{period}:{line.tenant_id}:{meter}",
                    "meter": meter,
                    "quantity": quantity,
                    "occurred_at": period.start.isoformat(),
                    "attrs": {"issuer": issuer.name, "statement": str(statement_id)},
                }
            )
    written = 0
    if events:
        cols = parse_events({"events": events}, now=now, max_events=max_events)
        await refuse_events_in_closed_months(session, cols)
        await refuse_conflicts(session, cols)
        written = await insert_events(session, cols)
        await refuse_sums_past_limits(session, cols)  # raising rolls the write back
    if done is None:
        session.add(
            UsageStatement(
                id=new_id(),
                tenant_id=tenant_id,
                issuer_id=issuer.id,
                statement_id=statement_id,
                period=period.first_day,
                quantities=model_body(body),
            )
        )
        await session.flush()
    return StatementImported(
        statement_id=statement_id,
        issuer=issuer.name,
        period=str(period),
        tenants=len(body.tenants),
        written=written,
        duplicates=len(events) - written,
    )
