"""Usage events as CSV (a header row naming the import's fields, then one event a row),
turned into the same dicts the JSON import takes, so both are checked by one parser."""

from __future__ import annotations

import csv
import io
from typing import Any

from core.errors import BadRequest


def events_from_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
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
        if isinstance(event.get("quantity"), str) and event["quantity"].isdigit():
            event["quantity"] = int(event["quantity"])
        events.append(event)
    return events
