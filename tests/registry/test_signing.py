"""Signed model versions: trusted keys, signed pushes, signatures on existing versions,
the require rule, and every malformed key or signature refused with a 4xx naming it.
The CLI runs as a real process against the real API; keys are real Ed25519 keys."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from fleet.models import Node
from registry.models import UploadSession
from tests.factories import enroll_node, write_gguf
from tests.services.test_cli import cli_env, hangar_cli
from wire.signing import sign


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pub_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def write_keypair(tmp_path, name: str) -> tuple[Ed25519PrivateKey, str, str]:
    key = Ed25519PrivateKey.generate()
    private = tmp_path / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / f"{name}.pub"
    public.write_text(pub_pem(key))
    return key, str(private), str(public)


async def trust(t, name: str, key: Ed25519PrivateKey):
    resp = await t.request(
        "POST", "/v1/trust/keys", json={"name": name, "public_key": pub_pem(key)}
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_signed_push_is_stored_and_shown_then_revoked_key_shows_untrusted(
    tenants, base_url, tmp_path
):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    key, private, public = write_keypair(tmp_path, "release")
    code, out = await hangar_cli("trust", "add", "release", public, env=env)
    assert code == 0 and "trusted release  ed25519:" in out, out
    code, out = await hangar_cli("trust", "add", "model", str(tmp_path / "m.gguf"), env=env)
    assert code == 1 and "cannot read" in out, out  # not written yet

    path = write_gguf(tmp_path / "m.gguf", megabytes=2, seed=70)
    code, out = await hangar_cli("trust", "add", "model", str(path), env=env)
    assert code == 1 and "an Ed25519 public key file is under" in out, out
    code, out = await hangar_cli("push", str(path), "demo:prod", "--sign-key", private, env=env)
    assert code == 0, out

    shown = (await t.request("GET", "/v1/models/demo")).json()
    (sig,) = shown["versions"][0]["signatures"]
    assert sig["key_name"] == "release" and sig["trusted"] is True
    code, out = await hangar_cli("models", "show", "demo", env=env)
    assert code == 0 and "release" in out, out

    code, out = await hangar_cli("trust", "ls", "--json", env=env)
    policy = json.loads(out)
    assert policy["require_signatures"] is False
    assert [k["name"] for k in policy["keys"]] == ["release"]

    code, out = await hangar_cli("trust", "rm", "release", env=env)
    assert code == 0, out
    (sig,) = (await t.request("GET", "/v1/models/demo/versions/prod")).json()["signatures"]
    assert sig["key_name"] is None and sig["trusted"] is False
    code, out = await hangar_cli("models", "show", "demo", env=env)
    assert "(untrusted)" in out, out


async def test_models_sign_adds_a_signature_to_an_existing_version(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    _, private, public = write_keypair(tmp_path, "qa")
    assert (await hangar_cli("trust", "add", "qa", public, env=env))[0] == 0
    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=71)
    assert (await t.push(path, "demo", "prod")).status_code == 201
    assert (await t.request("GET", "/v1/models/demo")).json()["versions"][0]["signatures"] == []

    # A bare tag is the server's word for which bytes it names: refused, saying both ways.
    code, out = await hangar_cli("models", "sign", "demo:prod", "--sign-key", private, env=env)
    assert code == 2 and "demo@sha256:" in out and "--file" in out, out
    code, out = await hangar_cli(
        "models", "sign", "demo:prod", "--file", str(path), "--sign-key", private, env=env
    )
    assert code == 0 and "signed demo version 1" in out, out
    (sig,) = (await t.request("GET", "/v1/models/demo")).json()["versions"][0]["signatures"]
    assert sig["key_name"] == "qa" and sig["trusted"]


async def test_models_sign_refuses_a_tag_moved_to_other_bytes(tenants, base_url, tmp_path):
    """Someone holding an admin key moves demo:prod to a tampered blob: the publisher's
    `models sign` checks the bytes it holds against the server's digest and signs nothing."""
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    _, private, public = write_keypair(tmp_path, "qa")
    assert (await hangar_cli("trust", "add", "qa", public, env=env))[0] == 0
    published = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=72)
    digest = sha(published.read_bytes())
    assert (await t.push(published, "demo", "prod")).status_code == 201
    tampered = write_gguf(tmp_path / "evil.gguf", megabytes=1, seed=73)
    assert (await t.push(tampered, "demo", "prod")).status_code == 201

    code, out = await hangar_cli(
        "models", "sign", "demo:prod", "--file", str(published), "--sign-key", private, env=env
    )
    assert code == 1 and "not signing" in out and digest in out, out
    code, out = await hangar_cli(
        "models", "sign", f"demo@{digest}", "--file", str(tampered), "--sign-key", private, env=env
    )
    assert code == 1 and "not signing" in out, out
    versions = (await t.request("GET", "/v1/models/demo")).json()["versions"]
    assert all(v["signatures"] == [] for v in versions), versions

    # The digest the publisher holds names the genuine version, wherever the tag went.
    code, out = await hangar_cli(
        "models", "sign", f"demo@{digest}", "--sign-key", private, "--json", env=env
    )
    assert code == 0 and json.loads(out)["digest"] == digest, out
    prod = (await t.request("GET", "/v1/models/demo/versions/prod")).json()
    assert prod["digest"] != digest and prod["signatures"] == []


