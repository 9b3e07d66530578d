"""``hangar usage``, ``invoices``, ``billing``, ``contracts`` and ``tenants plan``."""

from __future__ import annotations

import contextlib
import csv
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli.client import call, check, client, out, print_json

OPERATOR = "HANGAR_OPERATOR_TOKEN"
JSON = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
PERIOD = Annotated[str | None, typer.Option(help="YYYY-MM (default: this month)")]

usage = typer.Typer(help="Usage per meter (admin or finance key).", invoke_without_command=True)
invoices = typer.Typer(
    help="Invoices (admin or finance key; --tenant uses the operator token).", no_args_is_help=True
)
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


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*["" if c is None else str(c) for c in row])
    out.print(table)


def _gbp(pence: int | str | Decimal) -> str:
    value = Decimal(pence) / 100
    return f"-£{-value:,.2f}" if value < 0 else f"£{value:,.2f}"


def _quantity(value: str) -> str:
    """'2.500000000' -> '2.5', '10' -> '10' (no trailing zeros, no exponent)."""
    return f"{Decimal(value).normalize():f}"


def _pence(pounds: str, what: str) -> Decimal:
    """'12.50' (pounds) -> 1250 pence; fractions of a penny allowed for unit prices."""
    try:
        value = Decimal(pounds.strip().lstrip("£")) * 100
    except InvalidOperation:
        raise typer.BadParameter(
            f"{what}: {pounds!r} is not an amount in pounds, e.g. 12.50"
        ) from None
    if value < 0:
        raise typer.BadParameter(f"{what} cannot be negative")
    return value


# --- usage ---------------------------------------------------------------------


@usage.callback()
def usage_show(ctx: typer.Context, period: PERIOD = None, json: JSON = False) -> None:
    """Totals per meter, a daily series, egress per node and model version, and limits."""
    if ctx.invoked_subcommand:
        return
    report = call("GET", "/v1/usage/", params={"period": period} if period else {})
    if json:
        return print_json(report)
    totals = report["totals"]
    out.print(f"[bold]{report['period']}[/]  plan: {report['plan_title']}")
    _table(
        ["meter", "quantity", "billed as"],
        [
            [
                "devices",
                f"{totals['device_days']} device-days",
                f"{totals['device_months']} device-months",
            ],
            [
                "storage",
                f"{totals['storage_samples']} hourly samples",
                f"{totals['storage_gb_months']} GB-months",
            ],
            ["egress", f"{totals['egress_bytes']:,} bytes", f"{totals['egress_gb']} GB"],
            ["inference", f"{totals['inference']:,}", "not billed"],
        ],
    )
    if report["limits"]:
        _table(
            ["limit", "used", "of", "%", ""],
            [
                [
                    lim["name"],
                    f"{lim['used']:,}",
                    f"{lim['limit']:,} {lim['unit']}",
                    lim["percent"],
                    lim["level"],
                ]
                for lim in report["limits"]
            ],
        )


