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

# The most one tenant can record of a meter in one calendar month (UTC), so a month
# can always be invoiced: every sum fits the invoice line's bigint ``usage_total``,
# and rated at the plans' prices every amount fits in pence. Far above any real fleet,
# far below 2**63. (metering.bounds checks the sums; one event is at most its month.)
MONTH_LIMITS = {
    DEVICE_DAY: 10**12,  # a billion nodes every day; at £5.00/device-month ~£2·10^11
    STORAGE_SAMPLE: 7 * 10**18,  # 9 EB held every hour of a 31-day month
    EGRESS: 10**18,  # an exabyte sent; at £0.14/GB ~£1.4·10^8
    INFERENCE: 10**18,
    PEER_TRANSFER: 10**18,
}

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
