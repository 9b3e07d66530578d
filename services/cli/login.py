"""``hangar login`` and ``hangar context``: remember a server and its tokens, so a new
terminal needs no exported variables. Stored by ``services.cli.contexts``."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer

from services.cli import contexts
from services.cli.client import (
    JSON,
    NOT_FOUND,
    USAGE,
    emit,
    fail,
    print_json,
    show_table,
    unreachable,
)

context = typer.Typer(
    help="Stored contexts (server URL and tokens); HANGAR_URL / HANGAR_TOKEN / "
    "HANGAR_OPERATOR_TOKEN still win.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.add_typer(context, name="context")


def _check_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        fail(f"--url {url!r} is not a URL ({exc}); e.g. http://127.0.0.1:8080", USAGE)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        fail(f"--url {url!r}: give http(s)://HOST[:PORT], e.g. http://127.0.0.1:8080", USAGE)
    return url.rstrip("/")


def _reachable(url: str) -> None:
    try:
        httpx.get(f"{url}/healthz", timeout=10)
    except httpx.TransportError as exc:
        unreachable(url, exc)


def _guarded(action):
    try:
        return action()
    except contexts.ContextError as exc:
        fail(str(exc), USAGE)


def login(
    url: Annotated[str, typer.Option(help="the Hangar API, e.g. https://hangar.example.com")],
    token: Annotated[str | None, typer.Option(help="an API key (hgr_...)")] = None,
    operator_token: Annotated[str | None, typer.Option(help="the platform operator token")] = None,
    name: Annotated[str, typer.Option(help="the context's name")] = "default",
    json: JSON = False,
) -> None:
    """Store URL and token(s) as context NAME (file mode 0600) and make it current."""
    if not token and not operator_token:
        fail("give --token (an API key) or --operator-token, or both", USAGE)
    url = _check_url(url)
    _reachable(url)
    path = _guarded(
        lambda: contexts.set_context(name, url=url, token=token, operator_token=operator_token)
    )
    emit(
        {"context": name, "url": url, "config": str(path)},
        f"logged in to {url} as context {name!r} (stored in {path})",
        json,
    )


@context.command("ls")
def context_ls(json: JSON = False) -> None:
    """Stored contexts (never their tokens); * marks the one in force."""
    config = _guarded(contexts.load)
    current = contexts.active_name(config)
    rows = [
        {
            "name": name,
            "url": ctx.get("url", ""),
            "current": name == current,
            "token": bool(ctx.get("token")),
            "operator_token": bool(ctx.get("operator_token")),
        }
        for name, ctx in sorted(config.contexts.items())
    ]
    if json:
        return print_json(rows)
    show_table(
        ["", "name", "url", "API key", "operator token"],
        [
            [
                "*" if r["current"] else "",
                r["name"],
                r["url"],
                "yes" if r["token"] else "",
                "yes" if r["operator_token"] else "",
            ]
            for r in rows
        ],
    )


@context.command("use")
def context_use(name: str, json: JSON = False) -> None:
    """Make context NAME the current one."""
    config = _guarded(contexts.load)
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none yet"
        fail(f"no context named {name!r} (contexts: {known})", NOT_FOUND)
    config.current = name
    _guarded(lambda: contexts.save(config))
    emit({"context": name}, f"now using context {name!r}", json)


@context.command("rm")
def context_rm(name: str, json: JSON = False) -> None:
    """Forget context NAME and its tokens."""
    config = _guarded(contexts.load)
    if config.contexts.pop(name, None) is None:
        fail(f"no context named {name!r}", NOT_FOUND)
    if config.current == name:
        config.current = None
    _guarded(lambda: contexts.save(config))
    emit({"removed": name}, f"removed context {name!r}", json)
