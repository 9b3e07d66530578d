"""No secret in any log line at any level: presigned S3 URLs (their signature and
credential), API keys, the operator token, the S3 secret key. And a client that goes
away mid-upload is an ordinary event (INFO), not an ERROR with a traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.factories import write_gguf

SIGNED_URL_PARTS = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token")


def _leaks(caplog, secrets: list[str]) -> list[str]:
    found = []
    for record in caplog.records:
        line = record.getMessage()
        if record.exc_info:
            line += logging.Formatter().formatException(record.exc_info)
        for secret in [*SIGNED_URL_PARTS, *secrets]:
            if secret and secret in line:
                found.append(f"{record.name} {record.levelname}: {line[:300]}")
    return found


async def test_an_upload_and_download_log_no_secret_at_any_level(
    tenants, settings, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    t = await tenants.create()
    data = write_gguf(tmp_path / "m.gguf", megabytes=6, seed=81).read_bytes()
    upload = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": len(data)})
    ).json()
    resp = await t.request(
        "PATCH", f"/v1/uploads/{upload['id']}", content=data, headers={"Upload-Offset": "0"}
    )
    assert resp.status_code == 200, resp.text
    assert (await t.request("POST", f"/v1/uploads/{upload['id']}/complete")).status_code == 201
    blob = await t.request("GET", "/v1/models/m/versions/latest/blob")
    assert blob.content == data
    secrets = [
        t.key,
        settings.operator_token.get_secret_value(),
        settings.s3.secret_key.get_secret_value(),
        settings.stripe.api_key.get_secret_value(),
    ]
    assert len(caplog.records) > 0
    assert _leaks(caplog, secrets) == []


async def test_a_client_gone_mid_upload_is_info_not_an_error(tenants, base_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    t = await tenants.create()
    upload = (
        await t.request("POST", "/v1/uploads/", json={"model": "m", "size": 8 * 1024 * 1024})
    ).json()
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"PATCH /v1/uploads/{upload['id']} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {t.key}\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {8 * 1024 * 1024}\r\n\r\n"
    )
    data = write_gguf(tmp_path / "m.gguf", megabytes=8, seed=82).read_bytes()
    writer.write(head.encode() + data[: 1024 * 1024])
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()
    # The session is still there, unchanged, for the client to resume.
    for _ in range(100):
        status = await t.request("GET", f"/v1/uploads/{upload['id']}")
        if status.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert status.json()["committed"] == 0
    await asyncio.sleep(0.5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]
    assert any(
        "disconnected" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    )


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
