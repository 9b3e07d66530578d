"""``Idempotency-Key`` on creating POSTs, as Stripe does it: a retried create gets the
first answer instead of a second object; the same key on another request is a 409."""

from __future__ import annotations

import secrets
import uuid


def _key() -> str:
    return str(uuid.uuid4())


async def test_a_retried_tenant_create_answers_the_first_time_and_creates_one(http, settings):
    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    headers = {**operator, "Idempotency-Key": _key()}
    body = {"name": f"t-{secrets.token_hex(5)}", "plan": "starter"}

    first = await http.post("/v1/tenants/", json=body, headers=headers)
    again = await http.post("/v1/tenants/", json=body, headers=headers)

    assert first.status_code == again.status_code == 201, again.text
    # The very same answer, admin key included (shown once, so a retry must get it back).
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    listed = (await http.get("/v1/tenants/", headers=operator)).json()
    assert [t["name"] for t in listed].count(body["name"]) == 1


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
