"""What an anonymous or hostile client can send: always a 4xx that says what is wrong,
never a 500, a hang or a server that keeps the memory it was made to allocate."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.billing.scripts import at, egress


async def _raw(base_url: str, request: bytes) -> bytes:
    """One request on a real socket, so nothing in a client library tidies it first."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tenants/",
        "/v1/uploads/",
        "/v1/fleet/enroll",
        "/v1/usage/import",
        "/v1/stripe/webhook",
    ],
)
@pytest.mark.parametrize(
    "body",
    [b"[" * 1000, b"{" * 5000, b'{"a": "\xff\xfe"}', b"\xc3\x28"],
    ids=["brackets", "braces", "bad-utf8-in-string", "bad-utf8"],
)
@pytest.mark.parametrize("content_type", ["application/json", None, "text/plain"])
async def test_unparseable_json_is_400_before_auth(http, path, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await http.post(path, content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "bad_request"
    assert "JSON" in resp.json()["error"]


async def test_nested_json_under_the_limit_still_reaches_validation(tenants):
    t = await tenants.create()
    resp = await t.request(
        "POST", "/v1/uploads/", content=json.dumps({"model": [[[[1]]]]}).encode()
    )
    assert resp.status_code == 400
    assert "model" in resp.text


async def test_a_huge_header_line_is_431(base_url):
    big = b"x" * (20 * 1024)
    raw = await _raw(base_url, b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + big + b"\r\n\r\n")
    assert _status(raw) == 431, raw[:200]


async def test_many_headers_past_the_total_are_431(base_url):
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 8000) for i in range(12))
    raw = await _raw(base_url, b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n")
    assert _status(raw) == 431, raw[:200]


def _rss() -> int:
    with open("/proc/self/statm") as statm:  # the API runs in this process
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_an_endless_header_is_cut_off_without_buffering_it(base_url):
    """A client streaming one header forever gets 431 and a closed connection (which
    its kernel may turn into a reset, as it is still sending) long before it is done, and the server's memory does not grow with what it sent."""
    host, port = base_url.removeprefix("http://").split(":")
    before = _rss()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ")
    sent, chunk = 0, b"z" * 65536
    try:
        while sent < 64 * 1024 * 1024:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    try:
        raw = await asyncio.wait_for(reader.read(65536), timeout=10)
    except ConnectionResetError:
        raw = b"HTTP/1.1 431 (reset: the answer was lost to the unread bytes)"
    writer.close()
    assert _status(raw) == 431, raw[:200]
    assert sent < 64 * 1024 * 1024, "the server kept reading an endless header"
    assert _rss() - before < 16 * 1024 * 1024


async def test_ordinary_headers_still_work(http):
    resp = await http.get("/healthz", headers={"X-Trace": "t" * 4000})
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "params", "names"),
    [
        ("GET", "/v1/invoices/%00", None, "path"),
        ("GET", "/v1/invoices/", {"period": "2024-01\x00"}, "period"),
        ("GET", "/v1/models/a%00b", None, "path"),
        ("GET", "/v1/models/m/versions/1", {"x": "a\x00b"}, "x"),
        ("GET", "/v1/operator/invoices/", {"tenant": "a\x00b"}, "tenant"),
        ("GET", "/v1/tenants/a%00b/billing", None, "path"),
    ],
)
async def test_nul_in_path_or_query_is_400_naming_it(
    tenants, settings, http, method, path, params, names
):
    t = await tenants.create()
    for auth in (t.auth, {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}):
        resp = await http.request(method, path, params=params, headers=auth)
        assert resp.status_code == 400, (path, resp.text)
        assert names in resp.json()["error"], resp.text
        assert "NUL" in resp.json()["error"]


async def test_numbers_past_int32_in_the_path_are_400(tenants):
    t = await tenants.create()
    for position in ["2147483648", "9223372036854775808", "99999999999999999999999"]:
        resp = await t.request("GET", f"/v1/invoices/HGR-1/lines/{position}/usage")
        assert resp.status_code == 400, (position, resp.text)
        assert "position" in resp.json()["error"]


async def test_an_instant_before_year_1_in_utc_is_400(tenants, operator):
    t = await tenants.create()
    event = egress(t.id, 10, at("2023-05-03")) | {"occurred_at": "0001-01-01T00:00:00+14:00"}
    resp = await operator.import_events([event])
    assert resp.status_code == 400, resp.text
    assert "occurred_at" in resp.text


@pytest.mark.parametrize(
    ("quantity", "needle"),
    [("²", "quantity"), ("1" + "٣" * 3, "quantity"), ("x" * 200_000, "line 2")],
    ids=["superscript-digit", "arabic-indic-digits", "cell-past-the-csv-field-limit"],
)
async def test_csv_usage_cells_that_python_misreads_are_400(tenants, operator, quantity, needle):
    t = await tenants.create()
    csv = f"tenant_id,id,meter,quantity,occurred_at\n{t.id},c1,egress,{quantity},2023-05-03T10:00:00Z\n"
    resp = await operator.http.post(
        "/v1/usage/import", content=csv, headers={**operator.auth, "Content-Type": "text/csv"}
    )
    assert resp.status_code == 400, resp.text[:500]
    assert needle in resp.json()["error"] + json.dumps(resp.json()["detail"])


async def test_a_json_body_past_the_routes_limit_is_413_before_it_is_read(http, base_url):
    """The body guard holds a JSON body to check it, so it stops at the route's limit
    (Litestar's 10 MB default here), before authentication: an anonymous client cannot
    make the server hold 64 MB per request on /v1/fleet/enroll."""
    limit = 10_000_000
    huge = b'{"token": "' + b"x" * (limit + 1) + b'"}'

    async def chunks():  # no Content-Length: counted as it arrives
        for start in range(0, len(huge), 1 << 20):
            yield huge[start : start + (1 << 20)]

    for content in (huge, chunks()):
        resp = await http.post(
            "/v1/fleet/enroll", content=content, headers={"Content-Type": "application/json"}
        )
        assert resp.status_code == 413, resp.text[:300]
        assert resp.json()["code"] == "too_large"
        assert f"larger than {limit} bytes" in resp.json()["error"]

    # A Content-Length past the limit is refused at once: not one byte of it is awaited.
    raw = await _raw(
        base_url,
        b"POST /v1/fleet/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 60000000\r\n\r\n{",
    )
    assert _status(raw) == 413, raw[:300]
    assert b"too_large" in raw
