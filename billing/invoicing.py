"""Deprecated name of :mod:`billing.period_close`, kept for ``bench/metering.py``."""

from billing.period_close import close_period, next_numbers, rate_tenants

__all__ = ["close_period", "next_numbers", "rate_tenants"]