async def test_require_on_refuses_an_unsigned_push_before_the_first_byte(
    tenants, base_url, tmp_path, hangar
):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    # Nothing could ever load with no trusted key: require needs one first.
    code, out = await hangar_cli("trust", "require", "on", env=env)
    assert code == 1 and "no trusted keys yet" in out, out
    key, private, public = write_keypair(tmp_path, "k")
    assert (await hangar_cli("trust", "add", "k", public, env=env))[0] == 0
    code, out = await hangar_cli("trust", "require", "on", env=env)
    assert code == 0, out

    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=72)
    code, out = await hangar_cli("push", str(path), "demo", env=env)
    assert code == 1 and "requires signed models" in out and "--sign-key" in out, out
    one_shot = await t.push(path, "demo")
    assert one_shot.status_code == 400 and "requires signed models" in one_shot.json()["error"]
    async with hangar.sessions() as session:
        left = await session.scalars(
            select(UploadSession).where(UploadSession.tenant_id == uuid.UUID(t.id))
        )
        assert list(left) == []  # no session was opened: refused before the first byte
    assert (await t.request("GET", "/v1/models/demo")).status_code == 404

    code, out = await hangar_cli("push", str(path), "demo", "--sign-key", private, env=env)
    assert code == 0, out
    code, out = await hangar_cli("trust", "require", "off", env=env)
    assert code == 0 and "off" in out


async def test_a_trust_change_makes_every_node_of_the_tenant_sync_again(tenants, hangar, http):
    t = await tenants.create()
    node = await enroll_node(t)

    async def revision() -> int:
        async with hangar.sessions() as session:
            return await session.scalar(
                select(Node.desired_revision).where(Node.id == uuid.UUID(str(node.id)))
            )

    before = await revision()
    key = Ed25519PrivateKey.generate()
    await trust(t, "k", key)
    assert await revision() == before + 1
    desired = await http.get(
        "/v1/fleet/desired", headers={"Authorization": f"Bearer {node.credential}"}
    )
    assert desired.status_code == 200, desired.text
    (sent,) = desired.json()["trusted_keys"]
    assert sent["name"] == "k" and desired.json()["require_signatures"] is False
    assert base64.b64decode(sent["public_key"]) == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert (
        await t.request("PUT", "/v1/trust/require", json={"require_signatures": True})
    ).status_code == 200
    assert await revision() == before + 2
    off = await t.request("PUT", "/v1/trust/require", json={"require_signatures": False})
    assert off.status_code == 200
    assert (await t.request("DELETE", "/v1/trust/keys/k")).status_code == 204
    assert await revision() == before + 4


