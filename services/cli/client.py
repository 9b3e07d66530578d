"""What every remote CLI command shares: where the server is and which token to send
(environment first, then the stored context), the ``--json`` flag, output that is
text and never Rich markup, errors with documented exit codes, and tables that never
cut an id short."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from services.cli import contexts

# What commands print. markup=False: every message carries data (a regex,
# "cron[minute=17]") that Rich would otherwise read as markup and drop; soft_wrap: a
# long id or key is never broken across lines.
say = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
# Only for fixed text that styles itself with markup (the `hangar up` banner).
out = Console(soft_wrap=True)

OPERATOR = "HANGAR_OPERATOR_TOKEN"

# Exit codes (README "Commands" documents them).
FAILED = 1  # the server refused (400, 409, ...) or a local problem (a file, a digest)
USAGE = 2  # a bad option or argument, an ambiguous id prefix
NOT_FOUND = 3  # 404, or no object matches the id, prefix or name given
REFUSED_BY_PLAN = 4  # 402: the plan's limit or a paused trial
UNREACHABLE = 5  # no connection, a timeout, or the server went away mid-command
NOT_ALLOWED = 6  # 401/403: a missing, wrong or too narrow token
_BY_STATUS = {401: NOT_ALLOWED, 402: REFUSED_BY_PLAN, 403: NOT_ALLOWED, 404: NOT_FOUND}


class _Mode:
    json = False
    # Set by `hangar` itself from the whole command line before parsing, so that even
    # a usage error in an option before --json is reported as JSON.
    from_argv = False

    def reset(self) -> None:
        if not self.from_argv:
            self.json = False


mode = _Mode()


def _json_mode(value: bool) -> bool:
    if value:  # as soon as parsed: a later error of this command is JSON too
        mode.json = True
    return value


JSON = Annotated[
    bool,
    typer.Option(
        "--json", help="print JSON for scripts (errors: JSON on stderr)", callback=_json_mode
    ),
]


def fail(
    message: str,
    code: int = FAILED,
    *,
    status: int | None = None,
    error_code: str | None = None,
    detail: Any = None,
) -> NoReturn:
    if mode.json:
        body = {
            "error": message,
            "detail": detail,
            "code": error_code or _local_code(code),
            "status": status,
            "exit_code": code,
        }
        sys.stderr.write(json.dumps(body, default=str) + "\n")
    else:
        err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _local_code(code: int) -> str:
    return {
        USAGE: "usage",
        NOT_FOUND: "not_found",
        REFUSED_BY_PLAN: "payment_required",
        UNREACHABLE: "unreachable",
        NOT_ALLOWED: "unauthorized",
    }.get(code, "failed")


def _token(token_env: str) -> str:
    try:
        return contexts.token(token_env)
    except contexts.ContextError as exc:
        fail(str(exc), USAGE)


def server_url() -> str:
    try:
        return contexts.url()
    except contexts.ContextError as exc:
        fail(str(exc), USAGE)


def client(token_env: str = "HANGAR_TOKEN", timeout: float = 60) -> httpx.Client:
    url = server_url()
    token = _token(token_env)
    if not token:
        what = "operator token" if token_env == OPERATOR else "API key"
        flag = "--operator-token" if token_env == OPERATOR else "--token"
        fail(
            f"no {what}: set {token_env}, or store one with `hangar login --url {url} {flag} ...`",
            NOT_ALLOWED,
        )
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(timeout, connect=10),
    )


def unreachable(base_url: Any, exc: Exception) -> NoReturn:
    fail(
        f"server unreachable at {base_url} ({type(exc).__name__}: {exc or 'no answer'}). "
        "Is `hangar up` running? Is HANGAR_URL (or the context from `hangar login`) right?",
        UNREACHABLE,
    )


def check(response: httpx.Response) -> Any:
    """Return the JSON body, or exit with the server's own explanation."""
    if response.is_success:
        try:
            return response.json() if response.content else None
        except ValueError:
            fail(f"the server answered {response.status_code} with a body that is not JSON")
    error_code = detail = None
    try:
        body = response.json()
        message = body.get("error") or response.text
        error_code, detail = body.get("code"), body.get("detail")
        if detail:
            message += f" ({json.dumps(detail)})"
    except (ValueError, AttributeError):
        message = response.text or response.reason_phrase
    if response.status_code >= 500:
        code = UNREACHABLE if response.status_code in (502, 503, 504) else FAILED
    else:
        code = _BY_STATUS.get(response.status_code, FAILED)
    fail(
        f"{response.status_code}: {message}",
        code,
        status=response.status_code,
        error_code=error_code,
        detail=detail,
    )


def call(
    method: str, path: str, *, token_env: str = "HANGAR_TOKEN", timeout: float = 60, **kwargs: Any
) -> Any:
    with client(token_env, timeout=timeout) as http:
        try:
            return check(http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            unreachable(http.base_url, exc)


def print_json(data: Any) -> None:
    # Plain text on stdout: Rich would wrap long strings at the terminal width.
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit(data: Any, text: str, json_out: bool) -> None:
    """What every command that changes something prints: ``data`` with --json,
    else one line of ``text``."""
    if json_out:
        print_json(data)
    else:
        say.print(text)


def show_table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns)
    for row in rows:
        # Text, not str: cells are data, never Rich markup.
        table.add_row(*[Text("" if c is None else str(c)) for c in row])
    # Rendered at its natural width even past the terminal's (the terminal wraps the
    # line): Rich would otherwise shrink columns and cut ids to '87129ef2-5d3a-…'.
    natural = Measurement.get(say, say.options.update_width(10_000), table).maximum
    if natural <= say.width:
        return say.print(table)
    Console(markup=False, highlight=False, soft_wrap=True, width=natural).print(table)
