"""``hangar push`` and ``hangar pull``: resumable transfers with progress bars."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from services.cli.client import check, client, fail, out
from wire.refs import InvalidRef, check_tag, parse_ref

CHUNK = 1024 * 1024
RETRIES = 8


def progress_bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
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
        fail(str(exc))
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


def push(path: Path, ref: str) -> dict:
    if not path.is_file():
        fail(f"{path} is not a file")
    name, tag = split_ref(ref)
    try:
        check_tag(tag)  # `name:1` would be refused after the whole upload; say so now
    except InvalidRef as exc:
        fail(f"cannot push to {ref!r}: {exc}")
    size = path.stat().st_size
    with client(timeout=600) as http, progress_bar() as progress:
        digest = sha256_file(path, progress)
        state = _state_file(digest, name, tag)
        upload = None
        if state.exists():
            resp = http.get(f"/v1/uploads/{json.loads(state.read_text())['id']}")
            if resp.status_code == 200:
                upload = resp.json()
                progress.console.print(
                    f"resuming upload {upload['id']} at {upload['committed']} bytes"
                )
        if upload is None:
            upload = check(
                http.post(
                    "/v1/uploads/", json={"model": name, "tag": tag, "size": size, "digest": digest}
                )
            )
            state.write_text(json.dumps({"id": upload["id"]}))
        task = progress.add_task("uploading", total=size, completed=upload["committed"])
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
                if attempt == RETRIES:
                    fail(f"upload interrupted ({exc}); run the same command again to resume")
                progress.console.print(f"[yellow]connection lost ({exc}); resuming[/]")
                time.sleep(min(2**attempt, 30))
                upload = check(http.get(f"/v1/uploads/{upload['id']}"))
        result = check(http.post(f"/v1/uploads/{upload['id']}/complete", json={"digest": digest}))
    state.unlink(missing_ok=True)
    return result


def pull(ref: str, dest: Path) -> str:
    name, version = split_ref(ref)
    url = f"/v1/models/{name}/versions/{version}/blob"
    partial = dest.with_name(dest.name + ".partial")
    with client(timeout=600) as http, progress_bar() as progress:
        head = http.head(url)
        if head.status_code != 200:
            check(http.get(f"/v1/models/{name}/versions/{version}"))  # the server's error
            fail(f"{head.status_code} for {url}")
        size, digest = int(head.headers["content-length"]), head.headers["x-hangar-digest"]
        hasher = hashlib.sha256()
        if partial.exists():  # resume: what is on disk is hashed first
            with partial.open("rb") as f:
                while block := f.read(8 * CHUNK):
                    hasher.update(block)
        task = progress.add_task("downloading", total=size)
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
                if attempt == RETRIES:
                    fail(f"download interrupted ({exc}); run the same command again to resume")
                progress.console.print(f"[yellow]connection lost ({exc}); resuming[/]")
                time.sleep(min(2**attempt, 30))
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        partial.unlink(missing_ok=True)
        fail(
            f"downloaded bytes hash to {actual}, expected {digest}; the partial file was removed, pull again"
        )
    partial.replace(dest)
    out.print(f"{dest}  {digest}")
    return digest
