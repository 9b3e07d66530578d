"""``hangar usage`` and ``hangar invoices``: what tenants, finance and operators read."""

from __future__ import annotations

import contextlib
import csv
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.client import JSON, OPERATOR, call, check, client, out, print_json, show_table

PERIOD = Annotated[str | None, typer.Option(help="YYYY-MM (default: this month)")]

usage = typer.Typer(help="Usage per meter (admin or finance key).", invoke_without_command=True)
invoices = typer.Typer(
    help="Invoices (admin or finance key; --tenant uses the operator token).", no_args_is_help=True
)


def gbp(pence: int | str | Decimal) -> str:
    value = Decimal(pence) / 100
    return f"-£{-value:,.2f}" if value < 0 else f"£{value:,.2f}"


def _quantity(value: str) -> str:
    """'2.500000000' -> '2.5', '10' -> '10' (no trailing zeros, no exponent)."""
    return f"{Decimal(value).normalize():f}"


def to_pence(pounds: str, what: str) -> Decimal:
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
    show_table(
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
        show_table(
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
    show_table(
        ["number", "tenant", "period", "status", "total", "credited", "due", "stripe"],
        [
            [
                i["number"],
                i["tenant"],
                i["period"],
                i["status"],
                gbp(i["total_pence"]),
                gbp(i["credited_pence"]),
                (i["due_at"] or "")[:10],
                i["stripe_state"],
            ]
            for i in rows
        ],
    )


def _show_invoice(invoice: dict) -> None:
    out.print(
        f"[bold]{invoice['number'] or 'draft'}[/]  {invoice['tenant']}  {invoice['period']}  "
        f"{invoice['status']}  total [bold]{gbp(invoice['total_pence'])}[/]"
    )
    show_table(
        ["#", "description", "quantity", "unit", "unit price", "amount"],
        [
            [
                line["position"],
                line["description"],
                _quantity(line["quantity"]),
                line["unit"],
                gbp(line["unit_price_pence"]),
                gbp(line["amount_pence"]),
            ]
            for line in invoice["lines"]
        ],
    )
    for note in invoice.get("credit_notes", []):
        out.print(f"credit note {note['number']}: {gbp(note['amount_pence'])} ({note['reason']})")


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
    amount_pence = to_pence(amount, "--amount")
    if amount_pence != amount_pence.to_integral_value():
        raise typer.BadParameter("--amount must be whole pence")
    note = call(
        "POST",
        f"/v1/operator/invoices/{ref}/credit-notes",
        token_env=OPERATOR,
        json={"amount_pence": int(amount_pence), "reason": reason},
    )
    out.print(f"credit note {note['number']}: {gbp(note['amount_pence'])} against {ref}")


@invoices.command("void")
def invoices_void(ref: str) -> None:
    """Void an unpaid invoice (operator); Stripe follows on the next sync."""
    invoice = call("POST", f"/v1/operator/invoices/{ref}/void", token_env=OPERATOR)
    out.print(f"{invoice['number']} is {invoice['status']}")
