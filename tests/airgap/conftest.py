"""A network namespace per test, and the test session's control plane served a second
time on the host end of its veth link (the only address the namespace can reach)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.airgap.netns import Netns, unavailable_reason


@pytest.fixture
def netns() -> Iterator[Netns]:
    if reason := unavailable_reason():
        pytest.skip(reason)
    ns = Netns().create()
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
async def ns_control_plane(netns, settings, hangar) -> AsyncIterator[str]:
    """The same app and components as ``base_url``, listening on the veth host address."""
    import uvicorn

    from services.api.app import create_app
    from services.embedded import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, hangar), host=netns.host_ip, port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.05)
    yield f"http://{netns.host_ip}:{port}"
    server.should_exit = True
    await task
