"""Operational endpoints: health, OpenAPI, metrics, error shape."""

from __future__ import annotations


async def test_healthz_checks_postgres_and_s3(http):
    resp = await http.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_openapi_is_served(http):
    spec = (await http.get("/schema/openapi.json")).json()
    assert "/v1/uploads" in str(spec["paths"].keys())
    assert (await http.get("/schema")).status_code == 200


async def test_metrics_count_requests(http):
    await http.get("/healthz")
    text = (await http.get("/metrics")).text
    assert 'hangar_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_invalid_body_is_a_clear_400(tenants):
    t = await tenants.create()
    resp = await t.request("POST", "/v1/uploads/", json={"model": "m", "size": -1})
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"error", "detail", "code"}
    assert "size" in str(body)
