"""The signature format and the node's trust rules, without any server."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node_runtime.trust import TrustPolicy, refusal
from wire.contract import DesiredModel, DesiredState, TrustedKey
from wire.signing import SigningError, key_id, parse_public_key, raw_public, sign, verify

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def model(*signatures) -> DesiredModel:
    return DesiredModel(
        name="m",
        ref="prod",
        digest=DIGEST,
        size=1,
        version=1,
        download_path="/x",
        estimated_memory_bytes=1,
        signatures=list(signatures),
    )


def policy(*keys: Ed25519PrivateKey, require: bool = False) -> TrustPolicy:
    trusted = [
        TrustedKey(
            name=f"k{i}",
            key_id=key_id(raw_public(k.public_key())),
            public_key=base64.b64encode(raw_public(k.public_key())).decode(),
        )
        for i, k in enumerate(keys)
    ]
    return TrustPolicy.of(
        DesiredState(revision=1, models=[], trusted_keys=trusted, require_signatures=require)
    )


def test_a_signature_binds_the_digest_and_the_key():
    key = Ed25519PrivateKey.generate()
    sig = sign(key, DIGEST)
    raw = raw_public(key.public_key())
    assert verify(raw, sig, DIGEST)
    assert not verify(raw, sig, OTHER)
    assert not verify(raw_public(Ed25519PrivateKey.generate().public_key()), sig, DIGEST)
    assert sig.key_id == key_id(raw) and len(base64.b64decode(sig.signature)) == 64


def test_pem_and_openssh_public_keys_parse_to_the_same_raw_key():
    key = Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert parse_public_key(pem) == parse_public_key(ssh + b" me@host") == raw_public(key)
    with pytest.raises(SigningError, match="is 20000 bytes"):
        parse_public_key(b"A" * 20_000)


def test_node_rules():
    trusted, revoked = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    assert refusal(model(), policy(trusted)) is None  # unsigned is fine unless required
    assert "requires signed models" in refusal(model(), policy(trusted, require=True))
    assert refusal(model(sign(trusted, DIGEST)), policy(trusted, require=True)) is None
    # Signed only by a key the tenant does not trust now: refused even when not required.
    assert "does not trust now" in refusal(model(sign(revoked, DIGEST)), policy(trusted))
    # A trusted key's signature of other bytes is tampering, whatever else vouches.
    bad = refusal(model(sign(trusted, OTHER), sign(revoked, DIGEST)), policy(trusted, revoked))
    assert "does not verify" in bad and "'k0'" in bad
    # One good signature from a trusted key is enough beside one from a stranger.
    assert refusal(model(sign(revoked, DIGEST), sign(trusted, DIGEST)), policy(trusted)) is None
