"""The fleet commands of the ``hangar`` CLI, run as a user would, against the real API."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.factories import enroll_node, write_gguf


async def hangar(base_url: str, key: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        env={**os.environ, "HANGAR_URL": base_url, "HANGAR_TOKEN": key, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode()
    return proc.returncode, out


async def test_tokens_nodes_and_deploy_from_the_cli(tenants, base_url, tmp_path):
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "m.gguf"), "m", tag="prod")

    code, out = await hangar(
        base_url, t.key, "enroll-tokens", "create", "--expires", "24h", "--uses", "10", "--json"
    )
    assert code == 0, out
    token = json.loads(out)
    assert token["max_uses"] == 10 and token["secret"].startswith("hgt_")
    node = await enroll_node(t, token=token["secret"], name="edge-1")

    code, out = await hangar(base_url, t.key, "nodes", "label", node.id, "site=london", "rack=2")
    assert code == 0, out
    code, out = await hangar(base_url, t.key, "deploy", "m:prod", "--label", "site=london")
    assert code == 0 and "-> 1 node(s)" in out, out

    code, out = await hangar(base_url, t.key, "nodes", "ls", "--json")
    listed = json.loads(out)
    assert [(n["name"], n["state"], n["labels"]) for n in listed] == [
        ("edge-1", "online", {"site": "london", "rack": "2"})
    ]
    code, out = await hangar(base_url, t.key, "nodes", "show", node.id)
    assert code == 0 and "edge-1" in out and "online" in out, out
    code, out = await hangar(base_url, t.key, "nodes", "ls")
    assert code == 0 and "edge-1" in out, out

    code, out = await hangar(base_url, t.key, "deploy", "m:prod")
    assert code != 0 and "exactly one target" in out
    code, out = await hangar(base_url, t.key, "enroll-tokens", "create", "--expires", "soon")
    assert code != 0 and "24h" in out

    code, out = await hangar(base_url, t.key, "deployments", "ls", "--json")
    assert [d["model"] for d in json.loads(out)] == ["m"]
    code, out = await hangar(base_url, t.key, "enroll-tokens", "revoke", token["id"])
    assert code == 0, out
    code, out = await hangar(base_url, t.key, "nodes", "revoke", node.id)
    assert code == 0, out
    assert (await node.heartbeat()).status_code == 401
