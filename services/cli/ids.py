"""Ids as people type them: a full UUID, any unique prefix of one, or (for nodes
and tenants) a name.

Resolved here, on the client, from the list endpoints rather than on the server:
every route keeps its one full-UUID contract (no second meaning for ``/{id}`` to
document and test per route), a full UUID costs no extra request, and a prefix
costs one listing of the tenant's own objects, which the tenant may read anyway."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from services.cli.client import NOT_FOUND, USAGE, check, client, fail, unreachable

_PREFIX = re.compile(r"^[0-9a-fA-F-]+$")


def looks_like_prefix(given: str) -> bool:
    return bool(_PREFIX.match(given))


def _full(given: str) -> str | None:
    try:
        return str(uuid.UUID(given)) if len(given) == 36 else None
    except ValueError:
        return None


def list_all(
    path: str, *, token_env: str = "HANGAR_TOKEN", limit: int | None = None
) -> list[dict[str, Any]]:
    """Every row of a list endpoint (at most ``limit``), page by page: the server's own
    page size, then its ``X-Next-After`` header or ``Link: rel="next"``."""
    rows: list[dict[str, Any]] = []
    url, params = path, {}
    with client(token_env) as http:
        while limit is None or len(rows) < limit:
            if limit is not None:
                params["limit"] = min(1000, limit - len(rows))
            try:
                resp = http.get(url, params=params)
            except httpx.TransportError as exc:
                unreachable(http.base_url, exc)
            page = check(resp)
            rows += page["items"] if isinstance(page, dict) and "items" in page else page
            if after := resp.headers.get("x-next-after"):
                url, params = path, {"after": after}
            elif nxt := resp.links.get("next", {}).get("url"):
                url, params = nxt, {}
            else:
                break
    return rows if limit is None else rows[:limit]


def match(
    given: str, rows: list[dict[str, Any]], *, what: str, listing: str, by_name: bool = False
) -> dict[str, Any]:
    """The one row whose id is ``given`` or starts with it (or whose name is ``given``)."""
    wanted = given.strip().lower()
    found = {
        str(r["id"]): r
        for r in rows
        if (wanted and _PREFIX.match(wanted) and str(r["id"]).lower().startswith(wanted))
        or (by_name and r.get("name") == given)
    }
    if len(found) == 1:
        return next(iter(found.values()))
    names = " or name" if by_name else ""
    if not found:
        fail(f"no {what} has the id{names} {given!r}; `{listing}` lists them", NOT_FOUND)
    listed = list(found.values())
    matches = ", ".join(
        f"{r['id']}" + (f" ({r['name']})" if r.get("name") else "") for r in listed[:20]
    )
    more = f" and {len(listed) - 20} more" if len(listed) > 20 else ""
    fail(
        f"{given!r} matches {len(listed)} {what}s: {matches}{more}; give more of the id",
        USAGE,
        detail={"matches": list(found)},
    )


def resolve(
    given: str,
    path: str,
    *,
    what: str,
    listing: str,
    by_name: bool = False,
    token_env: str = "HANGAR_TOKEN",
) -> str:
    """The full id ``given`` stands for; a full UUID is taken as is (no listing)."""
    if full := _full(given):
        return full
    rows = list_all(path, token_env=token_env)
    return str(match(given, rows, what=what, listing=listing, by_name=by_name)["id"])
