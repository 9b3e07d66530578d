"""Model signatures: the one format the CLI writes and the control plane and nodes check.

Ed25519 over the blob's sha256 digest (``hangar-model-signature-v1``):

- the signed message is ``b"hangar-model-signature-v1\\n" + digest`` where ``digest`` is
  the version's ``sha256:<64 hex>``; binding the digest (not the file) lets the node,
  which already hashed the file while downloading it, check the signature without
  reading the bytes a second time;
- a signature travels as ``{"key_id", "signature"}``: ``key_id`` is ``ed25519:`` and the
  first 32 hex digits of the sha256 of the raw 32-byte public key, ``signature`` the 64
  signature bytes in standard base64;
- a public key is accepted as PEM (``openssl pkey -pubout``) or one OpenSSH line
  (``ssh-ed25519 AAAA…``), a private key as unencrypted PEM (PKCS#8) or OpenSSH.

Why not OpenSSF model-signing: its key mode signs ECDSA keys only, writes a Sigstore
bundle, and needs ``sigstore`` (TUF, protobuf, OpenSSL bindings) on every node; nodes
are meant to stay a small install that never reaches the internet.

Errors are ``SigningError`` (a ``ValueError``): this module sits below every error
hierarchy, as ``wire.refs`` does; each message names what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field

FORMAT = "hangar-model-signature-v1"
# Far above any real key file (a PEM Ed25519 key is ~120 bytes): refuses junk early.
MAX_KEY_BYTES = 16 * 1024
MAX_SIGNATURE_CHARS = 128  # base64 of 64 bytes is 88
KEY_ID_RULE = "'ed25519:' followed by 32 lowercase hex digits"
_KEY_ID = re.compile(r"ed25519:[0-9a-f]{32}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
KEY_HELP = (
    "make a key pair with `openssl genpkey -algorithm ed25519 -out KEY.pem` and "
    "`openssl pkey -in KEY.pem -pubout -out KEY.pub` (or `ssh-keygen -t ed25519`)"
)


class SigningError(ValueError):
    """A key or signature that cannot be used; the message says what is wrong."""


class Signature(BaseModel):
    """A publisher's signature of one version's digest (what clients send and store)."""

    key_id: str = Field(max_length=64, description=f"the signing key's id: {KEY_ID_RULE}")
    signature: str = Field(
        max_length=MAX_SIGNATURE_CHARS,
        description=f"base64 Ed25519 signature of '{FORMAT}\\n' + the version's digest",
    )


def message(digest: str) -> bytes:
    if not _DIGEST.fullmatch(digest):
        raise SigningError(f"invalid digest {digest!r}: expected 'sha256:' and 64 hex digits")
    return f"{FORMAT}\n{digest}".encode()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw: bytes) -> str:
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def public_pem(raw: bytes) -> str:
    key = Ed25519PublicKey.from_public_bytes(raw)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def parse_public_key(data: bytes | str) -> bytes:
    """PEM or OpenSSH text of an Ed25519 public key -> its 32 raw bytes."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_KEY_BYTES:
        raise SigningError(
            f"public key is {len(data)} bytes; an Ed25519 public key file is under "
            f"{MAX_KEY_BYTES} bytes. Give the .pub file, not a model or a bundle"
        )
    text = data.strip()
    if b"PRIVATE KEY" in text:
        raise SigningError(
            "this is a private key: give the public half (KEY.pub); the private key "
            "never leaves the publisher's machine"
        )
    try:
        if text.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(text)
        elif text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            raise SigningError(f"not a PEM or OpenSSH public key; {KEY_HELP}")
    except (ValueError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, SigningError):
            raise
        raise SigningError(f"malformed public key ({exc}); {KEY_HELP}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(
            f"wrong key type {type(key).__name__.removesuffix('PublicKey').lstrip('_')}: "
            f"only Ed25519 keys sign models; {KEY_HELP}"
        )
    return raw_public(key)


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """Unencrypted PEM (PKCS#8) or OpenSSH text of an Ed25519 private key."""
    if len(data) > MAX_KEY_BYTES:
        raise SigningError(f"private key file is {len(data)} bytes; that is not a key file")
    text = data.strip()
    try:
        if b"OPENSSH PRIVATE KEY" in text:
            key = serialization.load_ssh_private_key(text, password=None)
        elif text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password=None)
        else:
            raise SigningError(f"not a PEM or OpenSSH private key; {KEY_HELP}")
    except TypeError:
        raise SigningError(
            "the private key is encrypted; decrypt a copy for signing "
            "(`openssl pkey -in KEY.pem -out PLAIN.pem`)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, SigningError):
            raise
        raise SigningError(f"malformed private key ({exc}); {KEY_HELP}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"wrong key type: only Ed25519 keys sign models; {KEY_HELP}")
    return key


def sign(key: Ed25519PrivateKey, digest: str) -> Signature:
    return Signature(
        key_id=key_id(raw_public(key.public_key())),
        signature=base64.b64encode(key.sign(message(digest))).decode(),
    )


def check_shape(sig: Signature) -> bytes:
    """The signature bytes, or SigningError naming the malformed field."""
    if not _KEY_ID.fullmatch(sig.key_id):
        raise SigningError(f"invalid key_id {sig.key_id!r}: expected {KEY_ID_RULE}")
    try:
        raw = base64.b64decode(sig.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("signature is not valid base64") from None
    if len(raw) != 64:
        raise SigningError(f"signature is {len(raw)} bytes; an Ed25519 signature is 64")
    return raw


def verify(public_raw: bytes, sig: Signature, digest: str) -> bool:
    """True if ``sig`` is ``public_raw``'s signature of exactly ``digest``."""
    try:
        raw = check_shape(sig)
        Ed25519PublicKey.from_public_bytes(public_raw).verify(raw, message(digest))
    except (InvalidSignature, SigningError, ValueError):
        return False
    return True