async def test_the_last_trusted_key_stays_while_signatures_are_required(
    tenants, base_url, tmp_path
):
    """Removing it would leave no key any version could be trusted by: every node
    would unload every model. Refused (409) until another key is added or require is off."""
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    await trust(t, "a", Ed25519PrivateKey.generate())
    await trust(t, "b", Ed25519PrivateKey.generate())
    on = await t.request("PUT", "/v1/trust/require", json={"require_signatures": True})
    assert on.status_code == 200, on.text
    assert (await t.request("DELETE", "/v1/trust/keys/a")).status_code == 204

    last = await t.request("DELETE", "/v1/trust/keys/b")
    assert last.status_code == 409, last.text
    assert "last trusted key" in last.json()["error"]
    code, out = await hangar_cli("trust", "rm", "b", env=env)
    assert code == 1 and "hangar trust require off" in out, out
    listed = await t.request("GET", "/v1/trust/keys")
    assert [k["name"] for k in listed.json()] == ["b"]

    code, out = await hangar_cli("trust", "require", "off", env=env)
    assert code == 0, out
    assert (await t.request("DELETE", "/v1/trust/keys/b")).status_code == 204


async def test_bad_keys_are_refused_naming_what_is_wrong(tenants, tmp_path):
    t = await tenants.create()

    async def add(name: str, public_key: str):
        return await t.request(
            "POST", "/v1/trust/keys", json={"name": name, "public_key": public_key}
        )

    cases = {
        "not a key at all": "not a PEM or OpenSSH public key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n": "malformed public key",
        "ssh-ed25519 AAAAnotbase64!!": "malformed public key",
    }
    rsa_pub = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    ec_pub = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    cases[rsa_pub] = "wrong key type RSA"
    cases[ec_pub] = "wrong key type"
    private_pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    cases[private_pem] = "this is a private key"
    for text, expected in cases.items():
        resp = await add("k", text)
        assert resp.status_code == 400, (text, resp.text)
        assert expected in resp.json()["error"], resp.json()

    oversized = await add("k", "A" * 20_000)
    assert oversized.status_code == 400 and "public_key" in oversized.text

    assert (await add("Bad Name", pub_pem(Ed25519PrivateKey.generate()))).status_code == 400

    key = Ed25519PrivateKey.generate()
    assert (await add("k", pub_pem(key))).status_code == 201
    dup_name = await add("k", pub_pem(Ed25519PrivateKey.generate()))
    assert dup_name.status_code == 409 and "named 'k' exists" in dup_name.json()["error"]
    dup_key = await add("k2", pub_pem(key))
    assert dup_key.status_code == 409 and "trusted already, as 'k'" in dup_key.json()["error"]

    # The OpenSSH form of a key is accepted too.
    ssh_line = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert (await add("from-ssh", ssh_line + " me@laptop")).status_code == 201

    gone = await t.request("DELETE", "/v1/trust/keys/nope")
    assert gone.status_code == 404 and "no trusted key named 'nope'" in gone.json()["error"]


