"""The OpenAPI document says what the API does: our error shape and statuses, the
upload headers and binary bodies, the usage import body."""

from __future__ import annotations

import pytest

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
async def spec(http) -> dict:
    resp = await http.get("/schema/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                yield path, method, op


def _error_statuses(op: dict) -> set[int]:
    return {int(s) for s in op["responses"] if int(s) >= 400}


async def test_every_error_is_documented_as_the_real_error_shape(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "detail", "code"]
    # Litestar's default {status_code, detail, extra} is gone everywhere.
    assert '"status_code"' not in str(spec).replace("'", '"')
    for name, response in spec["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, name
    for path, method, op in _operations(spec):
        for status, response in op["responses"].items():
            # /healthz answers its own {status, problems} shape, documented as such.
            if int(status) >= 400 and path != "/healthz":
                assert response["$ref"].startswith("#/components/responses/"), (path, method)


async def test_statuses_per_route(spec):
    paths = spec["paths"]
    assert {401, 403, 503} <= _error_statuses(paths["/v1/models"]["get"])
    assert 404 in _error_statuses(paths["/v1/models/{name}"]["get"])
    assert {402, 416} <= _error_statuses(paths["/v1/models/{name}/versions/{ref}/blob"]["get"])
    assert {402, 409, 413} <= _error_statuses(paths["/v1/uploads/{upload_id}"]["patch"])
    assert 409 in _error_statuses(paths["/v1/tenants"]["post"])
    # The operator's routes take the operator token: a 401, never a scope 403.
    assert 403 not in _error_statuses(paths["/v1/tenants"]["get"])
    assert 401 not in _error_statuses(paths["/healthz"]["get"])


async def test_upload_headers_and_binary_bodies_are_documented(spec):
    append = spec["paths"]["/v1/uploads/{upload_id}"]["patch"]
    offset = next(p for p in append["parameters"] if p["name"] == "Upload-Offset")
    assert offset["in"] == "header" and offset["required"] is True
    assert offset["schema"]["pattern"] == "^[0-9]{1,19}$"
    assert (
        append["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    )

    push = spec["paths"]["/v1/models/{name}/versions"]["post"]
    assert "application/octet-stream" in push["requestBody"]["content"]

    blob = spec["paths"]["/v1/models/{name}/versions/{ref}/blob"]["get"]
    assert {p["name"] for p in blob["parameters"]} >= {"Range", "If-Range"}
    assert "Content-Range" in blob["responses"]["206"]["headers"]


async def test_usage_import_body_is_documented_in_json_and_csv(spec):
    body = spec["paths"]["/v1/usage/import"]["post"]["requestBody"]["content"]
    event = body["application/json"]["schema"]["properties"]["events"]["items"]
    assert set(event["required"]) == {"tenant_id", "id", "meter", "quantity", "occurred_at"}
    assert "egress" in event["properties"]["meter"]["enum"]
    assert body["text/csv"]["example"].startswith("tenant_id,id,meter,quantity,occurred_at\n")


async def test_creating_posts_take_an_idempotency_key_and_exports_say_csv(spec):
    for path in (
        "/v1/tenants",
        "/v1/keys",
        "/v1/enrollment-tokens",
        "/v1/deployments",
        "/v1/uploads",
    ):
        names = {p["name"] for p in spec["paths"][path]["post"].get("parameters", [])}
        assert "Idempotency-Key" in names, path
    export = spec["paths"]["/v1/invoices/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"text/csv; charset=utf-8", "application/json"}
