"""``hangar usage`` and ``hangar invoices``: what tenants, finance and operators read."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from services.cli import ids
from services.cli.choices import FORMAT, Format, InvoiceStatus
from services.cli.client import (
    JSON,
    OPERATOR,
    USAGE,
    call,
    check,
    client,
    emit,
    err,
    fail,
    print_json,
    say,
    show_table,
    unreachable,
)

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
    say.print(f"{report['period']}  plan: {report['plan_title']}")
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


IMPORT_FORMAT = """\b
Each event has these fields (CSV: a header row with these names, in any order):
  tenant_id         the tenant's id; or `tenant` with its name or id (resolved by the CLI)
  id                your event id, 1-128 characters: the idempotency key per tenant
  meter             device_day | storage_sample | egress | inference | peer_transfer
  quantity          a whole number, in the meter's unit:
                      device_day: device-days (1 = one node enrolled on that UTC day)
                      storage_sample: bytes stored at that hourly sample
                      egress, peer_transfer: bytes sent
                      inference: tokens served (shown, never billed)
  occurred_at       ISO 8601 time with an offset, e.g. 2026-04-03T10:00:00Z
  node_id           optional node id
  model_version_id  optional model version id
  attrs             optional JSON object (not in CSV)
CSV example:
  tenant,id,meter,quantity,occurred_at
  acme,evt-1,egress,1500000000,2026-04-03T10:00:00Z"""


def _tenant_ids(events: list[dict[str, Any]]) -> None:
    """Replace each event's ``tenant`` (a name or id) by ``tenant_id``."""
    named = {e["tenant"] for e in events if isinstance(e, dict) and "tenant" in e}
    if not named:
        return
    tenants = ids.list_all("/v1/tenants/", token_env=OPERATOR)
    found = {
        name: ids.match(
            str(name), tenants, what="tenant", listing="hangar tenants ls", by_name=True
        )["id"]
        for name in named
    }
    for event in events:
        if isinstance(event, dict) and "tenant" in event:
            event["tenant_id"] = str(found[event.pop("tenant")])


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
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON ({exc}); see `hangar usage import --help`", USAGE)
    events = data.get("events") if isinstance(data, dict) else data
    if not isinstance(events, list):
        fail(f'{path}: expected {{"events": [...]}} or a JSON list of events', USAGE)
    return events


@usage.command("import", epilog=IMPORT_FORMAT)
def usage_import(
    file: Path,
    batch: Annotated[
        int, typer.Option(min=1, help="events per request (each request is all or nothing)")
    ] = 10_000,
    json: JSON = False,
) -> None:
    """Import usage events with explicit times (operator). FILE is JSON ({"events": [...]}
    or a list), JSON lines (.jsonl) or CSV (.csv). Idempotent: after a failure, fix the
    file and run the same command again.
    """
    events = _read_events(file)
    _tenant_ids(events)
    written = duplicates = 0
    with client(OPERATOR, timeout=300) as http:
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            try:
                resp = http.post("/v1/usage/import", json={"events": chunk})
            except httpx.TransportError as exc:
                unreachable(http.base_url, exc)
            if not resp.is_success:
                err.print(
                    f"batch of events {start}..{start + len(chunk) - 1} refused "
                    f"(event numbers below count from {start}); earlier batches were written",
                    markup=False,
                )
                check(resp)
            result = resp.json()
            written, duplicates = written + result["written"], duplicates + result["duplicates"]
    emit(
        {"received": len(events), "written": written, "duplicates": duplicates},
        f"{len(events)} events: {written} written, {duplicates} already recorded",
        json,
    )


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
    say.print(
        f"{invoice['number'] or 'draft'}  {invoice['tenant']}  {invoice['period']}  "
        f"{invoice['status']}  total {gbp(invoice['total_pence'])}"
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
        say.print(f"credit note {note['number']}: {gbp(note['amount_pence'])} ({note['reason']})")


@invoices.command("preview")
def invoices_preview(period: PERIOD = None, json: JSON = False) -> None:
    """The open period's invoice as it stands (a draft)."""
    invoice = call("GET", "/v1/invoices/preview", params={"period": period} if period else {})
    return print_json(invoice) if json else _show_invoice(invoice)


def _filters(
    period: str | None, status: InvoiceStatus | None, tenant: str | None
) -> dict[str, str]:
    chosen = {"period": period, "status": status.value if status else None, "tenant": tenant}
    return {k: v for k, v in chosen.items() if v}


STATUS = Annotated[InvoiceStatus | None, typer.Option(case_sensitive=False)]
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
    format: FORMAT = Format.csv,
    period: PERIOD = None,
    status: STATUS = None,
    tenant: TENANT = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file (default: stdout)")
    ] = None,
    json: JSON = False,
) -> None:
    """One row per invoice line (and per credit note), for spreadsheets and accounting."""
    params = {"format": format.value, **_filters(period, status, tenant)}
    path = "/v1/operator/invoices/export" if tenant else "/v1/invoices/export"
    get_export(path, params, output, OPERATOR if tenant else "HANGAR_TOKEN", json)


def get_export(
    path: str, params: dict[str, str], output: Path | None, token_env: str, json: bool
) -> None:
    """An export to stdout, or to ``output`` (then one line saying so, JSON with --json)."""
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        fail(f"cannot write {output}: give a file in a directory that exists", USAGE)
    with client(token_env) as http:
        try:
            resp = http.get(path, params=params)
        except httpx.TransportError as exc:
            unreachable(http.base_url, exc)
        if not resp.is_success:
            check(resp)
    if output is None:
        sys.stdout.write(resp.text)
        return
    output.write_text(resp.text)
    emit({"path": str(output), "bytes": len(resp.content)}, f"wrote {output}", json)


@invoices.command("credit")
def invoices_credit(
    ref: str,
    amount: Annotated[str, typer.Option(help="pounds, e.g. 12.50")],
    reason: Annotated[str, typer.Option(help="why; shown to the tenant")],
    json: JSON = False,
) -> None:
    """Issue a credit note against a finalized invoice (operator)."""
    amount_pence = to_pence(amount, "--amount")
    if amount_pence != amount_pence.to_integral_value():
        raise typer.BadParameter("must be whole pence", param_hint="--amount")
    note = call(
        "POST",
        f"/v1/operator/invoices/{ref}/credit-notes",
        token_env=OPERATOR,
        json={"amount_pence": int(amount_pence), "reason": reason},
    )
    emit(note, f"credit note {note['number']}: {gbp(note['amount_pence'])} against {ref}", json)


@invoices.command("void")
def invoices_void(ref: str, json: JSON = False) -> None:
    """Void an unpaid invoice (operator); Stripe follows on the next sync."""
    invoice = call("POST", f"/v1/operator/invoices/{ref}/void", token_env=OPERATOR)
    emit(invoice, f"{invoice['number']} is {invoice['status']}", json)
