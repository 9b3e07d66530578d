"""``hangar push`` and ``hangar pull``: resumable transfers with progress bars (on
stderr, so stdout carries only the result). Neither moves a byte the other side
already has: push asks for the digest first, pull checks the file at the destination."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from services.cli import trust
from services.cli.client import UNREACHABLE, USAGE, check, client, err, fail, unreachable
from wire.refs import InvalidRef, check_tag, parse_ref

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CHUNK = 1024 * 1024
RETRIES = 8


def progress_bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


def sha256_file(path: Path, progress: Progress) -> str:
    task = progress.add_task("hashing", total=path.stat().st_size)
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * CHUNK):
            hasher.update(block)
            progress.advance(task, len(block))
    return "sha256:" + hasher.hexdigest()


def split_ref(ref: str) -> tuple[str, str]:
    """``name``, ``name:tag``, ``name:3`` or ``name@sha256:...`` -> (name, version ref);
    a malformed one ends the command before any byte moves."""
    try:
        parsed = parse_ref(ref)
    except InvalidRef as exc:
        fail(str(exc), USAGE)
    return parsed.name, parsed.ref


def _state_file(digest: str, name: str, tag: str) -> Path:
    # Where an interrupted push remembers its session, so running it again resumes.
    base = Path.home() / ".cache" / "hangar" / "uploads"
    base.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{digest}|{name}|{tag}".encode()).hexdigest()[:32]
    return base / f"{key}.json"


def _read_from(path: Path, offset: int, progress: Progress, task) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        while block := f.read(CHUNK):
            yield block
            progress.advance(task, len(block))


def _held(
    http: httpx.Client, digest: str, name: str, tag: str, signature: dict | None
) -> dict[str, Any] | None:
    """Publish from the blob the tenant already holds, if it does: no upload at all."""
    resp = http.get(f"/v1/blobs/{digest}")
    if resp.status_code == 404:
        return None
    check(resp)
    published = http.post(
        f"/v1/blobs/{digest}/versions",
        json={"model": name, "tag": tag, "signature": signature},
    )
    # 404: the blob was freed since we asked (its last version deleted): upload it.
    return None if published.status_code == 404 else check(published)


def push(path: Path, ref: str, *, sign_key: Path | None = None) -> dict:
    if not path.is_file():
        fail(f"{path} is not a file", USAGE)
    name, tag = split_ref(ref)
    try:
        # Numbers and digests name versions the registry assigns: refused before
        # the file is even hashed, never after it was uploaded.
        check_tag(tag)
    except InvalidRef as exc:
        fail(f"cannot push to {ref!r}: {exc}; a tag is a name, e.g. {name}:prod", USAGE)
    size = path.stat().st_size
    # Loaded first: a bad key ends the command before the file is hashed.
    key = trust.signer(sign_key) if sign_key is not None else None
    with client(timeout=600) as http, progress_bar() as progress:
        try:
            return _push(http, progress, path, name, tag, size, key)
        except httpx.TransportError as exc:
            unreachable(http.base_url, exc)


def _push(
    http: httpx.Client,
    progress: Progress,
    path: Path,
    name: str,
    tag: str,
    size: int,
    key: Ed25519PrivateKey | None,
) -> dict:
    digest = sha256_file(path, progress)
    # Signed here: only the signature of the digest goes to the server.
    signature = trust.signature_for(key, digest).model_dump() if key else None
    if (published := _held(http, digest, name, tag, signature)) is not None:
        return {**published, "uploaded_bytes": 0}
    # A signed push never resumes an unsigned session (or one signed by another key).
    state = _state_file(digest, name, tag + (f"|{signature['key_id']}" if signature else ""))
    upload = None
    if state.exists():
        resp = http.get(f"/v1/uploads/{json.loads(state.read_text())['id']}")
        if resp.status_code == 200:
            upload = resp.json()
            progress.console.print(
                f"resuming upload {upload['id']} at {upload['committed']} bytes",
                markup=False,
            )
    if upload is None:
        upload = check(
            http.post(
                "/v1/uploads/",
                json={
                    "model": name,
                    "tag": tag,
                    "size": size,
                    "digest": digest,
                    "signature": signature,
                },
            )
        )
        state.write_text(json.dumps({"id": upload["id"]}))
    started_at = upload["committed"]
    task = progress.add_task("uploading", total=size, completed=started_at)
    for attempt in range(RETRIES + 1):
        committed = upload["committed"]
        if committed >= size:
            break
        progress.update(task, completed=committed)
        try:
            resp = http.patch(
                f"/v1/uploads/{upload['id']}",
                content=_read_from(path, committed, progress, task),
                headers={
                    "Upload-Offset": str(committed),
                    "Content-Type": "application/octet-stream",
                },
            )
            # Only what a resume can cure is retried: the server busy or gone (5xx),
            # another writer still on the upload (409), a body it timed out (408).
            # Any other 4xx is final: check() says why and stops.
            if resp.status_code >= 500 or resp.status_code in (408, 409):
                raise httpx.HTTPError(f"server answered {resp.status_code}")
            upload = check(resp)
        except httpx.HTTPError as exc:
            _connection_lost(progress, exc, attempt=attempt, what="upload")
            with contextlib.suppress(httpx.TransportError):  # still away: ask again next time
                upload = check(http.get(f"/v1/uploads/{upload['id']}"))
    result = check(http.post(f"/v1/uploads/{upload['id']}/complete", json={"digest": digest}))
    state.unlink(missing_ok=True)
    return {**result, "uploaded_bytes": size - started_at}


def destination(name: str, output: Path) -> Path:
    """Where ``pull`` writes, checked before the first request: an existing directory
    means ``DIR/NAME.gguf``; a file's directory must exist and be writable."""
    dest = output / f"{name}.gguf" if output.is_dir() else output
    parent = dest.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        fail(
            f"cannot write {dest}: {parent} {what}; create it (mkdir -p {parent}) "
            "or give another -o",
            USAGE,
        )
    if dest.is_dir() or (dest.exists() and not dest.is_file()):
        fail(f"cannot write {dest}: it exists and is not a regular file", USAGE)
    if not os.access(parent, os.W_OK) or (dest.exists() and not os.access(dest, os.W_OK)):
        fail(f"cannot write {dest}: permission denied", USAGE)
    return dest


