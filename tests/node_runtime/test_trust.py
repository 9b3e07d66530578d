"""A real node with the real GGUF and the tenant's trust policy: a signed model loads
and serves; an unsigned one is refused (`untrusted`, reason in `nodes show`) where
signatures are required; revoking the key unloads the model at the next sync; a
signature tampered with on the node's disk (as in a hand-installed desired state) is
refused before the load."""

from __future__ import annotations

import base64
import json

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.factories import write_gguf
from tests.node_runtime.conftest import wait_for
from tests.services.test_cli import cli_env, hangar_cli
from wire.signing import sign


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def chat(node, model: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=120) as http:
        return await http.post(
            f"{node.url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        )


async def test_signed_loads_unsigned_refused_revoked_unloads_tampered_refused(
    nodes, tenants, smollm2, tmp_path, base_url
):
    t = await tenants.create()
    key = Ed25519PrivateKey.generate()
    added = await t.request(
        "POST", "/v1/trust/keys", json={"name": "release", "public_key": public_pem(key)}
    )
    assert added.status_code == 201, added.text
    # A second trusted key (signing nothing here): with signatures required, the last
    # trusted key cannot be revoked, and revoking "release" below is the point.
    backup = await t.request(
        "POST",
        "/v1/trust/keys",
        json={"name": "backup", "public_key": public_pem(Ed25519PrivateKey.generate())},
    )
    assert backup.status_code == 201, backup.text
    signed = (await t.push(smollm2, "smollm2", "prod")).json()["version"]
    digest = signed["digest"]
    resp = await t.request(
        "POST",
        "/v1/models/smollm2/versions/prod/signatures",
        json={"signature": sign(key, digest).model_dump()},
    )
    assert resp.status_code == 201, resp.text
    unsigned = (await t.push(write_gguf(tmp_path / "u.gguf", seed=80), "junk", "prod")).json()
    unsigned_digest = unsigned["version"]["digest"]
    required = await t.request("PUT", "/v1/trust/require", json={"require_signatures": True})
    assert required.status_code == 200, required.text

    node = await nodes(t)
    await node.start()
    for model in ("smollm2:prod", "junk:prod"):
        deployed = await t.request(
            "POST", "/v1/deployments/", json={"model": model, "node_id": node.id}
        )
        assert deployed.status_code == 201, deployed.text

    await node.wait_loaded(digest)
    answer = await chat(node, "smollm2:prod")
    assert answer.status_code == 200, answer.text

    async def refused(d: str, words: str):
        m = await node.model_state(d)
        return m if m and m["state"] == "untrusted" and words in (m["reason"] or "") else None

    junk = await wait_for(
        "the unsigned model refused", lambda: refused(unsigned_digest, "unsigned")
    )
    assert junk["loaded"] is False and "requires signed models" in junk["reason"]
    denied = await chat(node, "junk:prod")
    assert denied.status_code == 403, denied.text
    assert denied.json()["error"]["code"] == "model_untrusted"
    code, out = await hangar_cli("nodes", "show", node.id, env=cli_env(base_url, t, tmp_path))
    assert code == 0 and "untrusted" in out and "requires signed models" in out, out

    # Revoking the key: at the next sync the node drops it and unloads the model.
    assert (await t.request("DELETE", "/v1/trust/keys/release")).status_code == 204
    gone = await wait_for(
        "the model unloaded after its key was revoked",
        lambda: refused(digest, "does not trust now"),
    )
    assert gone["loaded"] is False
    denied = await chat(node, "smollm2:prod")
    assert denied.status_code == 403 and "does not trust now" in denied.text, denied.text

    # Trusted again (under another name: the key, not the name, vouches): it loads again.
    again = await t.request(
        "POST", "/v1/trust/keys", json={"name": "release-2", "public_key": public_pem(key)}
    )
    assert again.status_code == 201, again.text
    await node.wait_loaded(digest)

    # A signature flipped on the node's own disk (what a tampered hand-installed desired
    # state would carry) is checked before the load: refused, never loaded.
    await node.stop()
    saved = node.data_dir / "desired.json"
    desired = json.loads(saved.read_text())
    model = next(m for m in desired["models"] if m["digest"] == digest)
    raw = bytearray(base64.b64decode(model["signatures"][0]["signature"]))
    raw[10] ^= 0x40
    model["signatures"][0]["signature"] = base64.b64encode(bytes(raw)).decode()
    saved.write_text(json.dumps(desired))
    await node.start()
    tampered = await wait_for(
        "the tampered signature refused", lambda: refused(digest, "does not verify")
    )
    assert tampered["loaded"] is False and "release-2" in tampered["reason"]
    log = node.log.read_text()
    assert "refused (untrusted)" in log
    assert "model smollm2:prod loaded" in log  # it did load while trusted, earlier
