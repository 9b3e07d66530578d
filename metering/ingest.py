"""Bulk usage import: validate a whole batch, then write it in one statement.

All or nothing: the batch is checked completely before anything is written, and the
write is one ``INSERT ... SELECT FROM unnest(...)``, so a bad event leaves no trace.
Idempotent on (tenant, event id): re-sending a batch writes nothing new. Rows are
passed as column arrays (one round trip, binary encoded by asyncpg) instead of one
ORM object per row, which is what makes tens of thousands of events a second.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadRequest
from metering.meters import METERS, MONTH_LIMITS

FIELDS = (
    "tenant_id",
    "id",
    "meter",
    "quantity",
    "occurred_at",
    "node_id",
    "model_version_id",
    "attrs",
)
MAX_ERRORS = 20
# Billing periods run from 2000 (metering.periods); nothing is imported before.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class EventColumns:
    """A validated batch, column by column, ready for ``unnest``."""

    tenant_ids: list[uuid.UUID] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    quantities: list[int] = field(default_factory=list)
    occurred_at: list[datetime] = field(default_factory=list)
    node_ids: list[uuid.UUID | None] = field(default_factory=list)
    version_ids: list[uuid.UUID | None] = field(default_factory=list)
    attrs: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)


class _Invalid(Exception):
    def __init__(self, field_name: str, problem: str):
        self.field, self.problem = field_name, problem


def _uuid(raw: Any, name: str, *, required: bool) -> uuid.UUID | None:
    if raw is None:
        if required:
            raise _Invalid(name, "is missing")
        return None
    if not isinstance(raw, str):
        raise _Invalid(name, f"must be a UUID string, got {raw!r}")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _Invalid(name, f"must be a UUID, got {raw!r}") from None


def _time(raw: Any, now: datetime) -> datetime:
    if not isinstance(raw, str):
        raise _Invalid(
            "occurred_at", f"must be an ISO 8601 time such as 2026-04-03T10:00:00Z, got {raw!r}"
        )
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _Invalid(
            "occurred_at", f"{raw!r} is not an ISO 8601 time such as 2026-04-03T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise _Invalid("occurred_at", f"{raw!r} has no UTC offset; add 'Z' or '+00:00'")
    try:
        moment = moment.astimezone(UTC)  # year 1 at +14:00 has no UTC instant
    except OverflowError:
        moment = EARLIEST - timedelta(days=1)
    if moment < EARLIEST:
        raise _Invalid(
            "occurred_at", f"{raw!r} is before {EARLIEST.date()} (periods start in year 2000)"
        )
    if moment > now:
        raise _Invalid(
            "occurred_at", f"{raw!r} is in the future (server time is {now.isoformat()})"
        )
    return moment


def _one(raw: Any, now: datetime, cols: EventColumns, tenants: dict[Any, uuid.UUID]) -> None:
    if not isinstance(raw, dict):
        raise _Invalid("event", "must be a JSON object")
    for key in raw:
        if key not in FIELDS:
            raise _Invalid(key, f"is not a known field; fields are {', '.join(FIELDS)}")
    # A batch names few tenants many times: parse each id once.
    raw_tenant = raw.get("tenant_id")
    tenant_id = tenants.get(raw_tenant) if isinstance(raw_tenant, str) else None
    if tenant_id is None:
        tenant_id = _uuid(raw_tenant, "tenant_id", required=True)
        tenants[raw_tenant] = tenant_id
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
        raise _Invalid("id", "must be a string of 1 to 128 characters (the idempotency key)")
    if "\x00" in event_id:
        raise _Invalid("id", "must not contain NUL characters (\\u0000)")
    meter = raw.get("meter")
    if meter not in METERS:
        raise _Invalid("meter", f"{meter!r} is not a meter; use one of {', '.join(METERS)}")
    quantity = raw.get("quantity")
    if type(quantity) is not int:
        raise _Invalid(
            "quantity", f"must be a whole number (bytes, device-days or a count), got {quantity!r}"
        )
    if quantity < 0:
        raise _Invalid("quantity", f"must not be negative, got {quantity}")
    if quantity > MONTH_LIMITS[meter]:  # one event is at most its whole month
        raise _Invalid(
            "quantity",
            f"is too large: {quantity}; one {meter} event may be at most {MONTH_LIMITS[meter]}",
        )
    occurred_at = _time(raw.get("occurred_at"), now)
    node_id = _uuid(raw.get("node_id"), "node_id", required=False)
    version_id = _uuid(raw.get("model_version_id"), "model_version_id", required=False)
    attrs = raw.get("attrs")
    if attrs is not None and not isinstance(attrs, dict):
        raise _Invalid("attrs", "must be a JSON object")
    if attrs is not None and _has_nul(attrs):
        raise _Invalid("attrs", "must not contain NUL characters (\\u0000) in keys or values")
    cols.tenant_ids.append(tenant_id)  # type: ignore[arg-type]
    cols.event_ids.append(event_id)
    cols.meters.append(meter)
    cols.quantities.append(quantity)
    cols.occurred_at.append(occurred_at)
    cols.node_ids.append(node_id)
    cols.version_ids.append(version_id)
    cols.attrs.append(json.dumps(attrs) if attrs else "{}")


def event_error(index: int, event_id: Any, field_name: str, problem: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": event_id if isinstance(event_id, str) else None,
        "field": field_name,
        "problem": problem,
    }


def refuse(errors: list[dict[str, Any]]) -> BadRequest:
    first = errors[0]
    ident = f" (id {first['id']!r})" if first["id"] else ""
    more = f"; {len(errors) - 1} more problem(s) in detail" if len(errors) > 1 else ""
    return BadRequest(
        f"event {first['index']}{ident}: {first['field']} {first['problem']}{more}. "
        "Nothing from this batch was written; fix the events and send the batch again.",
        detail={"errors": errors},
    )


def parse_events(payload: Any, *, now: datetime, max_events: int) -> EventColumns:
    """Check every event (raising one 400 that lists the problems) and return columns."""
    events = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(events, list):
        raise BadRequest('send {"events": [...]}: a JSON object with a list of usage events')
    if not events:
        raise BadRequest("the batch is empty: send at least one event")
    if len(events) > max_events:
        raise BadRequest(
            f"the batch has {len(events)} events; send at most {max_events} per request"
        )
    cols = EventColumns()
    errors: list[dict[str, Any]] = []
    tenants: dict[Any, uuid.UUID] = {}
    for index, raw in enumerate(events):
        try:
            _one(raw, now, cols, tenants)
        except _Invalid as bad:
            event_id = raw.get("id") if isinstance(raw, dict) else None
            errors.append(event_error(index, event_id, bad.field, bad.problem))
            if len(errors) >= MAX_ERRORS:
                break
    if not errors:
        errors = _conflicts_within(cols)
    if errors:
        raise refuse(errors)
    return cols


def _fact(cols: EventColumns, index: int) -> tuple[Any, ...]:
    """What an event records: a re-send must repeat it exactly to be a duplicate."""
    return (
        cols.meters[index],
        cols.quantities[index],
        cols.occurred_at[index],
        cols.node_ids[index],
    )


def _conflict(index: int, event_id: str, earlier: str) -> dict[str, Any]:
    return event_error(
        index,
        event_id,
        "id",
        f"{event_id!r} conflicts with what was recorded {earlier}: the same event id with a "
        "different meter, quantity, occurred_at or node_id. An exact re-send is a harmless "
        "duplicate; a different event needs a new id",
    )


def _conflicts_within(cols: EventColumns) -> list[dict[str, Any]]:
    first: dict[tuple[uuid.UUID, str], int] = {}
    errors = []
    for index, key in enumerate(zip(cols.tenant_ids, cols.event_ids, strict=True)):
        seen = first.setdefault(key, index)
        if seen != index and _fact(cols, seen) != _fact(cols, index):
            errors.append(_conflict(index, key[1], f"as event {seen} of this batch"))
            if len(errors) >= MAX_ERRORS:
                break
    return errors


_STORED = text(
    """
    select e.tenant_id, e.event_id, e.meter, e.quantity, e.occurred_at, e.node_id
    from usage_events e
    join unnest(cast(:t as uuid[]), cast(:e as text[])) as u(t, e)
      on e.tenant_id = u.t and e.event_id = u.e
    """
)


async def refuse_conflicts(session: AsyncSession, cols: EventColumns) -> None:
    """A re-sent event id must match the stored event exactly, or the batch is refused."""
    rows = await session.execute(_STORED, {"t": cols.tenant_ids, "e": cols.event_ids})
    stored = {(t, e): (m, q, o, n) for t, e, m, q, o, n in rows}
    if not stored:
        return
    errors = []
    for index, key in enumerate(zip(cols.tenant_ids, cols.event_ids, strict=True)):
        fact = stored.get(key)
        if fact is not None and fact != _fact(cols, index):
            errors.append(_conflict(index, key[1], "earlier"))
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        raise refuse(errors)


def _has_nul(value: Any) -> bool:
    """Postgres text and jsonb cannot hold U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


_INSERT = text(
    """
    insert into usage_events
        (tenant_id, event_id, meter, quantity, occurred_at, node_id, model_version_id, attrs,
         created_at)
    select u.t, u.e, u.m, u.q, u.o, u.n, u.v, u.a::jsonb, now()
    from unnest(
        cast(:t as uuid[]), cast(:e as text[]), cast(:m as text[]), cast(:q as bigint[]),
        cast(:o as timestamptz[]), cast(:n as uuid[]), cast(:v as uuid[]), cast(:a as text[])
    ) as u(t, e, m, q, o, n, v, a)
    on conflict (tenant_id, event_id) do nothing
    """
)


async def insert_events(session: AsyncSession, cols: EventColumns) -> int:
    """Write the batch; returns how many events were new (the rest were duplicates)."""
    result = await session.execute(
        _INSERT,
        {
            "t": cols.tenant_ids,
            "e": cols.event_ids,
            "m": cols.meters,
            "q": cols.quantities,
            "o": cols.occurred_at,
            "n": cols.node_ids,
            "v": cols.version_ids,
            "a": cols.attrs,
        },
    )
    return result.rowcount
