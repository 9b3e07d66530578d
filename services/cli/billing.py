"""``hangar billing``, ``hangar contracts`` and ``hangar tenants plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.choices import FORMAT, Format, OperatorPlan, SelfServePlan
from services.cli.client import JSON, OPERATOR, call, emit, print_json, say, show_table
from services.cli.finance import PERIOD, gbp, get_export, invoices, to_pence, usage

billing = typer.Typer(
    help="Your tenant's plan, spend cap and payment method (admin key).", no_args_is_help=True
)
contracts = typer.Typer(help="Enterprise contracts (platform operator).", no_args_is_help=True)


def register(app: typer.Typer, tenants: typer.Typer) -> None:
    app.add_typer(usage, name="usage")
    app.add_typer(invoices, name="invoices")
    app.add_typer(billing, name="billing")
    app.add_typer(contracts, name="contracts")
    tenants.command("plan")(tenants_plan)


# --- usage export (finance) ------------------------------------------------------------


@usage.command("export")
def usage_export(
    period: PERIOD = None,
    format: FORMAT = Format.csv,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file (default: stdout)")
    ] = None,
    json: JSON = False,
) -> None:
    """The month's usage for spreadsheets: one row per day per meter, then egress per
    node and per model version (admin or finance key)."""
    params = {"format": format.value, **({"period": period} if period else {})}
    get_export("/v1/usage/export", params, output, "HANGAR_TOKEN", json)


# --- billing (tenant admin) ----------------------------------------------------------


def _account(account: dict, json: bool = False) -> None:
    if json:
        return print_json(account)
    cap = gbp(account["spend_cap_pence"]) if account["spend_cap_pence"] is not None else "none"
    say.print(
        f"{account['tenant']}  plan: {account['plan_title']}"
        + (f" (ends {account['trial_ends_at'][:16]})" if account["trial_ends_at"] else "")
    )
    say.print(f"payment method: {account['payment_method'] or 'none'}   spend cap: {cap}")
    if account["blocked"]:
        say.print(
            "uploads, downloads and new nodes are paused until a plan is chosen", style="bold red"
        )


@billing.command("show")
def billing_show(json: JSON = False) -> None:
    """Plan, trial end, payment method and spend cap."""
    _account(call("GET", "/v1/billing/"), json)


@billing.command("plan")
def billing_plan(
    plan: Annotated[SelfServePlan, typer.Argument(case_sensitive=False)], json: JSON = False
) -> None:
    """Choose Starter or pay-as-you-go from now (needs a payment method on file)."""
    _account(call("PUT", "/v1/billing/plan", json={"plan": plan.value}), json)


@billing.command("cap")
def billing_cap(
    amount: Annotated[str, typer.Argument(help="pounds per month, or 'none'")], json: JSON = False
) -> None:
    """Set the pay-as-you-go monthly spend cap."""
    cap = None if amount.lower() == "none" else int(to_pence(amount, "cap").to_integral_value())
    _account(call("PUT", "/v1/billing/spend-cap", json={"cap_pence": cap}), json)


@billing.command("payment-method")
def billing_payment_method(
    pm: Annotated[str, typer.Argument(help="a Stripe payment method id, pm_...")],
    json: JSON = False,
) -> None:
    """Attach a Stripe payment method as the default for invoices."""
    _account(call("PUT", "/v1/billing/payment-method", json={"payment_method": pm}), json)


# --- operator: plans and contracts ----------------------------------------------------


def tenants_plan(
    tenant: Annotated[str, typer.Argument(help="tenant name or id")],
    plan: Annotated[OperatorPlan, typer.Argument(case_sensitive=False)],
    effective: Annotated[
        str | None, typer.Option("--from", help="ISO time it takes effect (default now)")
    ] = None,
    json: JSON = False,
) -> None:
    """Move a tenant to a plan (operator)."""
    account = call(
        "PUT",
        f"/v1/tenants/{tenant}/plan",
        token_env=OPERATOR,
        json={"plan": plan.value, "effective_at": effective},
    )
    _account(account, json)


Money = Annotated[str, typer.Option(help="pounds")]


@contracts.command("set")
def contracts_set(
    tenant: Annotated[str, typer.Argument(help="tenant name or id")],
    monthly_fee: Money = "0",
    device_month: Annotated[str, typer.Option(help="pounds per device-month")] = "5.00",
    storage_gb_month: Annotated[str, typer.Option(help="pounds per GB-month")] = "0.05",
    egress_gb: Annotated[str, typer.Option(help="pounds per GB downloaded")] = "0.14",
    included_device_months: Annotated[str, typer.Option()] = "0",
    included_storage_gb_months: Annotated[str, typer.Option()] = "0",
    included_egress_gb: Annotated[str, typer.Option()] = "0",
    max_nodes: Annotated[int | None, typer.Option(help="hard cap (402 past it)")] = None,
    max_storage_gb: Annotated[str | None, typer.Option(help="hard cap")] = None,
    max_egress_gb: Annotated[str | None, typer.Option(help="hard cap per month")] = None,
    spend_cap: Annotated[str | None, typer.Option(help="pounds per month")] = None,
    payment_terms: Annotated[int, typer.Option(help="days to pay")] = 30,
    effective: Annotated[
        str | None, typer.Option("--from", help="ISO time it takes effect (default now)")
    ] = None,
    note: Annotated[str, typer.Option()] = "",
    json: JSON = False,
) -> None:
    """Put a tenant on a new enterprise contract (operator)."""
    fee = to_pence(monthly_fee, "--monthly-fee")
    body = {
        "monthly_fee_pence": int(fee.to_integral_value()),
        "device_month_pence": str(to_pence(device_month, "--device-month")),
        "storage_gb_month_pence": str(to_pence(storage_gb_month, "--storage-gb-month")),
        "egress_gb_pence": str(to_pence(egress_gb, "--egress-gb")),
        "included_device_months": included_device_months,
        "included_storage_gb_months": included_storage_gb_months,
        "included_egress_gb": included_egress_gb,
        "max_nodes": max_nodes,
        "max_storage_gb": max_storage_gb,
        "max_egress_gb": max_egress_gb,
        "spend_cap_pence": int(to_pence(spend_cap, "--spend-cap")) if spend_cap else None,
        "payment_terms_days": payment_terms,
        "effective_at": effective,
        "note": note,
    }
    contract = call("PUT", f"/v1/tenants/{tenant}/contract", token_env=OPERATOR, json=body)
    emit(
        contract,
        f"{tenant} is on enterprise contract {contract['id']} from {contract['effective_at']}",
        json,
    )


@contracts.command("show")
def contracts_show(
    tenant: Annotated[str, typer.Argument(help="tenant name or id")], json: JSON = False
) -> None:
    """The tenant's current enterprise contract (operator)."""
    contract = call("GET", f"/v1/tenants/{tenant}/contract", token_env=OPERATOR)
    if json:
        return print_json(contract)
    show_table(["term", "value"], [[k, v] for k, v in contract.items()])
