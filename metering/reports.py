"""Reading usage back: totals per meter, daily series, egress per node and version.

Usage events carry node and model-version ids; the names shown next to them come from
the layers that own nodes and models, through ``UsageNames`` (wired in ``services``), so
metering never joins registry or fleet tables."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from metering.meters import DEVICE_DAY, EGRESS, GB, INFERENCE, PEER_TRANSFER, STORAGE_SAMPLE
from metering.models import UsageEvent
from metering.periods import Period
from metering.schemas import DailyUsage, EgressByNode, EgressByVersion, MeterTotals, UsageReport

PLACES = Decimal("0.000001")


class UsageNames(Protocol):
    async def nodes(self, session: AsyncSession, *, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Node id -> node name, for the ids that still exist."""

    async def model_versions(
        self, session: AsyncSession, *, ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, int]]:
        """Model version id -> (model name, version number), for the ids that still exist."""


def _in(tenant_id: uuid.UUID, start: datetime, end: datetime):
    return (
        UsageEvent.tenant_id == tenant_id,
        UsageEvent.occurred_at >= start,
        UsageEvent.occurred_at < end,
    )


async def meter_sums(
    session: AsyncSession, *, tenant_id: uuid.UUID, start: datetime, end: datetime
) -> dict[str, tuple[int, int]]:
    """meter -> (sum of quantities, number of events) in [start, end)."""
    rows = await session.execute(
        select(UsageEvent.meter, func.sum(UsageEvent.quantity), func.count())
        .where(*_in(tenant_id, start, end))
        .group_by(UsageEvent.meter)
    )
    return {meter: (int(total), int(count)) for meter, total, count in rows}


async def usage_report(
    session: AsyncSession, *, tenant_id: uuid.UUID, period: Period, names: UsageNames
) -> UsageReport:
    start, end = period.start, period.end
    sums = await meter_sums(session, tenant_id=tenant_id, start=start, end=end)
    device_days, _ = sums.get(DEVICE_DAY, (0, 0))
    storage_sum, storage_n = sums.get(STORAGE_SAMPLE, (0, 0))
    egress, _ = sums.get(EGRESS, (0, 0))
    totals = MeterTotals(
        device_days=device_days,
        device_months=(Decimal(device_days) / period.days).quantize(PLACES),
        storage_samples=storage_n,
        storage_gb_months=(Decimal(storage_sum) / GB / period.hours).quantize(PLACES),
        egress_bytes=egress,
        egress_gb=(Decimal(egress) / GB).quantize(PLACES),
        inference=sums.get(INFERENCE, (0, 0))[0],
    )
    return UsageReport(
        period=str(period),
        days=period.days,
        hours=period.hours,
        totals=totals,
        daily=await _daily(session, tenant_id, start, end),
        egress_by_node=await _egress_by_node(session, tenant_id, start, end, names),
        egress_by_model_version=await _egress_by_version(session, tenant_id, start, end, names),
    )


async def _daily(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime
) -> list[DailyUsage]:
    day = cast(func.timezone("UTC", UsageEvent.occurred_at), Date).label("day")
    rows = await session.execute(
        select(day, UsageEvent.meter, func.sum(UsageEvent.quantity), func.count())
        .where(*_in(tenant_id, start, end))
        .group_by(day, UsageEvent.meter)
        .order_by(day)
    )
    by_day: dict = defaultdict(dict)
    for when, meter, total, count in rows:
        by_day[when][meter] = (int(total), int(count))
    out = []
    for when, meters in by_day.items():
        storage, samples = meters.get(STORAGE_SAMPLE, (0, 0))
        out.append(
            DailyUsage(
                date=when,
                device_days=meters.get(DEVICE_DAY, (0, 0))[0],
                storage_gb=(Decimal(storage) / GB / samples).quantize(PLACES)
                if samples
                else Decimal(0),
                egress_bytes=meters.get(EGRESS, (0, 0))[0],
                inference=meters.get(INFERENCE, (0, 0))[0],
            )
        )
    return out


