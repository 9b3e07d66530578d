"""One set of conventions for every `hangar` command, checked as a user meets them:
a real `hangar` process against the real API (stdout and stderr apart)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import socket
import stat
import sys
import threading
import uuid
from pathlib import Path

from sqlalchemy import func, select

from metering.models import UsageEvent
from tests.factories import enroll_node, write_gguf


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def user_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A user with a home and config dir of their own and no Hangar variables set
    (those the test names aside)."""
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HANGAR_URL": "",
        "HANGAR_TOKEN": "",
        "HANGAR_OPERATOR_TOKEN": "",
        "HANGAR_CONTEXT": "",
    }
    return env | variables


def key_env(base_url: str, tenant, tmp_path: Path) -> dict[str, str]:
    return user_env(tmp_path, HANGAR_URL=base_url, HANGAR_TOKEN=tenant.key)


async def egress_bytes(hangar, tenant) -> int:
    await hangar.downloads.drain()
    async with hangar.sessions() as s:
        total = await s.scalar(
            select(func.sum(UsageEvent.quantity)).where(
                UsageEvent.tenant_id == uuid.UUID(tenant.id), UsageEvent.meter == "egress"
            )
        )
    return total or 0


# --- version, exit codes, JSON errors ------------------------------------------------


async def test_version_and_documented_exit_codes(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = key_env(base_url, t, tmp_path)

    code, out, _ = await run("--version", env=env)
    assert code == 0 and out.strip() == "hangar 0.1.0"

    code, out, err = await run("models", "show", "nope", env=env)
    assert (code, out) == (3, "")  # not found
    assert "no model named 'nope'" in err and "Traceback" not in err

    code, _, err = await run("models", "ls", "--bogus", env=env)
    assert code == 2 and "No such option" in err and "--help" in err  # usage error

    # A trial tenant choosing a paid plan without a card: refused by the plan (402).
    code, _, err = await run("billing", "plan", "PAYG", env=env)
    assert code == 4 and "402" in err and "payment method" in err

    code, _, err = await run("models", "ls", env={**env, "HANGAR_TOKEN": "hgr_wrong"})
    assert code == 6 and "401" in err  # not allowed

    code, _, err = await run("models", "ls", env={**env, "HANGAR_URL": "http://127.0.0.1:1"})
    assert code == 5 and "server unreachable at http://127.0.0.1:1" in err


async def test_with_json_errors_are_json_on_stderr(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = key_env(base_url, t, tmp_path)

    code, out, err = await run("models", "show", "nope", "--json", env=env)
    assert code == 3 and out == ""
    error = json.loads(err)
    assert error["code"] == "not_found" and error["status"] == 404
    assert "hangar models ls" in error["error"] and error["exit_code"] == 3

    # Even a usage error that comes before --json on the command line.
    code, out, err = await run("keys", "create", "--scope", "root", "--json", env=env)
    assert code == 2 and out == ""
    error = json.loads(err)
    assert error["code"] == "usage" and "'admin', 'finance', 'read'" in error["error"]


async def test_messages_keep_their_brackets(base_url, settings, tmp_path):
    """Rich markup never eats text: the name pattern comes through whole."""
    env = user_env(
        tmp_path,
        HANGAR_URL=base_url,
        HANGAR_OPERATOR_TOKEN=settings.operator_token.get_secret_value(),
    )
    code, _, err = await run("tenants", "create", "Not A Name", env=env)
    assert code == 1 and "400" in err
    assert "^[a-z0-9][a-z0-9._-]*$" in err


def _drop_every_connection() -> tuple[socket.socket, int]:
    """A server that goes away mid-command: it reads the request and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


async def test_a_server_that_goes_away_is_unreachable_not_a_traceback(tenants, tmp_path):
    listener, port = _drop_every_connection()
    env = user_env(tmp_path, HANGAR_URL=f"http://127.0.0.1:{port}", HANGAR_TOKEN="hgr_x")
    try:
        path = write_gguf(tmp_path / "m.gguf", megabytes=1, seed=90)
        for args in (
            ["models", "ls"],
            ["pull", "m", "-o", str(tmp_path)],
            ["push", str(path), "m"],
        ):
            code, _, err = await run(*args, env=env)
            assert code == 5, (args, err)
            assert f"server unreachable at http://127.0.0.1:{port}" in err
            assert "Traceback" not in err
        code, _, err = await run("models", "ls", "--json", env=env)
        assert code == 5 and json.loads(err)["code"] == "unreachable"
    finally:
        listener.close()


# --- enum options --------------------------------------------------------------------


async def test_enum_options_list_choices_and_ignore_case(base_url, settings, tmp_path):
    env = user_env(
        tmp_path,
        HANGAR_URL=base_url,
        HANGAR_OPERATOR_TOKEN=settings.operator_token.get_secret_value(),
    )
    code, out, _ = await run("tenants", "create", "--help", env=env)
    assert code == 0 and "starter|payg|enterprise" in out

    name = f"enum-{uuid.uuid4().hex[:8]}"
    code, out, err = await run("tenants", "create", name, "--plan", "PayG", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["plan"] == "payg"

    code, out, err = await run("tenants", "create", name, "--plan", "starer", env=env)
    assert code == 2 and out == ""
    assert err.count("\n") == 1  # one line, not a validation dump
    assert "'starer' is not one of 'starter', 'payg', 'enterprise'" in err

    code, _, err = await run("invoices", "ls", "--status", "Paid", env={**env, "HANGAR_TOKEN": "x"})
    assert code == 6  # the choice was accepted; the made-up key was not


# --- contexts ------------------------------------------------------------------------


async def test_login_stores_a_private_context_and_variables_still_win(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = user_env(tmp_path)  # nothing exported: a new terminal

    code, _, err = await run("models", "ls", env=env)
    assert code == 6 and "hangar login" in err

    code, out, err = await run(
        "login", "--url", base_url, "--token", t.key, "--name", "acme", env=env
    )
    assert code == 0, err
    config = tmp_path / "config" / "hangar" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "acme" in out and t.key not in out

    code, out, err = await run("models", "ls", "--json", env=env)
    assert code == 0 and json.loads(out) == [], err

    code, out, _ = await run("context", "ls", "--json", env=env)
    assert json.loads(out) == [
        {"name": "acme", "url": base_url, "current": True, "token": True, "operator_token": False}
    ]
    # Never a token on screen.
    code, out, _ = await run("context", "ls", env=env)
    assert "acme" in out and t.key not in out

    # The environment wins over the context...
    code, _, err = await run("models", "ls", env={**env, "HANGAR_TOKEN": "hgr_wrong"})
    assert code == 6 and "401" in err
    # ... and the context's key is never sent to another server.
    code, _, err = await run("models", "ls", env={**env, "HANGAR_URL": "http://127.0.0.1:1"})
    assert code == 6 and "no API key" in err

    code, _, err = await run("login", "--url", "not a url", "--token", "x", env=env)
    assert code == 2 and ("not a URL" in err or "http(s)://" in err)

    code, _, _ = await run("context", "use", "nope", env=env)
    assert code == 3
    code, _, _ = await run("context", "rm", "acme", env=env)
    assert code == 0
    code, _, err = await run("models", "ls", env=env)
    assert code == 6


async def test_hangar_up_local_context_carries_the_operator_token(
    base_url, settings, tmp_path, monkeypatch
):
    from services.cli.contexts import write_local_context

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    write_local_context(base_url, settings.operator_token.get_secret_value())
    env = user_env(tmp_path)
    code, out, err = await run("tenants", "ls", "--json", env=env)
    assert code == 0, err
    assert isinstance(json.loads(out), list)
    code, out, _ = await run("context", "ls", "--json", env=env)
    assert [(c["name"], c["current"], c["operator_token"]) for c in json.loads(out)] == [
        ("local", True, True)
    ]


# --- ids -----------------------------------------------------------------------------


async def test_ids_by_unique_prefix_and_nodes_by_name(tenants, base_url, tmp_path):
    t = await tenants.create()
    env = key_env(base_url, t, tmp_path)
    node = await enroll_node(t, name="gpu-box-1")

    # Tables never cut an id, even on a narrow terminal.
    code, out, _ = await run("nodes", "ls", env={**env, "COLUMNS": "50"})
    assert code == 0 and node.id in out

    code, out, err = await run("nodes", "show", "gpu-box-1", "--json", env=env)
    assert code == 0 and json.loads(out)["id"] == node.id, err
    code, out, err = await run("nodes", "disable", node.id[:8], "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["state"] == "disabled"
    code, _, err = await run("nodes", "enable", "no-such-node", env=env)
    assert code == 3 and "hangar nodes ls" in err

    # Enough keys that two ids share a first character: that prefix is ambiguous.
    keys = [
        (await t.request("POST", "/v1/keys/", json={"name": f"k{i}"})).json() for i in range(17)
    ]
    by_first: dict[str, list[str]] = {}
    for key in keys:
        by_first.setdefault(key["id"][0], []).append(key["id"])
    shared = next(ids for ids in by_first.values() if len(ids) > 1)
    code, _, err = await run("keys", "revoke", shared[0][0], env=env)
    assert code == 2 and all(i in err for i in shared) and "give more of the id" in err

    code, out, err = await run("keys", "revoke", shared[0][:13], env=env)
    assert code == 0 and f"revoked {shared[0]}" in out, err
    listed = {k["id"]: k for k in (await t.request("GET", "/v1/keys/")).json()}
    assert listed[shared[0]]["revoked_at"] is not None
    assert listed[shared[1]]["revoked_at"] is None


# --- transfers -----------------------------------------------------------------------


async def test_pull_checks_the_destination_before_the_first_byte(
    tenants, base_url, tmp_path, hangar
):
    t = await tenants.create()
    env = key_env(base_url, t, tmp_path)
    data = write_gguf(tmp_path / "m.gguf", megabytes=2, seed=91).read_bytes()
    await t.push(tmp_path / "m.gguf", "demo", "prod")

    code, out, err = await run(
        "pull", "demo:prod", "-o", str(tmp_path / "no" / "dir" / "f.gguf"), env=env
    )
    assert code == 2 and out == ""
    assert "does not exist" in err and "mkdir -p" in err and "Traceback" not in err
    assert await egress_bytes(hangar, t) == 0

    # A directory means "write NAME.gguf there".
    target = tmp_path / "models"
    target.mkdir()
    code, out, err = await run("pull", "demo:prod", "-o", str(target), "--json", env=env)
    assert code == 0, err
    pulled = json.loads(out)  # progress went to stderr: stdout is only the JSON
    assert pulled["path"] == str(target / "demo.gguf") and pulled["downloaded_bytes"] == len(data)
    assert (target / "demo.gguf").read_bytes() == data
    assert await egress_bytes(hangar, t) == len(data)

    # The same digest already there: nothing is downloaded (or billed).
    code, out, err = await run("pull", "demo:prod", "-o", str(target / "demo.gguf"), env=env)
    assert code == 0 and "already there: nothing downloaded" in out, err
    assert await egress_bytes(hangar, t) == len(data)


async def test_push_of_a_blob_the_tenant_holds_uploads_nothing(tenants, base_url, tmp_path):
    t = await tenants.create()
    other = await tenants.create()
    env = key_env(base_url, t, tmp_path)
    path = write_gguf(tmp_path / "m.gguf", megabytes=2, seed=92)
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()

    code, out, err = await run("push", str(path), "first:prod", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["uploaded_bytes"] == path.stat().st_size

    # Asked by digest first: held by this tenant, unknown to any other.
    assert (await t.request("GET", f"/v1/blobs/{digest}")).json()["size"] == path.stat().st_size
    assert (await t.request("HEAD", f"/v1/blobs/{digest}")).status_code == 200
    assert (await other.request("GET", f"/v1/blobs/{digest}")).status_code == 404
    assert (await other.request("HEAD", f"/v1/blobs/{digest}")).status_code == 404

    code, out, err = await run("push", str(path), "second:latest", "--json", env=env)
    assert code == 0, err
    result = json.loads(out)
    assert (result["uploaded_bytes"], result["deduplicated"]) == (0, True)
    assert (result["model"], result["version"]["digest"]) == ("second", digest)
    assert (await t.request("GET", "/v1/uploads/")).json() == []
    shown = (await t.request("GET", "/v1/models/second")).json()
    assert shown["tags"] == {"latest": 1} and shown["versions"][0]["gguf"]["architecture"]

    code, out, _ = await run("push", str(path), "second:prod", env=env)
    assert code == 0 and "already stored: nothing uploaded" in out

    # A tag the registry would refuse is refused before any byte moves.
    for ref in ("third:1", "third@" + digest, "third:Not-A-Tag"):
        code, _, err = await run("push", str(path), ref, env=env)
        assert code == 2 and "Traceback" not in err, err
    assert (await t.request("GET", "/v1/models/third")).status_code == 404

    # Another tenant with the same bytes uploads them (nothing leaks across tenants).
    code, out, err = await run(
        "push", str(path), "mine", "--json", env=key_env(base_url, other, tmp_path)
    )
    assert code == 0 and json.loads(out)["uploaded_bytes"] == path.stat().st_size, err


# --- usage import --------------------------------------------------------------------


async def test_usage_import_names_tenants_and_documents_its_format(
    tenants, base_url, settings, tmp_path
):
    t = await tenants.create()
    env = user_env(
        tmp_path,
        HANGAR_URL=base_url,
        HANGAR_OPERATOR_TOKEN=settings.operator_token.get_secret_value(),
    )
    code, out, _ = await run("usage", "import", "--help", env=env)
    assert code == 0
    for field in ("tenant_id", "occurred_at", "device_day", "storage_sample", "bytes stored"):
        assert field in out
    assert "tenant,id,meter,quantity,occurred_at" in out

    path = tmp_path / "events.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tenant", "id", "meter", "quantity", "occurred_at"])
        writer.writerow([t.name, "e1", "egress", 1000, "2026-04-03T10:00:00Z"])
        writer.writerow([t.id, "e2", "egress", 2000, "2026-04-03T11:00:00Z"])
    code, out, err = await run("usage", "import", str(path), "--json", env=env)
    assert code == 0, err
    assert json.loads(out) == {"received": 2, "written": 2, "duplicates": 0}

    writer_rows = path.read_text().replace(t.name, "no-such-tenant", 1)
    path.write_text(writer_rows)
    code, _, err = await run("usage", "import", str(path), env=env)
    assert code == 3 and "no-such-tenant" in err
