"""Issue 10 §4, "show me that nothing leaves", measured: a real node in its own
network namespace, whose only link is a veth pair to the host where the control plane
and a same-tenant peer listen, runs under ``strace -f -e trace=connect,sendto,sendmsg`` through
enroll → sync → chat, embeddings, tool calls → reports → a request that does not fit
and is forwarded to the peer. Every connection it attempted went to the control plane,
the peer, loopback or a local socket; the upstream it was given (air-gapped mode on,
the default) was never tried. The per-destination count is printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from openai import APIStatusError, AsyncOpenAI

from services.embedded import free_port
from tests.airgap import netns as harness
from tests.factories import Tenant, enroll_token
from tests.node_runtime.conftest import NodeProcess, chat_once_loaded, wait_for

# Loading two nodes and running inference on a shared 2-core machine can be slow.
pytestmark = pytest.mark.timeout(900)

# Routable-looking and foreign: what an operator might leave configured. Air-gapped mode
# (the default) must never try it, even for a model this node cannot serve.
UPSTREAM = "1.1.1.1"
UPSTREAM_URL = f"https://{UPSTREAM}/v1"
# Padding that makes a second model (same weights, another digest) need 8 MiB more memory.
PADDING = 8 * 1024 * 1024

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            # An enum keeps the constrained reply short: inference time is not what is measured.
            "properties": {"city": {"type": "string", "enum": ["Paris", "London"]}},
            "required": ["city"],
        },
    },
}


class HostPeer(NodeProcess):
    """The same-tenant peer: an ordinary node on the host end of the veth link."""

    def __init__(self, netns: harness.Netns, *args, **kwargs):
        self.netns = netns
        super().__init__(*args, **kwargs)
        self.env["HANGAR_NODE_HOST"] = netns.host_ip

    @property
    def url(self) -> str:
        return f"http://{self.netns.host_ip}:{self.port}"


class NamespacedNode(NodeProcess):
    """The node under proof: enrolled and run inside the namespace, both under strace."""

    def __init__(self, netns: harness.Netns, *args, **kwargs):
        self.netns = netns
        super().__init__(*args, **kwargs)
        self.traces = self.data_dir.parent / "traces"
        self.traces.mkdir(exist_ok=True)
        self.running: harness.TracedNode | None = None

    @property
    def url(self) -> str:
        return f"http://{self.netns.ns_ip}:{self.port}"

    async def enroll(self, token: str | None = None, name: str | None = None, *extra: str) -> str:
        token = token or await enroll_token(self.tenant)
        out = await harness.run_traced(
            self.netns,
            [sys.executable, "-m", "services.cli.main", "node", "enroll", "--server", self.server,
             "--token", token, "--data-dir", str(self.data_dir), "--port", str(self.port)],
            self.traces / "enroll.trace",
            env=self._env(),
        )  # fmt: skip
        self.id = out.split("enrolled as node ")[1].split()[0]
        return out

    async def start(self) -> None:
        self.running = harness.TracedNode(
            self.netns, self.data_dir, port=self.port, trace=self.traces / "run.trace",
            env=self._env(),
        )  # fmt: skip
        self.log = self.running.log
        await self.running.start()

    async def stop(self, *_) -> None:
        if self.running is not None:
            await self.running.stop()

    def attempts(self) -> list[harness.Attempt]:
        return [
            a for t in sorted(self.traces.glob("*.trace")) for a in harness.parse(t.read_text())
        ]


async def _push(tenant: Tenant, path: Path, name: str) -> dict:
    resp = await tenant.push(path, name, tag="prod")
    assert resp.status_code == 201, resp.text
    return resp.json()["version"]


async def _deploy(tenant: Tenant, model: str, node: NodeProcess) -> None:
    resp = await tenant.request(
        "POST", "/v1/deployments/", json={"model": model, "node_id": node.id}
    )
    assert resp.status_code == 201, resp.text


async def test_a_node_in_its_own_network_reaches_only_its_control_plane_and_peer(
    netns, ns_control_plane, base_url, tenants, smollm2, tmp_path, record_property
):
    assert "default" not in netns.routes()  # the namespace has one link and no way out
    t = await tenants.create()
    small = await _push(t, smollm2, "smollm2")
    padded = tmp_path / "smollm2-padded.gguf"
    shutil.copyfile(smollm2, padded)
    with padded.open("ab") as f:
        f.write(b"\0" * PADDING)
    big = await _push(t, padded, "smollm2-big")
    need_small = small["gguf"]["estimated_memory_bytes"]
    need_big = big["gguf"]["estimated_memory_bytes"]
    assert need_small < need_big

    peer = HostPeer(netns, tmp_path / "peer", t, base_url, {})
    node = NamespacedNode(
        netns,
        tmp_path / "node",
        t,
        ns_control_plane,
        {
            # smollm2 fits; smollm2-big does not, so its requests go to the peer.
            "HANGAR_NODE_MEMORY_BYTES": str((need_small + need_big) // 2),
            "HANGAR_NODE_UPSTREAM_URL": UPSTREAM_URL,
            "HANGAR_NODE_UPSTREAM_API_KEY": "sk-never-sent",
        },
    )
    try:
        await peer.enroll()
        await peer.start()
        await _deploy(t, "smollm2-big:prod", peer)

        await node.enroll()  # enroll
        await node.start()
        await _deploy(t, "smollm2:prod", node)
        await _deploy(t, "smollm2-big:prod", node)
        await node.wait_loaded(small["digest"])  # sync: downloaded from the control plane
        assert node.blobs() == {f"sha256-{small['digest'][7:]}"}  # and never the big one

        async def does_not_fit():
            m = await node.model_state(big["digest"])
            return m if m and m["state"] == "does_not_fit" else None

        await wait_for("smollm2-big reported as does_not_fit on the namespaced node", does_not_fit)
        await peer.wait_loaded(big["digest"])

        client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)
        chat = await client.chat.completions.create(
            model="smollm2:prod", messages=[{"role": "user", "content": "Say hello."}], max_tokens=4
        )
        assert chat.choices[0].message.content
        embedded = await client.embeddings.create(model="smollm2:prod", input=["hello", "world"])
        assert len(embedded.data) == 2 and embedded.usage.prompt_tokens > 0
        called = await client.chat.completions.create(
            model="smollm2:prod",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=32,
        )
        call = called.choices[0].message.tool_calls[0].function
        assert call.name == "get_weather"
        assert json.loads(call.arguments)["city"] in ("Paris", "London")

        async def forwarded():
            try:
                return await client.chat.completions.with_raw_response.create(
                    model="smollm2-big:prod",
                    messages=[{"role": "user", "content": "Hi"}],
                    max_tokens=4,
                )
            except APIStatusError as exc:  # 503 until the peer list holds the peer
                assert exc.status_code == 503, exc
                return None

        raw = await wait_for("the does-not-fit request served by the peer", forwarded)
        assert raw.headers["x-hangar-served-by"].startswith("peer ")
        assert raw.parse().choices[0].message.content is not None

        async def reported():  # reports: the usage reached the control plane
            c = (await node.shown())["counters"]
            return c if c["completed"] >= 3 and c["forwarded"] >= 1 else None

        counters = await wait_for("the node's usage in its heartbeats", reported)
        assert counters["prompt_tokens"] > 0 and counters["completion_tokens"] > 0
        usage = (await t.request("GET", "/v1/usage/")).json()["totals"]
        assert usage["inference"] >= chat.usage.total_tokens  # metered as the tenant's usage
    finally:
        await node.stop()
        await peer.stop()

    cp_host, cp_port = ns_control_plane.removeprefix("http://").split(":")
    allowed = {
        "control plane": (cp_host, int(cp_port)),
        "same-tenant peer": (netns.host_ip, peer.port),
    }
    attempts = node.attempts()
    for trace in sorted(node.traces.glob("*.trace")):  # per command: enroll, run
        part = harness.tally(harness.parse(trace.read_text()), allowed)
        print("\n" + harness.summary(f"  hangar node {trace.stem}", part), end="")
    counts = harness.tally(attempts, allowed)
    line = harness.summary("node in its own network namespace", counts)
    print("\n" + line)
    record_property("connect_attempts", line)

    assert not harness.foreign(counts), (
        f"the node tried to connect outside its control plane, peer and loopback: {line}\n"
        + "\n".join(a.line for a in attempts if "FOREIGN" in harness.classify(a, allowed))
    )
    assert not [a for a in attempts if a.host == UPSTREAM], "the air-gapped node tried the upstream"
    assert counts["control plane"] > 0 and counts["same-tenant peer"] > 0, line


async def test_the_trace_sees_a_connection_that_leaves(netns, tmp_path):
    """The instrument itself: a process in the namespace that tries the outside world
    (a TCP connect and a UDP datagram to an address with no route, a DNS lookup) is
    caught, though none of them succeeds."""
    probe = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(1)\n"
        "try: s.connect(('1.1.1.1', 443))\n"
        "except OSError: pass\n"
        "try: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('1.1.1.1', 123))\n"
        "except OSError: pass\n"
        "try: socket.getaddrinfo('example.com', 443)\n"
        "except OSError: pass\n"
    )
    trace = tmp_path / "probe.trace"
    await harness.run_traced(netns, [sys.executable, "-c", probe], trace, env={})
    counts = harness.tally(harness.parse(trace.read_text()), {})
    print("\n" + harness.summary("probe", counts))
    leaks = harness.foreign(counts)
    assert "FOREIGN 1.1.1.1:443 (AF_INET)" in leaks, counts  # connect()
    assert "FOREIGN 1.1.1.1:123 (AF_INET)" in leaks, counts  # a datagram with no connect()
    assert any(label.startswith("FOREIGN DNS lookup") for label in leaks), counts


async def _hangar(env: dict[str, str], *args: str) -> str:
    """The real CLI on the control-plane side (the admin's machine)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, f"hangar {' '.join(args)}:\n{out}"
    return out


async def test_a_bundle_fed_node_with_no_control_plane_connects_nowhere(
    netns, base_url, tenants, smollm2, tmp_path, record_property
):
    """The second run: the node's models come by signed bundle, no control plane is
    configured, and init-offline → import-bundle → run → chat, embeddings and a tool
    call make zero connection attempts beyond loopback and local sockets."""
    t = await tenants.create()
    await _push(t, smollm2, "smollm2")
    admin = {"HANGAR_URL": base_url, "HANGAR_TOKEN": t.key}
    ident, site = tmp_path / "ward.offline.json", tmp_path / "site.hangar"
    await _hangar(
        admin, "nodes", "create-offline", "ward", "--label", "site=ward", "-o", str(ident)
    )
    await _hangar(admin, "deploy", "smollm2:prod", "--label", "site=ward")
    node_id = json.loads(ident.read_text())["node_id"]
    await _hangar(admin, "bundle", "create", "--node", node_id, "-o", str(site))

    async def drive(api: str) -> None:
        client = AsyncOpenAI(base_url=api, api_key="unused", max_retries=0)

        async def listed():
            return "smollm2:prod" in {m.id for m in (await client.models.list()).data}

        await wait_for("smollm2:prod listed from the bundle's desired state", listed)

        chat = await chat_once_loaded(
            client, "smollm2:prod", messages=[{"role": "user", "content": "Hello"}], max_tokens=4
        )
        assert chat.usage.completion_tokens > 0
        embedded = await client.embeddings.create(model="smollm2:prod", input=["hello"])
        assert len(embedded.data) == 1
        called = await client.chat.completions.create(
            model="smollm2:prod",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=32,
        )
        assert called.choices[0].message.tool_calls[0].function.name == "get_weather"

    # Nothing on the node points at a control plane: no URL, no token, no upstream.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
    env |= {"HANGAR_NODE_N_CTX": "512", "HANGAR_NODE_N_THREADS": "2"}
    traces = tmp_path / "traces"
    traces.mkdir()
    counts = await harness.prove_offline_bundle_node(
        netns,
        identity_file=ident,
        bundle=site,
        data_dir=tmp_path / "node",
        port=free_port(),
        trace_dir=traces,
        env=env,
        drive=drive,
    )
    # strace wrote a trace for each command (it was attached), and none holds an attempt.
    assert sorted(p.stem for p in traces.glob("*.trace")) == [
        "import-bundle",
        "init-offline",
        "run",
    ]
    record_property("connect_attempts_offline", harness.summary("offline node", counts))
