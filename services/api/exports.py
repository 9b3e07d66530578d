"""Finance exports as downloads: the same rows as CSV (for spreadsheets) or JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Literal

from litestar import MediaType, Response

ExportFormat = Literal["csv", "json"]


def export_response(
    rows: list[dict[str, Any]], *, columns: Sequence[str], fmt: ExportFormat, name: str
) -> Response:
    """An attachment named ``name.csv`` or ``name.json``. Litestar adds the charset to
    text media types itself, so none is given here (it would be sent twice)."""
    if fmt == "json":
        body: Any = rows
        media_type: str = MediaType.JSON
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        body, media_type = buffer.getvalue(), "text/csv"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )
