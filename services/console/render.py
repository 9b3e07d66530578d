"""Small helpers shared by the console's pages: render a page, read a form, redirect."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Redirect, Template

from core.errors import BadRequest
from services.console.session import ConsoleUser


def page(template: str, user: ConsoleUser, title: str, *, status: int = 200, **context: Any):
    return Template(
        template_name=template,
        context={"user": user, "title": title, **context},
        status_code=status,
    )


def back(path: str) -> Redirect:
    # 303: the browser follows with a GET, so reloading never re-submits the form.
    return Redirect(path, status_code=303)


async def form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str) and k != "_csrf_token"}


def required(data: dict[str, str], name: str, label: str) -> str:
    value = data.get(name, "").strip()
    if not value:
        raise BadRequest(f"{label} is required")
    return value


def parse_labels(text: str, what: str = "labels") -> dict[str, str]:
    """``k=v`` pairs separated by commas, spaces or new lines (the CLI's syntax)."""
    labels: dict[str, str] = {}
    for part in text.replace(",", " ").split():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise BadRequest(f"invalid {what} {part!r}: write key=value, separated by commas")
        labels[key] = value
    return labels
