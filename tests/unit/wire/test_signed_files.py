"""The signed file format on its own: what it accepts and how it names what is wrong."""

from __future__ import annotations

import hashlib
import io
import os
import stat

import pytest

from wire import signed_files
from wire.signed_files import SignedFileError


def blob(data: bytes) -> tuple[str, int]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def make(key, *blobs: bytes, kind: str = "bundle", body: dict | None = None) -> bytes:
    head = signed_files.header(
        kind=kind, body=body or {"x": 1}, key=key, blobs=[blob(b) for b in blobs]
    )
    return head + b"".join(blobs)


def read_all(data: bytes, key, kind: str = "bundle") -> list[bytes]:
    f = io.BytesIO(data)
    manifest = signed_files.open_signed(
        f, kind=kind, key_for=lambda _: key.public_key(), size=len(data)
    )
    return [b"".join(chunks) for _, _, chunks in signed_files.read_blobs(f, manifest)]


@pytest.fixture
def key(tmp_path):
    return signed_files.load_or_create_key(tmp_path / "k.pem")


def test_round_trip_and_the_key_file(key, tmp_path):
    assert read_all(make(key, b"one", b"two"), key) == [b"one", b"two"]
    path = tmp_path / "k.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = signed_files.load_or_create_key(path)  # made once, then read
    assert signed_files.key_text(again.public_key()) == signed_files.key_text(key.public_key())
    text = signed_files.key_text(key.public_key())
    assert text.startswith("ed25519:") and len(signed_files.key_id(text)) == 16


def test_each_kind_of_damage_is_named(key, tmp_path):
    data = make(key, b"a" * 100, b"b" * 50)
    with pytest.raises(SignedFileError, match="truncated"):
        read_all(data[:-1], key)
    with pytest.raises(SignedFileError, match="unexpected bytes"):
        read_all(data + b"!", key)
    with pytest.raises(SignedFileError, match="not a 'reports' file|'bundle' file"):
        read_all(data, key, kind="reports")
    other = signed_files.load_or_create_key(tmp_path / "other.pem")
    with pytest.raises(SignedFileError, match="signature does not match"):
        read_all(data, other)
    flipped = bytearray(data)
    flipped[-10] ^= 1
    with pytest.raises(SignedFileError, match="does not match its digest"):
        read_all(bytes(flipped), key)
    # A manifest length of 4 GB is refused before anything is read or allocated.
    huge = signed_files.MAGIC + (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(SignedFileError, match="at most"):
        read_all(huge, key)


def test_a_stream_without_a_known_size_still_checks_every_byte(key):
    data = make(key, b"payload" * 10)
    f = io.BytesIO(data[:-3])
    manifest = signed_files.open_signed(f, kind="bundle", key_for=lambda _: key.public_key())
    with pytest.raises(SignedFileError, match="truncated"):
        for _, _, chunks in signed_files.read_blobs(f, manifest):
            list(chunks)


def test_public_keys_are_parsed_strictly():
    for bad in ("", "ssh-ed25519 AAAA", "ed25519:not base64!", "ed25519:" + "A" * 10):
        with pytest.raises(SignedFileError):
            signed_files.parse_key(bad)
