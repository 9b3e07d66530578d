"""``hangar billing``, ``hangar contracts`` and ``hangar tenants plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.client import JSON, OPERATOR, call, check, client, out, print_json, show_table
from services.cli.finance import PERIOD, gbp, invoices, to_pence, usage

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
    format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file (default: stdout)")
    ] = None,
) -> None:
    """The month's usage for spreadsheets: one row per day per meter, then egress per
    node and per model version (admin or finance key)."""
    if format not in ("csv", "json"):
        raise typer.BadParameter("--format is csv or json")
    params = {"format": format, **({"period": period} if period else {})}
    with client("HANGAR_TOKEN") as http:
        resp = http.get("/v1/usage/export", params=params)
        if not resp.is_success:
            check(resp)
    if output:
        output.write_text(resp.text)
        out.print(f"wrote {output}")
    else:
        print(resp.text, end="")


# --- billing (tenant admin) ----------------------------------------------------------


def _account(account: dict) -> None:
    cap = gbp(account["spend_cap_pence"]) if account["spend_cap_pence"] is not None else "none"
    out.print(
        f"[bold]{account['tenant']}[/]  plan: {account['plan_title']}"
        + (f" (ends {account['trial_ends_at'][:16]})" if account["trial_ends_at"] else "")
    )
    out.print(f"payment method: {account['payment_method'] or 'none'}   spend cap: {cap}")
    if account["blocked"]:
        out.print("[bold red]uploads, downloads and new nodes are paused until a plan is chosen[/]")


@billing.command("show")
def billing_show(json: JSON = False) -> None:
    """Plan, trial end, payment method and spend cap."""
    account = call("GET", "/v1/billing/")
    return print_json(account) if json else _account(account)


@billing.command("plan")
def billing_plan(plan: Annotated[str, typer.Argument(help="starter or payg")]) -> None:
    """Choose Starter or pay-as-you-go from now (needs a payment method on file)."""
    _account(call("PUT", "/v1/billing/plan", json={"plan": plan}))


@billing.command("cap")
def billing_cap(amount: Annotated[str, typer.Argument(help="pounds per month, or 'none'")]) -> None:
    """Set the pay-as-you-go monthly spend cap."""
    cap = None if amount.lower() == "none" else int(to_pence(amount, "cap").to_integral_value())
    _account(call("PUT", "/v1/billing/spend-cap", json={"cap_pence": cap}))


@billing.command("payment-method")
def billing_payment_method(
    pm: Annotated[str, typer.Argument(help="a Stripe payment method id, pm_...")],
) -> None:
    """Attach a Stripe payment method as the default for invoices."""
    _account(call("PUT", "/v1/billing/payment-method", json={"payment_method": pm}))


# --- operator: plans and contracts ----------------------------------------------------


def tenants_plan(
    tenant: Annotated[str, typer.Argument(help="tenant name or id")],
    plan: Annotated[str, typer.Argument(help="trial, starter, payg or enterprise")],
    effective: Annotated[
        str | None, typer.Option("--from", help="ISO time it takes effect (default now)")
    ] = None,
) -> None:
    """Move a tenant to a plan (operator)."""
    account = call(
        "PUT",
        f"/v1/tenants/{tenant}/plan",
        token_env=OPERATOR,
        json={"plan": plan, "effective_at": effective},
    )
    _account(account)


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
    if json:
        return print_json(contract)
    out.print(
        f"{tenant} is on enterprise contract {contract['id']} from {contract['effective_at']}"
    )


@contracts.command("show")
def contracts_show(tenant: str, json: JSON = False) -> None:
    """The tenant's current enterprise contract (operator)."""
    contract = call("GET", f"/v1/tenants/{tenant}/contract", token_env=OPERATOR)
    if json:
        return print_json(contract)
    show_table(["term", "value"], [[k, v] for k, v in contract.items()])
