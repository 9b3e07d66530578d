"""Signed files: bundles (control plane -> node), node reports (node -> control plane)
and usage statements (one installation -> another). One format, parsed defensively.

In ``wire`` rather than ``core``: the node runtime imports only ``wire``, and it both
verifies bundles and signs reports.

Layout (all integers big-endian)::

    b"HANGAR-SIGNED-1\\n"            16 bytes, the format
    manifest length                  4 bytes
    manifest                         UTF-8 JSON object
    signature                        64 bytes, Ed25519 over everything above
    payload                          the blobs the manifest lists, in that order

The manifest always carries ``kind`` (bundle, reports, statement: a file of one kind
is never accepted as another), ``id``, ``created_at``, ``signer`` (the key id) and
``blobs`` (``[{"digest": "sha256:…", "size": N}]``, empty but for bundles). The
signature covers the manifest, the manifest covers every blob by digest and size, and
the file must be exactly as long as the manifest says: a truncated, re-ordered,
bit-flipped or padded file is refused, saying which part is wrong.

Keys are written ``ed25519:<base64 of the 32 raw bytes>``; a key's id is the first 16
hex digits of the SHA-256 of those bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"HANGAR-SIGNED-1\n"
SIGNATURE_BYTES = 64
# Manifests hold desired states and heartbeats, never model bytes.
MAX_MANIFEST = 64 * 1024 * 1024
KEY_PREFIX = "ed25519:"
READ_BYTES = 1024 * 1024


class SignedFileError(ValueError):
    """The file is not one we accept; the message says which part is wrong."""


def key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def key_id(key: Ed25519PublicKey | str) -> str:
    text = key if isinstance(key, str) else key_text(key)
    return hashlib.sha256(parse_key(text).public_bytes_raw()).hexdigest()[:16]


def parse_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        raise SignedFileError(
            f"a public key looks like '{KEY_PREFIX}<base64>' (as `hangar installation key` prints it)"
        )
    try:
        raw = base64.b64decode(text.removeprefix(KEY_PREFIX), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise SignedFileError(
            "the public key is not 32 bytes of base64 after 'ed25519:'; copy it whole"
        ) from None


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The private key at ``path`` (PKCS#8 PEM, 0600), made on first use. Two processes
    racing to make it both end up with the one that was written first."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, path)  # fails if another process made it meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignedFileError(f"{path} does not hold an Ed25519 private key")
    return key


def header(*, kind: str, body: dict[str, Any], key: Ed25519PrivateKey, blobs=()) -> bytes:
    """Everything before the payload. ``body`` must not use the envelope's own fields."""
    manifest = {
        "kind": kind,
        "id": str(uuid.uuid4()),
        "created_at": datetime.now(UTC).isoformat(),
        "signer": key_id(key.public_key()),
        "blobs": [{"digest": d, "size": s} for d, s in blobs],
    }
    clash = set(manifest) & set(body)
    if clash:
        raise ValueError(f"body may not set {sorted(clash)}")
    raw = json.dumps(manifest | body, sort_keys=True, separators=(",", ":")).encode()
    signed = MAGIC + len(raw).to_bytes(4, "big") + raw
    return signed + key.sign(signed)


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SignedFileError(f"the file is truncated: it ends inside the {what}")
    return data


def open_signed(
    f: BinaryIO,
    *,
    kind: str,
    key_for: Callable[[dict[str, Any]], Ed25519PublicKey],
    size: int | None = None,
    max_manifest: int = MAX_MANIFEST,
) -> dict[str, Any]:
    """Read and verify the envelope, leaving ``f`` at the payload; returns the manifest.
    ``key_for`` picks the key the manifest must be signed with (it may refuse by
    raising ``SignedFileError``). ``size``: the file's length, to refuse truncated or
    padded files before anything is read further."""
    if f.read(len(MAGIC)) != MAGIC:
        raise SignedFileError(
            f"this is not a Hangar signed file (it should start with {MAGIC.strip().decode()!r})"
        )
    length = int.from_bytes(_read_exact(f, 4, "manifest length"), "big")
    if length > max_manifest:
        raise SignedFileError(
            f"the manifest claims {length} bytes; at most {max_manifest} are accepted"
        )
    raw = _read_exact(f, length, "manifest")
    signature = _read_exact(f, SIGNATURE_BYTES, "signature")
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise SignedFileError("the manifest is not valid JSON: the file is damaged") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("blobs"), list):
        raise SignedFileError("the manifest is not a Hangar manifest: the file is damaged")
    try:
        key_for(manifest).verify(signature, MAGIC + length.to_bytes(4, "big") + raw)
    except InvalidSignature:
        raise SignedFileError(
            "the signature does not match the manifest: the file was changed after it was signed, or signed by another key"
        ) from None
    if manifest.get("kind") != kind:
        raise SignedFileError(f"this is a {manifest.get('kind')!r} file, not a {kind!r} file")
    blobs = blob_list(manifest)
    if size is not None:
        expected = len(MAGIC) + 4 + length + SIGNATURE_BYTES + sum(s for _, s in blobs)
        if size < expected:
            raise SignedFileError(
                f"the file is truncated: {size} bytes, the manifest says {expected}"
            )
        if size > expected:
            raise SignedFileError(
                f"the file has {size - expected} unexpected bytes after its contents"
            )
    return manifest


def blob_list(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for b in manifest["blobs"]:
        digest, blob_size = b.get("digest"), b.get("size")
        if (
            not isinstance(digest, str)
            or not digest.startswith("sha256:")
            or len(digest) != 71
            or type(blob_size) is not int
            or blob_size < 0
        ):
            raise SignedFileError(f"the manifest lists a malformed blob: {b!r}")
        out.append((digest, blob_size))
    return out


def read_blobs(f: BinaryIO, manifest: dict[str, Any]) -> Iterator[tuple[str, int, Iterator]]:
    """Each listed blob as (digest, size, chunks); the chunks raise ``SignedFileError``
    at the end of a blob whose bytes do not hash to its digest (re-ordered, flipped)."""
    for digest, blob_size in blob_list(manifest):
        yield digest, blob_size, _chunks(f, digest, blob_size)
    if f.read(1):
        raise SignedFileError("the file has unexpected bytes after its last blob")


def _chunks(f: BinaryIO, digest: str, size: int) -> Iterator[bytes]:
    hasher, left = hashlib.sha256(), size
    while left:
        chunk = f.read(min(READ_BYTES, left))
        if not chunk:
            raise SignedFileError(f"the file is truncated: it ends inside blob {digest}")
        hasher.update(chunk)
        left -= len(chunk)
        yield chunk
    if "sha256:" + hasher.hexdigest() != digest:
        raise SignedFileError(
            f"blob {digest} does not match its digest: the file is damaged or was tampered with"
        )
