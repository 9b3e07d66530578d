"""The meters and their units. GB is 10**9 bytes, never GiB."""

from __future__ import annotations

from decimal import Decimal

DEVICE_DAY = "device_day"
STORAGE_SAMPLE = "storage_sample"
EGRESS = "egress"
# Reported by nodes; shown in usage, never billed.
INFERENCE = "inference"
# Model bytes nodes fetched from same-tenant peers; shown in usage, never billed.
PEER_TRANSFER = "peer_transfer"

METERS = (DEVICE_DAY, STORAGE_SAMPLE, EGRESS, INFERENCE, PEER_TRANSFER)
BILLED = (DEVICE_DAY, STORAGE_SAMPLE, EGRESS)

GB = Decimal(10) ** 9
GB_INT = 10**9


def gb(nbytes: int | Decimal) -> Decimal:
    return Decimal(nbytes) / GB


def format_gb(nbytes: int | Decimal) -> str:
    """Bytes for people: GB with two decimals, smaller amounts in MB or bytes."""
    if nbytes >= GB_INT:
        return f"{gb(nbytes):.2f} GB"
    if nbytes >= 10**6:
        return f"{Decimal(nbytes) / 10**6:.1f} MB"
    return f"{nbytes} B"
