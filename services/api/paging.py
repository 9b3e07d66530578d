"""One pagination convention for every list route: ``limit`` and ``after`` in the
query, the list as the body (so clients that read the list keep working), and a
``Link: <...>; rel="next"`` header while there are more. ``after`` is the opaque
cursor the previous page's link carries.

Routes whose service pages in SQL (``GET /v1/nodes``) build their own cursor and call
``link_response``; the others hand their (small, per-tenant) list to ``paged``, whose
cursor names the last item sent, so a page is never repeated or skipped while items
are only added.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.params import Parameter

from core.errors import BadRequest

T = TypeVar("T")

MAX_LIMIT = 5000
Limit = Annotated[
    int, Parameter(ge=1, le=MAX_LIMIT, description="items per page (the Link header has the next)")
]
After = Annotated[
    str | None,
    Parameter(
        max_length=512,
        description='the cursor from the previous page\'s `Link: <...>; rel="next"`',
    ),
]


def _encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(
            "`after` is not a cursor from this API: pass the one in the previous "
            "page's Link header, or leave it out for the first page"
        ) from None


def next_link(request: Request, cursor: str) -> str:
    """The same request with ``after`` set (the other filters and ``limit`` kept)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    return f'<{request.url.path}?{urlencode([*query, ("after", cursor)])}>; rel="next"'


def link_response(
    request: Request, items: list[Any], cursor: str | None, **headers: str
) -> Response:
    """The page, with a Link to the next one when ``cursor`` is set."""
    if cursor:
        headers["Link"] = next_link(request, cursor)
    return Response(items, headers=headers)


def paged(
    request: Request,
    items: Sequence[T],
    *,
    key: Callable[[T], Any],
    after: str | None,
    limit: int,
) -> Response:
    start = 0
    if after is not None:
        wanted = _decode(after)
        keys = [str(key(item)) for item in items]
        if wanted not in keys:
            raise BadRequest(
                "the item `after` points at is gone (removed since the last page): "
                "list again from the first page"
            )
        start = keys.index(wanted) + 1
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    cursor = _encode(str(key(page[-1]))) if more and page else None
    return link_response(request, page, cursor)
