from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel


class ImportResult(BaseModel):
    received: int
    written: int
    # Already recorded under the same (tenant, event id): idempotent re-sends.
    duplicates: int


class MeterTotals(BaseModel):
    device_days: int
    device_months: Decimal
    storage_samples: int
    storage_gb_months: Decimal
    egress_bytes: int
    egress_gb: Decimal
    inference: int


class DailyUsage(BaseModel):
    date: date
    device_days: int
    # Average of that day's hourly samples.
    storage_gb: Decimal
    egress_bytes: int
    inference: int


class EgressByNode(BaseModel):
    node_id: uuid.UUID | None
    node: str | None
    bytes: int


class EgressByVersion(BaseModel):
    model_version_id: uuid.UUID | None
    model: str | None
    version: int | None
    bytes: int


class UsageReport(BaseModel):
    period: str
    days: int
    hours: int
    totals: MeterTotals
    daily: list[DailyUsage]
    egress_by_node: list[EgressByNode]
    egress_by_model_version: list[EgressByVersion]
