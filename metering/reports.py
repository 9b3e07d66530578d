"""Reading usage back: totals per meter, daily series, egress per node and version."""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from metering.meters import DEVICE_DAY, EGRESS, GB, INFERENCE, STORAGE_SAMPLE
from metering.models import UsageEvent
from metering.periods import Period
from metering.schemas import DailyUsage, EgressByNode, EgressByVersion, MeterTotals, UsageReport
from registry.models import Model, ModelVersion
from services.fleet.models import Node

PLACES = Decimal("0.000001")


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
    session: AsyncSession, *, tenant_id: uuid.UUID, period: Period
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
        egress_by_node=await _egress_by_node(session, tenant_id, start, end),
        egress_by_model_version=await _egress_by_version(session, tenant_id, start, end),
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


async def _egress_by_node(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime
) -> list[EgressByNode]:
    rows = await session.execute(
        select(UsageEvent.node_id, Node.name, func.sum(UsageEvent.quantity).label("total"))
        .outerjoin(Node, Node.id == UsageEvent.node_id)
        .where(*_in(tenant_id, start, end), UsageEvent.meter == EGRESS)
        .group_by(UsageEvent.node_id, Node.name)
        .order_by(func.sum(UsageEvent.quantity).desc())
    )
    return [
        EgressByNode(node_id=node_id, node=name, bytes=int(total)) for node_id, name, total in rows
    ]


async def _egress_by_version(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime
) -> list[EgressByVersion]:
    # Outer joins: a deleted version's egress is still billed and still listed, by id.
    rows = await session.execute(
        select(
            UsageEvent.model_version_id,
            Model.name,
            ModelVersion.number,
            func.sum(UsageEvent.quantity),
        )
        .outerjoin(ModelVersion, ModelVersion.id == UsageEvent.model_version_id)
        .outerjoin(Model, Model.id == ModelVersion.model_id)
        .where(*_in(tenant_id, start, end), UsageEvent.meter == EGRESS)
        .group_by(UsageEvent.model_version_id, Model.name, ModelVersion.number)
        .order_by(func.sum(UsageEvent.quantity).desc())
    )
    return [
        EgressByVersion(model_version_id=vid, model=name, version=number, bytes=int(total))
        for vid, name, number, total in rows
    ]


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
}


async def usage_export_rows(
    session: AsyncSession, *, tenant_id: uuid.UUID, period: Period
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
    for node in await _egress_by_node(session, tenant_id, start, end):
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
    for version in await _egress_by_version(session, tenant_id, start, end):
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


def export_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
