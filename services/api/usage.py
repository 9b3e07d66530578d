"""Usage routes: the tenant's (and finance's) view, and the operator's bulk import."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.exceptions import SerializationException
from litestar.serialization import decode_json
from sqlalchemy.ext.asyncio import AsyncSession

from billing.schemas import UsageOverview
from billing.usage_overview import usage_overview
from core.db import utcnow
from core.errors import BadRequest
from metering.csv_import import events_from_csv
from metering.imports import import_usage
from metering.periods import Period
from metering.reports import EXPORT_COLUMNS, usage_export_rows
from metering.schemas import ImportResult
from services.api.auth import Principal, provide_operator
from services.api.exports import ExportFormat, export_response
from services.api.openapi import IDEMPOTENCY_KEY, USAGE_IMPORT_BODY, doc, export_responses
from services.components import Components
from tenants.schemas import Scope

# 100,000 events of a few hundred bytes each, with room to spare.
IMPORT_MAX_BODY = 64 * 1024 * 1024


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the CSV is not UTF-8 text") from None


def period_or_current(period: str | None) -> Period:
    return Period.parse(period) if period else Period.containing(utcnow())


class UsageController(Controller):
    path = "/v1/usage"
    tags = ["usage"]

    @get("/")
    async def overview(
        self, db: AsyncSession, principal: Principal, hangar: Components, period: str | None = None
    ) -> UsageOverview:
        """Totals per meter, a daily series, egress per node and model version, and
        (for the current month) where the tenant stands against its plan's limits."""
        principal.require(Scope.finance)
        return await usage_overview(
            db,
            tenant_id=principal.tenant_id,
            period=period_or_current(period),
            now=utcnow(),
            names=hangar.usage_names,
        )

    @get("/export", opt=doc(responses=export_responses()))
    async def export(
        self,
        db: AsyncSession,
        principal: Principal,
        hangar: Components,
        period: str | None = None,
        format: ExportFormat = "csv",
    ) -> Response:
        """The period's usage for spreadsheets: one row per day per meter (raw sums:
        device-days, hourly byte samples, bytes), then egress per node and per model
        version."""
        principal.require(Scope.finance)
        chosen = period_or_current(period)
        rows = await usage_export_rows(
            db, tenant_id=principal.tenant_id, period=chosen, names=hangar.usage_names
        )
        return export_response(rows, columns=EXPORT_COLUMNS, fmt=format, name=f"usage-{chosen}")


class UsageImportController(Controller):
    path = "/v1/usage/import"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @post(
        "/",
        status_code=200,
        request_max_body_size=IMPORT_MAX_BODY,
        # Decoded here; JSON checked by services.api.guards first, CSV left to us.
        opt={
            **doc(409, 413, body=USAGE_IMPORT_BODY, headers=(IDEMPOTENCY_KEY,)),
            "json_body": True,
            "csv_body": True,
        },
    )
    async def import_events(
        self, request: Request, db: AsyncSession, hangar: Components, operator: None
    ) -> ImportResult:
        """A batch of usage events with explicit times (backfills, migrations):
        ``{"events": [{"tenant_id", "id", "meter", "quantity", "occurred_at", ...}]}``.
        Fields: ``tenant_id`` (UUID), ``id`` (1-128 characters, the idempotency key),
        ``meter`` and ``quantity`` (a whole number in the meter's unit:
        ``device_day`` device-days, ``storage_sample`` bytes stored at an hourly
        sample, ``egress`` and ``peer_transfer`` bytes sent, ``inference`` tokens),
        ``occurred_at`` (ISO 8601 with an offset, not in the future), optional
        ``node_id``, ``model_version_id``, ``attrs`` (object); or the same fields as
        CSV (``Content-Type: text/csv``, a header row first). All or nothing,
        idempotent on (tenant, event id); a 400 lists each bad event and field."""
        body = await request.body()
        if request.content_type[0] == "text/csv":
            payload = {"events": events_from_csv(_text(body))}
        else:
            try:
                payload = decode_json(body)
            except SerializationException as exc:
                raise BadRequest(f"the body is not valid JSON: {exc}") from None
        return await import_usage(
            db, payload=payload, now=utcnow(), max_events=hangar.settings.billing.import_max_events
        )
