"""The plans a tenant can be on: one vocabulary for the API, billing and the database.

It lives here, in the lowest layer that names a plan (a tenant is created with one),
so billing above uses the same enum instead of a second one and a map between them.
Billing gives each plan its terms; here is only what the names are, and which of them
a tenant may be created with.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class Plan(StrEnum):
    # Starter, after a free trial (new Starter tenants start on ``trial``).
    starter = "starter"
    payg = "payg"
    enterprise = "enterprise"
    # Starter's free trial: Starter's limits, nothing charged.
    trial = "trial"
    # The trial ended without a payment method: nothing charged, writes and downloads
    # refused until a plan is chosen. A state billing reaches, never one to pick.
    lapsed = "lapsed"


# What an operator may create a tenant with; billing turns Starter into its trial.
OPENING_PLANS = (Plan.starter, Plan.payg, Plan.enterprise)


def accepting(*plans: Plan) -> object:
    """A request field type accepting exactly ``plans``, by value: OpenAPI lists them and
    a refusal reads "Input should be 'starter', 'payg' or 'enterprise'"."""
    return Literal[tuple(plan.value for plan in plans)]  # type: ignore[valid-type]


OpeningPlan = accepting(*OPENING_PLANS)
