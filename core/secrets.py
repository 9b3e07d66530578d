"""Hashing of the secrets Hangar issues (API keys, enrollment tokens, node credentials)."""

from __future__ import annotations

import hashlib


def hash_secret(secret: str) -> str:
    # Every secret is 256 random bits, so a plain SHA-256 is enough (no need for a slow KDF).
    return hashlib.sha256(secret.encode()).hexdigest()
