"""Plans and their terms: prices in pence (Decimal), included usage, hard limits.

Every plan, including an enterprise contract, is reduced to one ``Terms`` value,
so rating and quota checks have a single shape to work with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from billing.models import Contract
from metering.meters import DEVICE_DAY, EGRESS, GB_INT, STORAGE_SAMPLE
from tenants.plans import Plan

TITLES = {
    Plan.trial: "Starter trial",
    Plan.starter: "Starter",
    Plan.payg: "Pay-as-you-go",
    Plan.enterprise: "Enterprise",
    Plan.lapsed: "No plan (trial ended)",
}

UNITS = {DEVICE_DAY: "device-month", STORAGE_SAMPLE: "GB-month", EGRESS: "GB"}
METER_TITLES = {DEVICE_DAY: "Devices", STORAGE_SAMPLE: "Model storage", EGRESS: "Download egress"}


@dataclass(frozen=True)
class Limits:
    nodes: int | None = None
    storage_bytes: int | None = None
    # Per calendar month.
    egress_bytes: int | None = None


@dataclass(frozen=True)
class Terms:
    plan: Plan
    monthly_fee_pence: Decimal = Decimal(0)
    # Pence per unit (device-month, GB-month, GB); a meter not listed is not billed.
    rates: dict[str, Decimal] = field(default_factory=dict)
    # Units per full month included before the rate applies (prorated by day).
    included: dict[str, Decimal] = field(default_factory=dict)
    limits: Limits = Limits()
    spend_cap_pence: int | None = None
    payment_terms_days: int | None = None
    # Uploads, downloads and new nodes are refused (trial ended without a card).
    blocked: bool = False
    contract_id: object = None

    @property
    def title(self) -> str:
        return TITLES[self.plan]


STARTER_LIMITS = Limits(nodes=15, storage_bytes=50 * GB_INT, egress_bytes=100 * GB_INT)
STARTER_FEE_PENCE = Decimal(3500)
PAYG_RATES = {DEVICE_DAY: Decimal(500), STORAGE_SAMPLE: Decimal(5), EGRESS: Decimal(14)}


def terms_for(
    plan: Plan, *, contract: Contract | None = None, spend_cap_pence: int | None = None
) -> Terms:
    if plan is Plan.trial:
        return Terms(plan, limits=STARTER_LIMITS)
    if plan is Plan.starter:
        return Terms(plan, monthly_fee_pence=STARTER_FEE_PENCE, limits=STARTER_LIMITS)
    if plan is Plan.payg:
        return Terms(plan, rates=PAYG_RATES, spend_cap_pence=spend_cap_pence)
    if plan is Plan.lapsed:
        return Terms(plan, limits=STARTER_LIMITS, blocked=True)
    if contract is None:
        # Enterprise before the operator set a contract: nothing is charged or capped.
        return Terms(plan)
    return Terms(
        plan,
        monthly_fee_pence=Decimal(contract.monthly_fee_pence),
        rates={
            DEVICE_DAY: Decimal(contract.device_month_pence),
            STORAGE_SAMPLE: Decimal(contract.storage_gb_month_pence),
            EGRESS: Decimal(contract.egress_gb_pence),
        },
        included={
            DEVICE_DAY: Decimal(contract.included_device_months),
            STORAGE_SAMPLE: Decimal(contract.included_storage_gb_months),
            EGRESS: Decimal(contract.included_egress_gb),
        },
        limits=Limits(
            nodes=contract.max_nodes,
            storage_bytes=None
            if contract.max_storage_gb is None
            else int(contract.max_storage_gb * GB_INT),
            egress_bytes=None
            if contract.max_egress_gb is None
            else int(contract.max_egress_gb * GB_INT),
        ),
        spend_cap_pence=contract.spend_cap_pence,
        payment_terms_days=contract.payment_terms_days,
        contract_id=contract.id,
    )
