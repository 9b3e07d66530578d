"""Bundles: the control plane writes one signed file (desired state exactly as an online
node gets it, plus the blobs), metered as egress; a node with no link installs it whole
or, for a bundle that is not right for it, refuses it and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import transaction
from metering.models import UsageEvent
from node_runtime.bundle import BundleRefused, import_bundle, init_offline
from tests.factories import Tenant, write_gguf
from wire import signed_files


async def offline_node(t: Tenant, name: str, tmp_path: Path, **labels: str) -> dict:
    resp = await t.request("POST", "/v1/offline/nodes", json={"name": name, "labels": labels})
    assert resp.status_code == 201, resp.text
    ident = resp.json()
    (tmp_path / f"{name}.json").write_text(json.dumps(ident))
    init_offline(tmp_path / f"{name}.json", tmp_path / name)
    return ident | {"data_dir": tmp_path / name}


async def deploy(t: Tenant, model: str, **target) -> None:
    resp = await t.request("POST", "/v1/deployments/", json={"model": model, **target})
    assert resp.status_code == 201, resp.text


async def bundle(t: Tenant, path: Path, **target) -> Path:
    resp = await t.request("POST", "/v1/offline/bundles", json=target)
    assert resp.status_code == 200, resp.text
    assert int(resp.headers["content-length"]) == len(resp.content)
    path.write_bytes(resp.content)
    return path


def snapshot(data_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    }


async def egress(hangar, tenant_id: str) -> int:
    async with transaction(hangar.sessions) as s:
        total = await s.scalar(
            select(func.coalesce(func.sum(UsageEvent.quantity), 0)).where(
                UsageEvent.tenant_id == tenant_id, UsageEvent.meter == "egress"
            )
        )
    return int(total)


async def test_a_bundle_installs_the_desired_state_an_online_node_would_get(
    tenants, tmp_path, hangar
):
    t = await tenants.create()
    version = (await t.push(write_gguf(tmp_path / "a.gguf", seed=1), "alpha", tag="prod")).json()[
        "version"
    ]
    node = await offline_node(t, "site-a", tmp_path)
    await deploy(t, "alpha:prod", node_id=node["node_id"])
    before = await egress(hangar, t.id)
    file = await bundle(t, tmp_path / "site.hangar", node_id=node["node_id"])

    done = import_bundle(file, node["data_dir"])
    assert not done.already and done.blobs_written == 1
    assert done.installed.models == ["alpha:prod"]
    blob = node["data_dir"] / "blobs" / ("sha256-" + version["digest"].removeprefix("sha256:"))
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == version["digest"]
    # Exactly what the control plane serves this node online.
    served = await t.http.get(
        "/v1/fleet/desired", headers={"Authorization": f"Bearer {node['credential']}"}
    )
    assert json.loads((node["data_dir"] / "desired.json").read_text()) == served.json()
    # Bundle bytes are egress to the tenant, like a download of the same model.
    await hangar.downloads.drain()
    assert await egress(hangar, t.id) - before == version["size"]
    # The same bundle again: nothing changes.
    unchanged = snapshot(node["data_dir"])
    assert import_bundle(file, node["data_dir"]).already
    assert snapshot(node["data_dir"]) == unchanged


async def test_a_label_bundle_serves_every_matching_node(tenants, tmp_path):
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "a.gguf", seed=2), "alpha", tag="prod")
    a = await offline_node(t, "ward-1", tmp_path, site="ward")
    b = await offline_node(t, "ward-2", tmp_path, site="ward")
    await offline_node(t, "lab-1", tmp_path, site="lab")
    await deploy(t, "alpha:prod", selector={"site": "ward"})
    file = await bundle(t, tmp_path / "ward.hangar", labels={"site": "ward"})
    for node in (a, b):
        assert import_bundle(file, node["data_dir"]).installed.models == ["alpha:prod"]
    none = await t.request("POST", "/v1/offline/bundles", json={"labels": {"site": "moon"}})
    assert none.status_code == 400 and "site=moon" in none.json()["error"]
    both = await t.request(
        "POST", "/v1/offline/bundles", json={"node_id": a["node_id"], "labels": {"site": "ward"}}
    )
    assert both.status_code == 400 and "exactly one target" in both.json()["error"]


@pytest.fixture
async def site(tenants, tmp_path):
    """An offline node with one bundle installed, and a second model deployed since."""
    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "a.gguf", seed=3), "alpha", tag="prod")
    await t.push(write_gguf(tmp_path / "b.gguf", seed=4, megabytes=0.5), "beta", tag="prod")
    node = await offline_node(t, "site", tmp_path)
    await deploy(t, "alpha:prod", node_id=node["node_id"])
    first = await bundle(t, tmp_path / "first.hangar", node_id=node["node_id"])
    await deploy(t, "beta:prod", node_id=node["node_id"])
    second = await bundle(t, tmp_path / "second.hangar", node_id=node["node_id"])
    return t, node, first, second


def refused(file: Path, data_dir: Path, *needles: str) -> str:
    before = snapshot(data_dir)
    with pytest.raises(BundleRefused) as exc:
        import_bundle(file, data_dir)
    assert snapshot(data_dir) == before, "a refused bundle changed the node"
    for needle in needles:
        assert needle in str(exc.value), str(exc.value)
    return str(exc.value)


def blob_offsets(data: bytes) -> list[tuple[int, int]]:
    length = int.from_bytes(data[16:20], "big")
    manifest = json.loads(data[20 : 20 + length])
    start = 20 + length + 64
    out = []
    for b in manifest["blobs"]:
        out.append((start, b["size"]))
        start += b["size"]
    return out


async def test_bad_bundles_are_refused_and_change_nothing(site, tenants, tmp_path):
    t, node, first, second = site
    import_bundle(first, node["data_dir"])
    data = second.read_bytes()
    bad = tmp_path / "bad.hangar"

    bad.write_bytes(data[: len(data) - 1000])
    refused(bad, node["data_dir"], "truncated")
    bad.write_bytes(data[:30])
    refused(bad, node["data_dir"], "truncated")
    bad.write_bytes(data + b"extra")
    refused(bad, node["data_dir"], "unexpected bytes")
    bad.write_bytes(b"PK\x03\x04 not a bundle")
    refused(bad, node["data_dir"], "not a Hangar signed file")

    # A bit flipped in the manifest's JSON syntax, or in a value (the tenant).
    flipped = bytearray(data)
    flipped[20] ^= 0x01  # the opening brace
    bad.write_bytes(bytes(flipped))
    refused(bad, node["data_dir"], "manifest", "damaged")
    at = data.index(t.id.encode()) + 3
    flipped = bytearray(data)
    flipped[at] = ord("0") if data[at] != ord("0") else ord("1")
    bad.write_bytes(bytes(flipped))
    refused(bad, node["data_dir"], "signature does not match")
    # A bit flipped in the last blob: its digest no longer matches (after every
    # earlier blob was already read: still nothing is installed).
    start, size = blob_offsets(data)[-1]
    flipped = bytearray(data)
    flipped[start + size // 2] ^= 0x80
    bad.write_bytes(bytes(flipped))
    refused(bad, node["data_dir"], "does not match its digest")
    # Blobs swapped: each is read under the other's digest.
    (s1, n1), (s2, n2) = blob_offsets(data)
    swapped = data[:s1] + data[s2 : s2 + n2] + data[s1 : s1 + n1]
    bad.write_bytes(swapped)
    refused(bad, node["data_dir"], "does not match its digest")

    # Signed by another key (another installation): the node trusts only its own.
    other = signed_files.load_or_create_key(tmp_path / "other.pem")
    length = int.from_bytes(data[16:20], "big")
    manifest = json.loads(data[20 : 20 + length])
    body = {k: v for k, v in manifest.items() if k not in ("kind", "id", "created_at", "signer")}
    blobs = [(b["digest"], b["size"]) for body_blob in [body.pop("blobs")] for b in body_blob]
    forged = signed_files.header(kind="bundle", body=body, key=other, blobs=blobs)
    bad.write_bytes(forged + data[20 + length + 64 :])
    refused(bad, node["data_dir"], "signature")

    # The right bundle still installs, and then the older one is a replay.
    assert not import_bundle(second, node["data_dir"]).already
    refused(first, node["data_dir"], "before the one installed")


async def test_a_bundle_for_another_node_or_tenant_is_refused(site, tenants, tmp_path):
    t, node, first, _ = site
    neighbour = await offline_node(t, "neighbour", tmp_path)
    message = refused(first, neighbour["data_dir"], "for node(s)", node["node_id"])
    assert neighbour["node_id"] in message
    stranger_tenant = await tenants.create()
    stranger = await offline_node(stranger_tenant, "stranger", tmp_path)
    refused(first, stranger["data_dir"], "for tenant", t.id)


async def hangar_in(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """A real `hangar` process run from ``cwd`` (stdout and stderr apart)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_offline_commands_print_json_and_use_hangar_node_data_dir(
    tenants, base_url, tmp_path
):
    from tests.services.test_cli_conventions import key_env, user_env

    t = await tenants.create()
    await t.push(write_gguf(tmp_path / "a.gguf", seed=5), "alpha", tag="prod")
    admin = key_env(base_url, t, tmp_path)
    ident = tmp_path / "site.offline.json"
    code, out, err = await hangar_in(
        tmp_path, admin, "nodes", "create-offline", "site", "-o", str(ident), "--json"
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["identity_file"] == str(ident) and "credential" not in made, made
    await deploy(t, "alpha:prod", node_id=made["node_id"])
    site = tmp_path / "site.hangar"
    code, out, err = await hangar_in(
        tmp_path, admin, "bundle", "create", "--node", made["node_id"], "-o", str(site), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {"output": str(site), "bytes": site.stat().st_size}

    # No server there: "unreachable" (exit 5), not a broken download, and no partial file.
    gone = key_env("http://127.0.0.1:9", t, tmp_path)
    lost = tmp_path / "lost.hangar"
    code, out, err = await hangar_in(
        tmp_path, gone, "bundle", "create", "--node", made["node_id"], "-o", str(lost)
    )
    assert code == 5 and "server unreachable" in err, (code, err)
    assert not list(tmp_path.glob("lost.hangar*"))

    # On the machine, HANGAR_NODE_DATA_DIR alone says where the node lives, as for
    # `hangar node enroll` and `run`; nothing lands in the working directory.
    data_dir = tmp_path / "node-data"
    machine = user_env(tmp_path, HANGAR_NODE_DATA_DIR=str(data_dir))
    reports = tmp_path / "reports.hangar"
    code, _, err = await hangar_in(tmp_path, machine, "node", "export-reports", "-o", str(reports))
    assert code == 1 and "hangar node init-offline IDENTITY.json" in err, err
    code, out, err = await hangar_in(
        tmp_path, machine, "node", "init-offline", str(ident), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {
        "node_id": made["node_id"],
        "name": "site",
        "data_dir": str(data_dir),
    }
    code, out, err = await hangar_in(
        tmp_path, machine, "node", "import-bundle", str(site), "--json"
    )
    assert code == 0, err
    installed = json.loads(out)
    assert installed["models"] == ["alpha:prod"] and installed["already"] is False, installed
    code, out, err = await hangar_in(
        tmp_path, machine, "node", "export-reports", "-o", str(reports), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {"output": str(reports), "written": 0, "queued": 0}
    assert (data_dir / "node.json").exists() and (data_dir / "desired.json").exists()
    assert not (tmp_path / ".hangar-node").exists()
