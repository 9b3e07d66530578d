"""The closed sets of values options take. Enums so ``--help`` lists the choices and
typer matches them case-insensitively (``Starter`` is ``starter``); a typo is a usage
error naming the choices. The API checks them again: these are for people."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class OpeningPlan(StrEnum):
    """A new tenant's plan (starter begins with the free trial)."""

    starter = "starter"
    payg = "payg"
    enterprise = "enterprise"


class OperatorPlan(StrEnum):
    """What the operator may move a tenant to."""

    trial = "trial"
    starter = "starter"
    payg = "payg"
    enterprise = "enterprise"


class SelfServePlan(StrEnum):
    """What a tenant admin may choose."""

    starter = "starter"
    payg = "payg"


class Format(StrEnum):
    csv = "csv"
    json = "json"


class InvoiceStatus(StrEnum):
    open = "open"
    paid = "paid"
    payment_failed = "payment_failed"
    void = "void"


FORMAT = Annotated[Format, typer.Option("--format", case_sensitive=False, help="csv or json")]
