"""The HTTP client behind every remote CLI command (reads HANGAR_URL, HANGAR_TOKEN)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

err = Console(stderr=True)
out = Console()

# Shared by every command module: the --json flag and the operator's token variable.
JSON = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
OPERATOR = "HANGAR_OPERATOR_TOKEN"


def fail(message: str, code: int = 1) -> NoReturn:
    # escape(): a message may hold brackets (a regex, "cron[minute='17']") that Rich
    # would otherwise read as markup and drop.
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def client(token_env: str = "HANGAR_TOKEN", timeout: float = 60) -> httpx.Client:
    url = os.environ.get("HANGAR_URL", "http://127.0.0.1:8080")
    token = os.environ.get(token_env, "")
    if not token:
        fail(
            f"set {token_env} to your {'operator token' if 'OPERATOR' in token_env else 'API key'}"
        )
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(timeout, connect=10),
    )


def check(response: httpx.Response) -> Any:
    """Return the JSON body, or exit with the server's own explanation."""
    if response.is_success:
        return response.json() if response.content else None
    try:
        body = response.json()
        message = body.get("error") or response.text
        if body.get("detail"):
            message += f" ({json.dumps(body['detail'])})"
    except ValueError:
        message = response.text or response.reason_phrase
    fail(f"{response.status_code}: {message}")


def call(
    method: str, path: str, *, token_env: str = "HANGAR_TOKEN", timeout: float = 60, **kwargs: Any
) -> Any:
    with client(token_env, timeout=timeout) as http:
        try:
            return check(http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            fail(
                f"cannot reach Hangar at {http.base_url}: {exc}. Is `hangar up` running? Is HANGAR_URL right?"
            )


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def show_table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns)
    for row in rows:
        # Text, not str: cells are data, never Rich markup.
        table.add_row(*[Text("" if c is None else str(c)) for c in row])
    out.print(table)
