"""A site with no link at all, end to end with the real CLI and a real model: an offline
node is issued, gets SmolLM2 by bundle, serves chat with no control plane configured,
and its signed report file brings its usage and model states back."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from openai import AsyncOpenAI

from tests.node_runtime.conftest import chat_once_loaded, wait_for


async def cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, f"hangar {' '.join(args)}:\n{out}"
    return out


async def test_an_offline_node_serves_a_bundle_and_reports_by_file(
    nodes, smollm2_tenant, base_url, tmp_path
):
    t, version = smollm2_tenant
    admin = {"HANGAR_URL": base_url, "HANGAR_TOKEN": t.key}
    ident = tmp_path / "ward.offline.json"
    await cli(admin, "nodes", "create-offline", "ward", "--label", "site=ward", "-o", str(ident))
    node_id = json.loads(ident.read_text())["node_id"]
    await cli(admin, "deploy", "smollm2:prod", "--label", "site=ward")
    site = tmp_path / "site.hangar"
    await cli(admin, "bundle", "create", "--node", node_id, "-o", str(site))

    # On the machine: nothing points at the control plane from here on.
    node = await nodes(t, enroll=False, HANGAR_NODE_HEARTBEAT_SECONDS="0.3")
    off = {"HANGAR_URL": "http://127.0.0.1:9", "HANGAR_TOKEN": ""}
    await cli(off, "node", "init-offline", str(ident), "--data-dir", str(node.data_dir))
    out = await cli(off, "node", "import-bundle", str(site), "--data-dir", str(node.data_dir))
    assert "installed bundle" in out and "smollm2:prod" in out
    node.id = node_id
    await node.start()
    client = AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0)

    async def listed():
        return "smollm2:prod" in {m.id for m in (await client.models.list()).data}

    await wait_for("smollm2:prod served from the bundle", listed)
    chat = await chat_once_loaded(
        client, "smollm2:prod", messages=[{"role": "user", "content": "Hello"}], max_tokens=4
    )
    assert chat.choices[0].message.content is not None and chat.usage.completion_tokens > 0
    outbox = node.data_dir / "outbox"

    async def served_and_queued():
        beats = [json.loads(p.read_text()) for p in outbox.glob("*.json")]
        return any(b["counters"]["completed"] >= 1 for b in beats)

    await wait_for("a report of the chat kept in the outbox", served_and_queued)
    reports = tmp_path / "reports.hangar"
    out = await cli(
        off, "node", "export-reports", "-o", str(reports), "--data-dir", str(node.data_dir)
    )
    assert "report(s)" in out
    await node.stop()

    # Back at the control plane.
    out = await cli(admin, "fleet", "import-reports", str(reports), "--json")
    imported = json.loads(out)
    assert imported["stored"] >= 1 and imported["key_pinned"] is True
    shown = await node.shown()
    assert shown["last_seen_at"] is not None
    assert [(m["digest"], m["state"]) for m in shown["models"]] == [(version["digest"], "ready")]
    assert shown["counters"]["completion_tokens"] >= chat.usage.completion_tokens
    usage = (await t.request("GET", "/v1/usage/")).json()["totals"]
    assert usage["inference"] >= chat.usage.total_tokens
    again = json.loads(await cli(admin, "fleet", "import-reports", str(reports), "--json"))
    assert again["stored"] == 0 and again["duplicates"] == imported["received"]
    assert not list(node.data_dir.glob("bundle-staging-*"))