def _already_there(dest: Path, size: int, digest: str, progress: Progress) -> bool:
    if not dest.is_file() or dest.stat().st_size != size:
        return False
    return sha256_file(dest, progress) == digest


def pull(ref: str, output: Path) -> dict[str, Any]:
    name, version = split_ref(ref)
    dest = destination(name, output)
    with client(timeout=600) as http, progress_bar() as progress:
        try:
            return _pull(http, progress, name, version, dest)
        except httpx.TransportError as exc:
            unreachable(http.base_url, exc)


def _pull(
    http: httpx.Client, progress: Progress, name: str, version: str, dest: Path
) -> dict[str, Any]:
    url = f"/v1/models/{name}/versions/{version}/blob"
    partial = dest.with_name(dest.name + ".partial")
    head = http.head(url)
    if head.status_code != 200:
        # A HEAD answer has no body: ask again so the server's explanation is shown
        # (no model or version, a plan limit); a refused GET sends no byte either.
        check(http.get(f"/v1/models/{name}/versions/{version}"))
        with http.stream("GET", url, headers={"Range": "bytes=0-0"}) as refused:
            refused.read()
            check(refused)
        check(head)
    size, digest = int(head.headers["content-length"]), head.headers["x-hangar-digest"]
    result = {"path": str(dest), "digest": digest, "size": size, "downloaded_bytes": 0}
    if _already_there(dest, size, digest, progress):
        partial.unlink(missing_ok=True)
        return {**result, "already_there": True}
    hasher = hashlib.sha256()
    if partial.exists():  # resume: what is on disk is hashed first
        with partial.open("rb") as f:
            while block := f.read(8 * CHUNK):
                hasher.update(block)
    task = progress.add_task("downloading", total=size)
    started_at = partial.stat().st_size if partial.exists() else 0
    for attempt in range(RETRIES + 1):
        have = partial.stat().st_size if partial.exists() else 0
        progress.update(task, completed=have)
        if have >= size:
            break
        try:
            headers = {"Range": f"bytes={have}-", "If-Range": head.headers["etag"]}
            with http.stream("GET", url, headers=headers) as resp, partial.open("ab") as f:
                if resp.status_code != 206:
                    resp.read()
                    check(resp)
                    fail(f"expected a partial response, got {resp.status_code}")
                for block in resp.iter_bytes(CHUNK):
                    f.write(block)
                    hasher.update(block)
                    progress.advance(task, len(block))
        except httpx.TransportError as exc:
            _connection_lost(progress, exc, attempt=attempt, what="download")
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        partial.unlink(missing_ok=True)
        fail(
            f"downloaded bytes hash to {actual}, expected {digest}; the partial file was removed, pull again"
        )
    partial.replace(dest)
    return {**result, "downloaded_bytes": size - started_at, "already_there": False}


def _connection_lost(progress: Progress, exc: Exception, *, attempt: int, what: str) -> None:
    """A transfer broke off: on the last attempt stop (a rerun resumes), else say so and
    back off before resuming."""
    if attempt == RETRIES:
        fail(f"{what} interrupted ({exc}); run the same command again to resume", UNREACHABLE)
    progress.console.print(f"connection lost ({exc}); resuming", markup=False)
    time.sleep(min(2**attempt, 30))
