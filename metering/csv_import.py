"""Usage events as CSV (a header row naming the import's fields, then one event a row),
turned into the same dicts the JSON import takes, so both are checked by one parser."""

from __future__ import annotations

import csv
import io
from typing import Any

from core.errors import BadRequest


def events_from_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _events(reader)
    except csv.Error as exc:
        # A cell past the csv module's field limit (131,072 characters), ...; line_num
        # counts the lines read before the record that failed.
        line = reader.line_num + 1
        raise BadRequest(f"the CSV is not readable at line {line}: {exc}") from None


def _events(reader: csv.DictReader) -> list[dict[str, Any]]:
    if not reader.fieldnames:
        raise BadRequest(
            "the CSV has no header row: start with tenant_id,id,meter,quantity,occurred_at"
        )
    events = []
    for row in reader:
        # Empty cells are absent fields; a row longer than the header lands under None.
        event: dict[str, Any] = {
            k: v for k, v in row.items() if k is not None and v not in ("", None)
        }
        if None in row:
            event["(extra columns)"] = row[None]
        quantity = event.get("quantity")
        # ASCII digits only: "²".isdigit() is True but int("²") raises. Anything else
        # stays a string, which the event parser refuses with the row's position.
        if isinstance(quantity, str) and quantity.isascii() and quantity.isdigit():
            event["quantity"] = int(quantity)
        events.append(event)
    return events