def _read_events(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".csv":
        rows = []
        for row in csv.DictReader(text.splitlines()):
            event = {k: v for k, v in row.items() if v not in (None, "")}
            if "quantity" in event:
                # Left as text if not a number: the server names the event and the field.
                with contextlib.suppress(ValueError):
                    event["quantity"] = int(event["quantity"])
            rows.append(event)
        return rows
    if path.suffix in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data["events"] if isinstance(data, dict) else data


@usage.command("import")
def usage_import(
    file: Path,
    batch: Annotated[
        int, typer.Option(help="events per request (each request is all or nothing)")
    ] = 10_000,
) -> None:
    """Import usage events with explicit times (operator). FILE is JSON ({"events": [...]}
    or a list), JSON lines (.jsonl) or CSV with the same field names. Idempotent: after
    a failure, fix the file and run the same command again."""
    events = _read_events(file)
    written = duplicates = 0
    with client(OPERATOR, timeout=300) as http:
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            resp = http.post("/v1/usage/import", json={"events": chunk})
            if not resp.is_success:
                out.print(
                    f"batch of events {start}..{start + len(chunk) - 1} refused "
                    f"(event numbers below count from {start}); earlier batches were written"
                )
                check(resp)
            result = resp.json()
            written, duplicates = written + result["written"], duplicates + result["duplicates"]
    out.print(f"{len(events)} events: {written} written, {duplicates} already recorded")


# --- invoices --------------------------------------------------------------------


def _invoice_rows(rows: list[dict]) -> None:
    _table(
        ["number", "tenant", "period", "status", "total", "credited", "due", "stripe"],
        [
            [
                i["number"],
                i["tenant"],
                i["period"],
                i["status"],
                _gbp(i["total_pence"]),
                _gbp(i["credited_pence"]),
                (i["due_at"] or "")[:10],
                i["stripe_state"],
            ]
            for i in rows
        ],
    )


def _show_invoice(invoice: dict) -> None:
    out.print(
        f"[bold]{invoice['number'] or 'draft'}[/]  {invoice['tenant']}  {invoice['period']}  "
        f"{invoice['status']}  total [bold]{_gbp(invoice['total_pence'])}[/]"
    )
    _table(
        ["#", "description", "quantity", "unit", "unit price", "amount"],
        [
            [
                line["position"],
                line["description"],
                _quantity(line["quantity"]),
                line["unit"],
                _gbp(line["unit_price_pence"]),
                _gbp(line["amount_pence"]),
            ]
            for line in invoice["lines"]
        ],
    )
    for note in invoice.get("credit_notes", []):
        out.print(f"credit note {note['number']}: {_gbp(note['amount_pence'])} ({note['reason']})")


@invoices.command("preview")
def invoices_preview(period: PERIOD = None, json: JSON = False) -> None:
    """The open period's invoice as it stands (a draft)."""
    invoice = call("GET", "/v1/invoices/preview", params={"period": period} if period else {})
    return print_json(invoice) if json else _show_invoice(invoice)


def _filters(period: str | None, status: str | None, tenant: str | None) -> dict[str, str]:
    return {k: v for k, v in {"period": period, "status": status, "tenant": tenant}.items() if v}


STATUS = Annotated[str | None, typer.Option(help="open, paid, payment_failed or void")]
TENANT = Annotated[str | None, typer.Option(help="any tenant (name or id; operator token)")]


@invoices.command("ls")
def invoices_ls(
    period: PERIOD = None, status: STATUS = None, tenant: TENANT = None, json: JSON = False
) -> None:
    """Finalized invoices, newest period first."""
    if tenant:
        rows = call(
            "GET",
            "/v1/operator/invoices/",
            token_env=OPERATOR,
            params=_filters(period, status, tenant),
        )
    else:
        rows = call("GET", "/v1/invoices/", params=_filters(period, status, None))
    return print_json(rows) if json else _invoice_rows(rows)


@invoices.command("show")
def invoices_show(
    ref: Annotated[str, typer.Argument(help="invoice number (HGR-000123) or id")],
    operator: Annotated[bool, typer.Option("--operator", help="use the operator token")] = False,
    json: JSON = False,
) -> None:
    """An invoice with its lines and credit notes."""
    invoice = (
        call("GET", f"/v1/operator/invoices/{ref}", token_env=OPERATOR)
        if operator
        else call("GET", f"/v1/invoices/{ref}")
    )
    return print_json(invoice) if json else _show_invoice(invoice)


@invoices.command("export")
def invoices_export(
    format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    period: PERIOD = None,
    status: STATUS = None,
    tenant: TENANT = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file (default: stdout)")
    ] = None,
) -> None:
    """One row per invoice line (and per credit note), for spreadsheets and accounting."""
    if format not in ("csv", "json"):
        raise typer.BadParameter("--format is csv or json")
    params = {"format": format, **_filters(period, status, tenant)}
    path = "/v1/operator/invoices/export" if tenant else "/v1/invoices/export"
    with client(OPERATOR if tenant else "HANGAR_TOKEN") as http:
        resp = http.get(path, params=params)
        if not resp.is_success:
            check(resp)
    if output:
        output.write_text(resp.text)
        out.print(f"wrote {output}")
    else:
        print(resp.text, end="")


@invoices.command("credit")
def invoices_credit(
    ref: str,
    amount: Annotated[str, typer.Option(help="pounds, e.g. 12.50")],
    reason: Annotated[str, typer.Option(help="why; shown to the tenant")],
) -> None:
    """Issue a credit note against a finalized invoice (operator)."""
    pence = _pence(amount, "--amount")
    if pence != pence.to_integral_value():
        raise typer.BadParameter("--amount must be whole pence")
    note = call(
        "POST",
        f"/v1/operator/invoices/{ref}/credit-notes",
        token_env=OPERATOR,
        json={"amount_pence": int(pence), "reason": reason},
    )
    out.print(f"credit note {note['number']}: {_gbp(note['amount_pence'])} against {ref}")


@invoices.command("void")
def invoices_void(ref: str) -> None:
    """Void an unpaid invoice (operator); Stripe follows on the next sync."""
    invoice = call("POST", f"/v1/operator/invoices/{ref}/void", token_env=OPERATOR)
    out.print(f"{invoice['number']} is {invoice['status']}")


# --- billing (tenant admin) ----------------------------------------------------------


def _account(account: dict) -> None:
    cap = _gbp(account["spend_cap_pence"]) if account["spend_cap_pence"] is not None else "none"
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
    cap = None if amount.lower() == "none" else int(_pence(amount, "cap").to_integral_value())
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
    fee = _pence(monthly_fee, "--monthly-fee")
    body = {
        "monthly_fee_pence": int(fee.to_integral_value()),
        "device_month_pence": str(_pence(device_month, "--device-month")),
        "storage_gb_month_pence": str(_pence(storage_gb_month, "--storage-gb-month")),
        "egress_gb_pence": str(_pence(egress_gb, "--egress-gb")),
        "included_device_months": included_device_months,
        "included_storage_gb_months": included_storage_gb_months,
        "included_egress_gb": included_egress_gb,
        "max_nodes": max_nodes,
        "max_storage_gb": max_storage_gb,
        "max_egress_gb": max_egress_gb,
        "spend_cap_pence": int(_pence(spend_cap, "--spend-cap")) if spend_cap else None,
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
    _table(["term", "value"], [[k, v] for k, v in contract.items()])
