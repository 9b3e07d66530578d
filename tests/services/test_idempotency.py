"""``Idempotency-Key`` on creating POSTs, as Stripe does it: a retried create gets the
first answer instead of a second object; the same key on another request is a 409."""

from __future__ import annotations

import secrets
import uuid

import pytest


def _key() -> str:
    return str(uuid.uuid4())


async def test_a_retried_tenant_create_creates_one_and_never_keeps_its_admin_key(
    http, settings, hangar
):
    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    headers = {**operator, "Idempotency-Key": _key()}
    body = {"name": f"t-{secrets.token_hex(5)}", "plan": "starter"}

    first = await http.post("/v1/tenants/", json=body, headers=headers)
    again = await http.post("/v1/tenants/", json=body, headers=headers)

    assert first.status_code == 201, first.text
    secret = first.json()["admin_key"]["secret"]
    # The admin key is shown once: a retry is told what was created, not given the key.
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "idempotency_secret_shown"
    assert body["name"] in again.json()["error"] and "hangar tenants ls" in again.json()["error"]
    assert secret not in again.text
    assert again.headers["idempotent-replayed"] == "true"
    listed = (await http.get("/v1/tenants/", headers=operator)).json()
    assert [t["name"] for t in listed].count(body["name"]) == 1
    assert secret.encode() not in await _stored_bodies(hangar)


async def _stored_bodies(hangar) -> bytes:
    from sqlalchemy import select

    from services.api.idempotency import IdempotencyRecord

    async with hangar.sessions() as session:
        return b"".join(b or b"" for b in await session.scalars(select(IdempotencyRecord.body)))


@pytest.mark.parametrize(
    ("path", "body", "listing"),
    [
        ("/v1/keys/", {"name": "ci", "scopes": ["read"]}, "hangar keys ls"),
        ("/v1/enrollment-tokens/", {"name": "rack-1"}, "hangar enroll-tokens ls"),
    ],
)
async def test_a_created_secret_is_shown_once_even_to_a_retry(tenants, hangar, path, body, listing):
    t = await tenants.create()
    headers = {"Idempotency-Key": _key()}
    first = await t.request("POST", path, json=body, headers=headers)
    again = await t.request("POST", path, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert first.json()["id"] in error and listing in error and "new Idempotency-Key" in error
    assert first.json()["secret"] not in again.text
    assert first.json()["secret"].encode() not in await _stored_bodies(hangar)
    listed = (await t.request("GET", path)).json()
    assert [x["name"] for x in listed].count(body["name"]) == 1


async def test_a_request_that_fails_authentication_leaves_no_key_behind(http, hangar):
    import hashlib

    from sqlalchemy import func, select

    from services.api.idempotency import IdempotencyRecord

    token = f"hgr_{secrets.token_hex(16)}"
    for _ in range(3):
        resp = await http.post(
            "/v1/keys/",
            json={"name": "x", "scopes": ["read"]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": _key()},
        )
        assert resp.status_code == 401, resp.text
    caller = hashlib.sha256(token.encode()).hexdigest()
    async with hangar.sessions() as session:
        rows = await session.scalar(select(func.count()).where(IdempotencyRecord.caller == caller))
    assert rows == 0


async def test_the_same_key_with_another_body_is_a_409(tenants):
    t = await tenants.create()
    headers = {"Idempotency-Key": _key()}
    first = await t.request(
        "POST", "/v1/keys/", json={"name": "ci", "scopes": ["read"]}, headers=headers
    )
    other = await t.request(
        "POST", "/v1/keys/", json={"name": "ci", "scopes": ["admin"]}, headers=headers
    )
    assert first.status_code == 201
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert "different request" in other.json()["error"]


async def test_keys_are_scoped_to_the_caller(tenants):
    a, b = await tenants.create(), await tenants.create()
    headers = {"Idempotency-Key": "shared-key-1"}
    body = {"name": "tok", "max_uses": 3}
    from_a = await a.request("POST", "/v1/enrollment-tokens/", json=body, headers=headers)
    from_b = await b.request("POST", "/v1/enrollment-tokens/", json=body, headers=headers)
    assert from_a.status_code == from_b.status_code == 201
    # B got its own token, not A's answer (which would hand B another tenant's secret).
    assert from_a.json()["secret"] != from_b.json()["secret"]
    assert "idempotent-replayed" not in from_b.headers


async def test_without_a_key_each_post_creates(tenants):
    t = await tenants.create()
    for _ in range(2):
        resp = await t.request("POST", "/v1/enrollment-tokens/", json={"name": "same"})
        assert resp.status_code == 201
    listed = (await t.request("GET", "/v1/enrollment-tokens/")).json()
    assert [tok["name"] for tok in listed].count("same") == 2


async def test_an_answered_error_is_replayed_and_a_bad_key_is_a_clear_400(tenants):
    t = await tenants.create()
    headers = {"Idempotency-Key": _key()}
    body = {"model": "nothing-here:latest", "selector": {"role": "x"}}
    first = await t.request("POST", "/v1/deployments/", json=body, headers=headers)
    again = await t.request("POST", "/v1/deployments/", json=body, headers=headers)
    assert first.status_code == again.status_code
    assert first.status_code in (400, 404) and again.json() == first.json()

    bad = await t.request(
        "POST", "/v1/enrollment-tokens/", json={}, headers={"Idempotency-Key": "x" * 300}
    )
    assert bad.status_code == 400
    assert "Idempotency-Key" in bad.json()["error"]


async def test_a_key_is_forgotten_after_24_hours(tenants, hangar):
    from datetime import timedelta

    from sqlalchemy import update

    from core.db import transaction
    from services.api.idempotency import IdempotencyRecord

    t = await tenants.create()
    key = _key()
    headers = {"Idempotency-Key": key}
    first = await t.request("POST", "/v1/enrollment-tokens/", json={"name": "a"}, headers=headers)
    assert first.status_code == 201
    async with transaction(hangar.sessions) as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == key)
            .values(created_at=IdempotencyRecord.created_at - timedelta(hours=25))
        )
    # A day later the key is free again: another body is a new request, not a 409.
    later = await t.request("POST", "/v1/enrollment-tokens/", json={"name": "b"}, headers=headers)
    assert later.status_code == 201 and later.json()["name"] == "b"


async def test_the_gc_job_forgets_every_callers_expired_keys(tenants, hangar):
    """Not only the caller's own at its next keyed POST: a caller that never comes back
    leaves nothing past the TTL once the hourly gc job has run."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from core.db import transaction, utcnow
    from services.api.idempotency import IdempotencyRecord
    from services.scheduler import run_job

    t = await tenants.create()
    old, fresh = _key(), _key()
    for key in (old, fresh):
        resp = await t.request(
            "POST",
            "/v1/deployments/",
            json={"model": "none:latest"},
            headers={"Idempotency-Key": key},
        )
        assert resp.status_code < 500, resp.text
    async with transaction(hangar.sessions) as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == old)
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    report = await run_job(hangar, "gc")
    assert report["idempotency_keys"] >= 1
    async with hangar.sessions() as session:
        left = set(
            await session.scalars(
                select(IdempotencyRecord.key).where(IdempotencyRecord.key.in_([old, fresh]))
            )
        )
    assert left == {fresh}


async def test_a_body_past_the_routes_limit_is_a_413_with_a_key_too(tenants):
    t = await tenants.create()
    huge = b'{"name": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    resp = await t.request(
        "POST",
        "/v1/enrollment-tokens/",
        content=huge,
        headers={"Idempotency-Key": _key(), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["code"] == "too_large"
