"""Postgres or S3 down: clients get 503 with Retry-After, and Hangar recovers
on its own when the dependency is back. Each test runs its own stack so the
shared one stays up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from core.settings import DatabaseSettings, S3Settings, Settings
from services.api.app import create_app
from services.components import Components
from services.embedded import EmbeddedPostgres, EmbeddedS3, free_port
from services.migrate import upgrade
from tests.factories import Tenants, write_gguf


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    components = Components.build(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, components), port=free_port(), log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.config.port}", timeout=60
        ) as http:
            yield http
    finally:
        server.should_exit = True
        await task
        await components.close()


@pytest.fixture
async def own_stack(tmp_path, settings):
    """A Postgres and an S3 of this test's own, on fixed endpoints across restarts."""
    pg, s3 = EmbeddedPostgres(tmp_path, database="outage"), EmbeddedS3(tmp_path, bucket="outage")
    url = await asyncio.to_thread(pg.start)
    await asyncio.to_thread(s3.start)
    await asyncio.to_thread(upgrade, url)
    own = settings.model_copy(
        update={
            "database": DatabaseSettings(url=url),
            "s3": S3Settings(
                endpoint=s3.endpoint,
                access_key=s3.access_key,
                secret_key=SecretStr(s3.secret_key),
                bucket="outage",
            ),
        }
    )
    yield own, pg, s3
    await asyncio.to_thread(s3.stop)
    await asyncio.to_thread(pg.stop)


async def test_s3_down_is_503_then_recovers(own_stack, tmp_path):
    settings, _, s3 = own_stack
    async with serve(settings) as http:
        t = await Tenants(http, settings.operator_token.get_secret_value()).create()
        path = write_gguf(tmp_path / "m.gguf", seed=30)
        assert (await t.push(path, "m")).status_code == 201

        await asyncio.to_thread(s3.stop)
        for method, url, kwargs in [
            ("GET", "/v1/models/m/versions/latest/blob", {}),
            ("POST", "/v1/models/n/versions", {"content": path.read_bytes()}),
        ]:
            resp = await t.request(method, url, **kwargs)
            assert resp.status_code == 503, resp.text
            assert resp.headers["retry-after"]
            assert "S3" in resp.json()["error"]
        health = await http.get("/healthz")
        assert health.status_code == 503 and "s3" in health.json()["problems"][0]
        # Metadata does not need S3.
        assert (await t.request("GET", "/v1/models/m")).status_code == 200

        await asyncio.to_thread(s3.start)
        got = await t.request("GET", "/v1/models/m/versions/latest/blob")
        assert got.status_code == 200 and got.content == path.read_bytes()
        assert (await http.get("/healthz")).status_code == 200


async def test_postgres_down_is_503_then_recovers(own_stack, tmp_path):
    settings, pg, _ = own_stack
    async with serve(settings) as http:
        t = await Tenants(http, settings.operator_token.get_secret_value()).create()
        assert (await t.request("GET", "/v1/models/")).status_code == 200

        await asyncio.to_thread(pg.stop)
        resp = await t.request("GET", "/v1/models/")
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "5"
        assert "database" in resp.json()["error"]
        assert (await http.get("/healthz")).status_code == 503

        await asyncio.to_thread(pg.start)
        assert (await t.request("GET", "/v1/models/")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
