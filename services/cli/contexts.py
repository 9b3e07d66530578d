"""CLI contexts: which Hangar to talk to and with which token, kept in the user's
config dir (``$XDG_CONFIG_HOME/hangar/config.toml``, else ``~/.config/hangar/``),
readable by the user only (0600), as ``gh`` and ``kubectl`` keep theirs.

Environment variables always win over the stored context: ``HANGAR_URL``,
``HANGAR_TOKEN`` (an API key) and ``HANGAR_OPERATOR_TOKEN``. ``HANGAR_CONTEXT``
picks a context other than the current one for one command."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"
LOCAL = "local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# The stored field behind each token variable.
FIELDS = {"HANGAR_TOKEN": "token", "HANGAR_OPERATOR_TOKEN": "operator_token"}


class ContextError(Exception):
    """A problem with the config file or a context name, said so a user can fix it."""


@dataclass
class Config:
    current: str | None
    contexts: dict[str, dict[str, str]]


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hangar" / "config.toml"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ContextError(
            f"context name {name!r}: use letters, digits, '.', '_' or '-' (e.g. prod, local)"
        )
    return name


def load() -> Config:
    path = config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Config(current=None, contexts={})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ContextError(f"{path} is not valid TOML ({exc}); fix or delete it") from None
    contexts = data.get("contexts", {})
    if not isinstance(contexts, dict):
        raise ContextError(f"{path}: 'contexts' must be a table; fix or delete the file")
    return Config(
        current=data.get("current"),
        contexts={
            name: {k: str(v) for k, v in ctx.items() if isinstance(v, str)}
            for name, ctx in contexts.items()
            if isinstance(ctx, dict)
        },
    )


def _toml_string(value: str) -> str:
    # A JSON string (ASCII, with \uXXXX escapes) is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def save(config: Config) -> Path:
    """Write the whole file atomically, created 0600 (it holds tokens)."""
    lines = []
    if config.current:
        lines.append(f"current = {_toml_string(config.current)}")
    for name, ctx in sorted(config.contexts.items()):
        lines += ["", f"[contexts.{_toml_string(name)}]"]
        lines += [f"{key} = {_toml_string(value)}" for key, value in sorted(ctx.items())]
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)  # an older file left by another umask
    os.replace(tmp, path)
    return path


def set_context(
    name: str,
    *,
    url: str,
    token: str | None = None,
    operator_token: str | None = None,
    make_current: bool = True,
) -> Path:
    """Create or update context ``name``; fields not given keep their stored value."""
    config = load()
    ctx = config.contexts.setdefault(check_name(name), {})
    ctx["url"] = url.rstrip("/")
    if token:
        ctx["token"] = token
    if operator_token:
        ctx["operator_token"] = operator_token
    if make_current:
        config.current = name
    return save(config)


def write_local_context(url: str, token: str, *, name: str = LOCAL) -> Path:
    """What ``hangar up`` calls once it serves: a context ``local`` holding its URL
    and its operator token, made current only if the user has none yet (a context
    the user chose, e.g. prod, stays chosen)."""
    config = load()
    return set_context(
        name,
        url=url,
        operator_token=token,
        make_current=config.current is None or config.current == name,
    )


def active_name(config: Config) -> str | None:
    return os.environ.get("HANGAR_CONTEXT") or config.current


def active() -> tuple[str | None, dict[str, str]]:
    """The context in force (name, fields); an unknown HANGAR_CONTEXT is an error."""
    config = load()
    name = active_name(config)
    if name is None:
        return None, {}
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none yet"
        raise ContextError(
            f"no context named {name!r} (contexts: {known}); `hangar login` creates one"
        )
    return name, config.contexts[name]


def url() -> str:
    if from_env := os.environ.get("HANGAR_URL"):
        return from_env
    return active()[1].get("url", DEFAULT_URL)


def token(variable: str) -> str:
    """The token for ``variable`` (HANGAR_TOKEN or HANGAR_OPERATOR_TOKEN): the
    environment first, else the active context; '' when neither has one."""
    if from_env := os.environ.get(variable):
        return from_env
    ctx = active()[1]
    # HANGAR_URL pointing at another server: the context's token is not for it.
    if (os.environ.get("HANGAR_URL") or ctx.get("url", "")).rstrip("/") != ctx.get("url"):
        return ""
    return ctx.get(FIELDS[variable], "")
