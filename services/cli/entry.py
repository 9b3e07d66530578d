"""The ``hangar`` command itself: ``--version``, and one place where anything a user
can cause (a typo, a file that cannot be written, the server going away mid-command)
ends as one line and a documented exit code instead of a traceback."""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated, Any

import httpx
import typer

from services.cli.client import FAILED, USAGE, fail, mode, server_url, unreachable


def version_text() -> str:
    try:
        return f"hangar {metadata.version('hangar')}"
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "hangar (version unknown: not installed)"


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(version_text() + "\n")
        raise typer.Exit()


VERSION = Annotated[
    bool,
    typer.Option(
        "--version", help="print the version and exit", is_eager=True, callback=_show_version
    ),
]


def _is(exc: Exception, name: str) -> bool:
    # By name: typer ships its own copy of click (typer._click) in recent versions
    # and uses the click package in older ones; either raises these classes.
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _usage_message(exc: Any) -> str:
    command = exc.ctx.command_path if getattr(exc, "ctx", None) else "hangar"
    # typer reports a bad choice through pydantic, which prefixes "Value error, ".
    message = exc.format_message().replace("Value error, ", "")
    return f"{message} (see `{command} --help`)"


class HangarTyper(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        mode.json = "--json" in sys.argv[1:]  # before parsing: a usage error is JSON too
        mode.from_argv = True
        try:
            code = super().__call__(*args, standalone_mode=False, **kwargs)
        except typer.Exit as exc:  # from fail() inside the helpers above
            code = exc.exit_code
        except Exception as exc:  # noqa: BLE001 - sorted below; the rest is re-raised
            code = _report(exc)
        sys.exit(code if isinstance(code, int) else 0)


def _report(exc: Exception) -> int:
    """One line (JSON with --json) and the exit code for what a user can cause."""
    try:
        if _is(exc, "NoArgsIsHelpError"):  # the help was printed: nothing to add
            return USAGE
        if _is(exc, "UsageError"):
            fail(_usage_message(exc), USAGE)
        if _is(exc, "ClickException"):
            fail(exc.format_message(), getattr(exc, "exit_code", 0) or FAILED)
        if _is(exc, "Abort"):
            fail("interrupted", 130)
        if isinstance(exc, httpx.TransportError):  # mid-stream, past the per-call handling
            unreachable(_url(), exc)
        if isinstance(exc, httpx.HTTPError):
            fail(f"HTTP error talking to {_url()}: {exc}")
        if isinstance(exc, OSError):  # a file the user named cannot be read or written
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")
    except typer.Exit as done:
        return done.exit_code
    raise exc


def _url() -> str:
    try:
        return server_url()
    except typer.Exit:
        return "the configured URL"
