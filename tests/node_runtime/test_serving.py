"""End to end: enroll a real node process, deploy the real SmolLM2 GGUF, and call
the node with the official ``openai`` client."""

from __future__ import annotations

import asyncio

import httpx
from openai import AsyncOpenAI
from sqlalchemy import select

from metering.models import UsageEvent
from tests.node_runtime.conftest import sha256, wait_for


async def test_enroll_deploy_pull_and_chat_with_the_openai_client(
    nodes, smollm2_tenant, smollm2, hangar
):
    t, version = smollm2_tenant
    node = await nodes(t)
    assert (node.data_dir / "node.json").stat().st_mode & 0o777 == 0o600
    await node.start()
    deployed = await t.request(
        "POST", "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node.id}
    )
    assert deployed.status_code == 201, deployed.text
    await node.wait_loaded(version["digest"])
    assert sha256(node.data_dir / "blobs" / f"sha256-{version['digest'][7:]}") == version["digest"]

    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)
    listed = await client.models.list()
    assert [m.id for m in listed.data] == ["smollm2:prod"]

    chat = await client.chat.completions.create(
        model="smollm2:prod",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.choices[0].message.content
    assert chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 8

    stream = await client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) and finish in ("stop", "length")
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0

    completion = await client.completions.create(
        model="smollm2:prod", prompt="The sky is", max_tokens=4
    )
    assert completion.choices[0].text and completion.usage.completion_tokens > 0
    embedding = await client.embeddings.create(model="smollm2:prod", input=["hello", "world"])
    # One pooled vector of floats per input, SmolLM2's hidden size long.
    vectors = [d.embedding for d in embedding.data]
    assert len(vectors) == 2 and embedding.usage.prompt_tokens > 0
    assert all(len(v) == 576 and isinstance(v[0], float) for v in vectors)
    assert vectors[0] != vectors[1]

    # The fleet view shows it, and the pull was metered as this node's egress.
    assert (await node.shown())["state"] == "online"

    async def counted():
        return (await node.shown())["counters"]["completed"] >= 4

    await wait_for("serving counters in the heartbeat", counted)
    await hangar.downloads.drain()
    async with hangar.sessions() as s:
        events = list(
            await s.scalars(
                select(UsageEvent).where(UsageEvent.tenant_id == t.id, UsageEvent.meter == "egress")
            )
        )
    assert [(str(e.node_id), e.quantity) for e in events] == [(node.id, smollm2.stat().st_size)]


async def test_concurrent_requests_all_complete(nodes, smollm2_tenant):
    t, version = smollm2_tenant
    node = await nodes(t)
    await node.start()
    await t.request("POST", "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node.id})
    await node.wait_loaded(version["digest"])
    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)

    async def ask(i: int):
        return await client.chat.completions.create(
            model="smollm2:prod",
            messages=[{"role": "user", "content": f"Tell me about the number {i}."}],
            max_tokens=6,
            stream=i % 2 == 0,
        )

    results = await asyncio.gather(*(ask(i) for i in range(6)))
    for i, result in enumerate(results):
        if i % 2 == 0:
            chunks = [c async for c in result]
            assert chunks[-1].choices[0].finish_reason in ("stop", "length"), chunks[-1]
        else:
            assert result.choices[0].finish_reason in ("stop", "length")
            assert result.usage.completion_tokens > 0


async def test_bad_input_is_a_400_naming_the_field_never_a_500(nodes, smollm2_tenant):
    t, version = smollm2_tenant
    node = await nodes(t, HANGAR_NODE_N_CTX="256")
    await node.start()
    await t.request("POST", "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node.id})
    await node.wait_loaded(version["digest"])
    msgs = [{"role": "user", "content": "hi"}]
    too_long = "word " * 400
    cases = [
        ("/chat/completions", {"messages": msgs, "max_tokens": "abc"}, "max_tokens", None),
        ("/chat/completions", {"messages": msgs, "temperature": "hot"}, "temperature", None),
        ("/chat/completions", {"messages": [1]}, "messages.0", None),
        ("/chat/completions", {"messages": [{"content": "hi"}]}, "messages.0.role", None),
        ("/chat/completions", {"messages": msgs, "stop": 5}, "stop", None),
        ("/completions", {"prompt": "x", "max_tokens": "abc"}, "max_tokens", None),
        ("/embeddings", {"input": [{"text": "x"}]}, "input", None),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": too_long}], "max_tokens": 4},
            "messages",
            "context_length_exceeded",
        ),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": too_long}], "stream": True},
            "messages",
            "context_length_exceeded",
        ),
        (
            "/completions",
            {"prompt": too_long, "max_tokens": 4},
            "prompt",
            "context_length_exceeded",
        ),
        (
            "/completions",
            {"prompt": too_long, "max_tokens": 4, "stream": True},
            "prompt",
            "context_length_exceeded",
        ),
    ]
    async with httpx.AsyncClient(base_url=f"{node.url}/v1", timeout=60) as http:
        for path, body, param, code in cases:
            resp = await http.post(path, json={"model": "smollm2:prod", **body})
            assert resp.status_code == 400, (path, body, resp.text)
            err = resp.json()["error"]
            assert err["param"] == param and err["type"] == "invalid_request_error", err
            assert err["code"] == (code or "bad_request"), err
        assert (await http.get("/models")).status_code == 200

    # The official client sends multi-part content; it is flattened to text.
    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)
    chat = await client.chat.completions.create(
        model="smollm2:prod",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        max_tokens=4,
    )
    assert chat.choices[0].message.content

    async def errors_counted():
        return (await node.shown())["counters"]["errors"] >= len(cases)

    await wait_for("bad requests counted as errors", errors_counted)


async def test_two_tags_on_one_version_are_both_served(nodes, smollm2_tenant):
    t, version = smollm2_tenant
    tagged = await t.request(
        "PUT", "/v1/models/smollm2/tags/latest", json={"version": version["number"]}
    )
    assert tagged.status_code == 200, tagged.text
    node = await nodes(t)
    await node.start()
    for ref in ("smollm2:prod", "smollm2:latest"):
        deployed = await t.request(
            "POST", "/v1/deployments/", json={"model": ref, "node_id": node.id}
        )
        assert deployed.status_code == 201, deployed.text
    await node.wait_loaded(version["digest"])
    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)

    async def both_listed():
        return {m.id for m in (await client.models.list()).data} == {
            "smollm2:prod",
            "smollm2:latest",
        }

    await wait_for("both tags listed", both_listed)
    for ref in ("smollm2:prod", "smollm2:latest"):
        chat = await client.chat.completions.create(
            model=ref, messages=[{"role": "user", "content": "Hi."}], max_tokens=2
        )
        assert chat.model == ref and chat.choices[0].message.content is not None
    # One file on disk for the one version.
    assert node.blobs() == {f"sha256-{version['digest'][7:]}"}
