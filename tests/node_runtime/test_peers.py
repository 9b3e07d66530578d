"""A model too big for a node is reported as such, never loaded, and its requests go
to a peer node of the same tenant that holds it — nowhere else (air-gapped)."""

from __future__ import annotations

from openai import APIStatusError, AsyncOpenAI

from tests.node_runtime.conftest import wait_for


async def test_does_not_fit_is_reported_and_served_by_a_peer(nodes, smollm2_tenant):
    t, version = smollm2_tenant
    small = await nodes(t, HANGAR_NODE_MEMORY_BYTES=str(64 * 1024 * 1024))
    big = await nodes(t)
    for node in (small, big):
        await t.request("POST", f"/v1/nodes/{node.id}/labels", json={"set": {"site": "london"}})
        await node.start()
    deployed = await t.request(
        "POST", "/v1/deployments/", json={"model": "smollm2:prod", "selector": {"site": "london"}}
    )
    assert deployed.json()["nodes"] == 2

    await big.wait_loaded(version["digest"])

    async def reported_too_big():
        m = await small.model_state(version["digest"])
        return m if m and m["state"] == "does_not_fit" else None

    state = await wait_for("does_not_fit on the small node", reported_too_big)
    assert "needs about" in state["reason"] and not state["loaded"]
    assert small.blobs() == set()  # never downloaded, never loaded

    client = AsyncOpenAI(base_url=f"{small.url}/v1", api_key="unused", max_retries=0)

    async def answered():
        try:
            return await client.chat.completions.with_raw_response.create(
                model="smollm2:prod", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        except APIStatusError as exc:  # 503 until the peer list has the big node in it
            assert exc.status_code == 503, exc
            return None

    raw = await wait_for("the small node to learn its peer", answered)
    assert raw.headers["x-hangar-served-by"].startswith("peer ")
    assert raw.parse().choices[0].message.content is not None