async def _egress_by(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime, column
) -> list[tuple[uuid.UUID | None, int]]:
    rows = await session.execute(
        select(column, func.sum(UsageEvent.quantity))
        .where(*_in(tenant_id, start, end), UsageEvent.meter == EGRESS)
        .group_by(column)
        .order_by(func.sum(UsageEvent.quantity).desc())
    )
    return [(key, int(total)) for key, total in rows]


async def _egress_by_node(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime, names: UsageNames
) -> list[EgressByNode]:
    sums = await _egress_by(session, tenant_id, start, end, UsageEvent.node_id)
    known = await names.nodes(session, ids={i for i, _ in sums if i})
    return [
        EgressByNode(node_id=node_id, node=known.get(node_id), bytes=total)
        for node_id, total in sums
    ]


async def _egress_by_version(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime, names: UsageNames
) -> list[EgressByVersion]:
    # A deleted version's egress is still billed and still listed, by id, without a name.
    sums = await _egress_by(session, tenant_id, start, end, UsageEvent.model_version_id)
    known = await names.model_versions(session, ids={i for i, _ in sums if i})
    out = []
    for version_id, total in sums:
        model, number = known.get(version_id, (None, None))
        out.append(
            EgressByVersion(model_version_id=version_id, model=model, version=number, bytes=total)
        )
    return out


# One row per day per meter, then egress per node and per model version, for finance.
EXPORT_COLUMNS = [
    "period",
    "section",
    "date",
    "meter",
    "quantity",
    "unit",
    "events",
    "node_id",
    "node",
    "model_version_id",
    "model",
    "version",
]
RAW_UNITS = {
    DEVICE_DAY: "device-days",
    STORAGE_SAMPLE: "byte-samples (hourly)",
    EGRESS: "bytes",
    INFERENCE: "tokens",
    PEER_TRANSFER: "bytes",
}


async def usage_export_rows(
    session: AsyncSession, *, tenant_id: uuid.UUID, period: Period, names: UsageNames
) -> list[dict]:
    """Raw sums, exactly as recorded (bytes, device-days), so finance can re-derive
    every billed quantity: GB-months = byte-samples / 10^9 / hours in the month."""
    start, end = period.start, period.end
    blank = dict.fromkeys(EXPORT_COLUMNS, "")
    day = cast(func.timezone("UTC", UsageEvent.occurred_at), Date).label("day")
    rows = await session.execute(
        select(day, UsageEvent.meter, func.sum(UsageEvent.quantity), func.count())
        .where(*_in(tenant_id, start, end))
        .group_by(day, UsageEvent.meter)
        .order_by(day, UsageEvent.meter)
    )
    out = [
        {
            **blank,
            "period": str(period),
            "section": "daily",
            "date": when.isoformat(),
            "meter": meter,
            "quantity": int(total),
            "unit": RAW_UNITS.get(meter, ""),
            "events": int(count),
        }
        for when, meter, total, count in rows
    ]
    for node in await _egress_by_node(session, tenant_id, start, end, names):
        out.append(
            {
                **blank,
                "period": str(period),
                "section": "egress_by_node",
                "meter": EGRESS,
                "quantity": node.bytes,
                "unit": "bytes",
                "node_id": str(node.node_id) if node.node_id else "",
                "node": node.node or "",
            }
        )
    for version in await _egress_by_version(session, tenant_id, start, end, names):
        out.append(
            {
                **blank,
                "period": str(period),
                "section": "egress_by_model_version",
                "meter": EGRESS,
                "quantity": version.bytes,
                "unit": "bytes",
                "model_version_id": str(version.model_version_id)
                if version.model_version_id
                else "",
                "model": version.model or "",
                "version": version.version if version.version is not None else "",
            }
        )
    return out