async def test_bad_signatures_are_refused_and_nothing_is_kept(tenants, tmp_path, hangar):
    t = await tenants.create()
    key = Ed25519PrivateKey.generate()
    await trust(t, "k", key)
    data = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=73).read_bytes()
    digest = sha(data)

    async def start(signature: dict, declared: str | None = digest):
        body = {"model": "m", "size": len(data), "digest": declared, "signature": signature}
        return await t.request("POST", "/v1/uploads/", json=body)

    good = sign(key, digest).model_dump()
    other_digest = sign(key, sha(b"other bytes")).model_dump()
    stranger = sign(Ed25519PrivateKey.generate(), digest).model_dump()
    flipped = bytearray(base64.b64decode(good["signature"]))
    flipped[0] ^= 1
    cases = [
        ({**other_digest}, "does not verify for " + digest),
        ({**good, "signature": base64.b64encode(bytes(flipped)).decode()}, "does not verify"),
        (stranger, "which this tenant does not trust"),
        ({**good, "signature": "@@@"}, "not valid base64"),
        ({**good, "signature": base64.b64encode(b"short").decode()}, "5 bytes"),
        ({**good, "key_id": "rsa:1234"}, "invalid key_id"),
    ]
    for signature, expected in cases:
        resp = await start(signature)
        assert resp.status_code == 400, (signature, resp.text)
        assert expected in resp.json()["error"], resp.json()
    oversized = await start({**good, "signature": "A" * 1000})
    assert oversized.status_code == 400 and "signature" in oversized.text
    undeclared = await start(good, declared=None)
    assert undeclared.status_code == 400 and "must declare its digest" in undeclared.json()["error"]
    async with hangar.sessions() as session:
        left = await session.scalars(
            select(UploadSession.id).where(UploadSession.tenant_id == uuid.UUID(t.id))
        )
        assert list(left) == []  # refused at start: no session, no bytes
    assert (await t.request("GET", "/v1/models/m")).status_code == 404

    # A signature for another version's digest cannot be attached to this one.
    assert (await t.push(tmp_path / "m.gguf", "m", "prod")).status_code == 201
    wrong = await t.request(
        "POST", "/v1/models/m/versions/prod/signatures", json={"signature": other_digest}
    )
    assert wrong.status_code == 400 and "does not verify for " + digest in wrong.json()["error"]
    missing = await t.request(
        "POST", "/v1/models/m/versions/9/signatures", json={"signature": good}
    )
    assert missing.status_code == 404
    ok = await t.request("POST", "/v1/models/m/versions/prod/signatures", json={"signature": good})
    assert ok.status_code == 201 and ok.json()["signatures"][0]["key_name"] == "k"


async def test_cli_refuses_bad_signing_keys_before_hashing(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = cli_env(base_url, t, tmp_path)
    path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=74)
    rsa_pem = tmp_path / "rsa.pem"
    rsa_pem.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code, out = await hangar_cli("push", str(path), "m", "--sign-key", str(rsa_pem), env=env)
    assert code == 1 and "wrong key type" in out, out
    code, out = await hangar_cli("push", str(path), "m", "--sign-key", str(path), env=env)
    assert code == 1 and "that is not a key file" in out, out
    not_pem = tmp_path / "note.txt"
    not_pem.write_text("hello")
    code, out = await hangar_cli("push", str(path), "m", "--sign-key", str(not_pem), env=env)
    assert code == 1 and "not a PEM or OpenSSH private key" in out, out
    code, out = await hangar_cli(
        "push", str(path), "m", "--sign-key", str(tmp_path / "none.pem"), env=env
    )
    assert code == 1 and "cannot read signing key" in out, out
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    code, out = await hangar_cli("push", str(path), "m", "--sign-key", str(encrypted), env=env)
    assert code == 1 and "encrypted" in out, out
    # An OpenSSH key made by ssh-keygen signs as well, and keygen makes a usable pair.
    code, out = await hangar_cli("trust", "keygen", str(tmp_path / "pub1"), env=env)
    assert code == 0, out
    assert (await hangar_cli("trust", "add", "pub1", str(tmp_path / "pub1.pub"), env=env))[0] == 0
    code, out = await hangar_cli(
        "push", str(path), "m", "--sign-key", str(tmp_path / "pub1.pem"), env=env
    )
    assert code == 0, out
    if subprocess.run(["which", "ssh-keygen"], capture_output=True).returncode == 0:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True
        )
        assert (await hangar_cli("trust", "add", "ssh", str(tmp_path / "id.pub"), env=env))[0] == 0
        code, out = await hangar_cli(
            "models",
            "sign",
            "m:latest",
            "--file",
            str(path),
            "--sign-key",
            str(tmp_path / "id"),
            env=env,
        )
        assert code == 0, out
