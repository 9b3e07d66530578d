"""The console's session cookie on its own: signed, expiring, never the key."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from services.console.session import Sessions


def _key():
    return SimpleNamespace(id=uuid.uuid4())


def test_a_cookie_reads_back_only_unaltered_and_unexpired():
    sessions = Sessions(b"k" * 32, hours=1, operator_token="op-token")
    key = _key()
    cookie = sessions.issue(key=key)
    assert sessions.read(cookie)["key"] == str(key.id)

    payload, _, sig = cookie.partition(".")
    assert sessions.read(payload + "." + "0" * len(sig)) is None
    assert sessions.read("x" + cookie) is None
    assert Sessions(b"other" * 8, hours=1, operator_token="op-token").read(cookie) is None
    expired = Sessions(b"k" * 32, hours=-1, operator_token="op-token").issue(key=key)
    assert sessions.read(expired) is None


def test_operator_sessions_end_when_the_token_changes():
    sessions = Sessions(b"k" * 32, hours=1, operator_token="op-token")
    cookie = sessions.issue(key=None)
    assert "op-token" not in cookie and sessions.read(cookie) is not None
    assert Sessions(b"k" * 32, hours=1, operator_token="rotated").read(cookie) is None
    assert Sessions(b"k" * 32, hours=1, operator_token="").read(cookie) is None
