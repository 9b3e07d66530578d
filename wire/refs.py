"""The one parser for model names, refs (``NAME``, ``NAME:TAG``, ``NAME:3``,
``NAME@sha256:…``) and digests, shared by the API, the CLI and the node.

Errors are ``InvalidRef`` (a ``ValueError``), because this module sits below every
error hierarchy: the API maps it to a 400, the CLI prints it, pydantic reports it."""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RULE = (
    "lowercase letters, digits and '-', '_', '.', starting with a letter or digit, "
    "at most 128 characters"
)
DIGEST_RULE = "'sha256:' followed by 64 lowercase hex digits"
REF_HELP = (
    "name the model as NAME:TAG (follows the tag when it moves) or NAME@sha256:<hex> (one version)"
)
DEFAULT_TAG = "latest"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class InvalidRef(ValueError):
    """A name, tag, ref or digest that does not follow the rules; the message says which."""


def check_name(value: str, *, what: str = "model name") -> str:
    if not _NAME.fullmatch(value):
        raise InvalidRef(f"invalid {what} {value!r}: use {NAME_RULE}")
    return value


def check_tag(value: str) -> str:
    """A tag a version can carry: a name that cannot be mistaken for a version number
    or a digest (``m:1`` means version 1, so a tag ``1`` could never be pulled)."""
    check_name(value, what="tag")
    if value.startswith("sha256") or is_plain_number(value, max_digits=len(value)):
        raise InvalidRef(
            f"invalid tag {value!r}: a tag cannot look like a version number or a digest; "
            "use a name such as 'latest' or 'v1'"
        )
    return value


def check_digest(value: str) -> str:
    if not _DIGEST.fullmatch(value):
        raise InvalidRef(f"invalid digest {value!r}: expected {DIGEST_RULE}")
    return value


def is_digest(value: str) -> bool:
    return value.startswith("sha256:")


def is_plain_number(value: str, *, max_digits: int = 9) -> bool:
    """Plain ASCII digits that fit the column (``str.isdigit`` also accepts '²')."""
    return value.isascii() and value.isdigit() and len(value) <= max_digits


@dataclass(frozen=True)
class ModelRef:
    """A model name and one of: a tag, a version number or a digest."""

    name: str
    ref: str = DEFAULT_TAG

    @property
    def pinned(self) -> bool:
        return is_digest(self.ref)

    def __str__(self) -> str:
        return format_ref(self.name, self.ref)


def format_ref(name: str, ref: str) -> str:
    """How clients name a version: ``NAME@sha256:…`` for a digest, else ``NAME:REF``."""
    return f"{name}@{ref}" if is_digest(ref) else f"{name}:{ref}"


def parse_ref(text: str) -> ModelRef:
    """``NAME``, ``NAME:TAG``, ``NAME:NUMBER`` or ``NAME@sha256:…``, checked."""
    if "@" in text:
        name, _, digest = text.partition("@")
        return ModelRef(check_name(name), check_digest(digest))
    name, _, ref = text.partition(":")
    if not name:
        raise InvalidRef(f"invalid model {text!r}: {REF_HELP}")
    ref = ref or DEFAULT_TAG
    if not is_plain_number(ref):
        check_name(ref, what="tag")
    return ModelRef(check_name(name), ref)


def parse_tag_ref(text: str) -> ModelRef:
    """A ref that follows a tag or pins a digest (what a deployment names): no numbers."""
    found = parse_ref(text)
    if is_plain_number(found.ref):
        raise InvalidRef(
            f"invalid model {text!r}: deploy a tag or a digest, not a version number; {REF_HELP}"
        )
    return found
