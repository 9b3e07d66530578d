"""The pure helpers of core.db: advisory-lock keys and database URLs."""

from __future__ import annotations

import hashlib

from core.db import advisory_lock_key, async_url


def test_lock_keys_are_stable_across_releases():
    # A scheduler of the previous release holds its lock on this exact number: a new
    # key would let the old and the new one run the same job during a rolling deploy.
    before = int.from_bytes(hashlib.sha256(b"hangar-job:gc").digest()[:8], "big", signed=True)
    assert advisory_lock_key("hangar-job", "gc") == before


def test_lock_keys_fit_postgres_bigint_and_namespaces_do_not_collide():
    keys = {advisory_lock_key(ns, name) for ns in ("hangar-job", "hangar-stripe") for name in "ab"}
    assert len(keys) == 4
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_plain_postgres_urls_are_accepted():
    assert async_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
