"""Content-addressed blob cache: ``DIR/blobs/sha256-<hex>``.

A file only ever appears under its final name after its bytes hashed to that name
(verify, then rename); a download in progress lives in ``.partial`` and resumes
from there with ``Range``."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from node_runtime.errors import DownloadFailed

HASH_BLOCK = 4 * 1024 * 1024
# Progress is reported at most this often (bytes), not per socket read.
PROGRESS_EVERY = 4 * 1024 * 1024
# Upper bound of one socket read; a read returns whatever has arrived.
READ_BYTES = 1024 * 1024


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def hash_file(path: Path, hasher=None, *, limit: int | None = None):
    hasher = hasher or hashlib.sha256()
    left = limit if limit is not None else -1
    with path.open("rb") as f:
        while left != 0:
            block = f.read(HASH_BLOCK if left < 0 else min(HASH_BLOCK, left))
            if not block:
                break
            hasher.update(block)
            left -= len(block) if left > 0 else 0
    return hasher


class Cancelled(Exception):
    pass


class BlobCache:
    def __init__(self, data_dir: Path):
        self.root = data_dir / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)
        # (size, mtime_ns, ctime_ns, inode) of each file at its last full verification:
        # re-hash only if it changed (ctime cannot be set back by a process rewriting
        # the file, as mtime can with utime).
        self._verified: dict[str, tuple[int, int, int, int]] = {}

    def path(self, digest: str) -> Path:
        return self.root / f"sha256-{_hex(digest)}"

    def partial(self, digest: str) -> Path:
        return self.root / f"sha256-{_hex(digest)}.partial"

    def present(self) -> set[str]:
        return {
            "sha256:" + p.name.removeprefix("sha256-")
            for p in self.root.glob("sha256-*")
            if "." not in p.name
        }

    def verify(self, digest: str, *, force: bool = False) -> bool:
        """True if the cached file hashes to its name; a corrupt file is deleted so
        the next sync fetches it again. Blocking: call from a worker thread."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        stamp = _stamp(st)
        if not force and self._verified.get(digest) == stamp:
            return True
        if "sha256:" + hash_file(path).hexdigest() == digest:
            self._verified[digest] = stamp
            return True
        path.unlink(missing_ok=True)
        self._verified.pop(digest, None)
        return False

    def remove_except(self, keep: set[str]) -> list[str]:
        removed = []
        for p in self.root.glob("sha256-*"):
            digest = "sha256:" + p.name.removeprefix("sha256-").removesuffix(".partial")
            if digest not in keep:
                p.unlink(missing_ok=True)
                self._verified.pop(digest, None)
                removed.append(digest)
        return removed

    def download(
        self,
        server: str,
        path: str,
        *,
        headers: dict[str, str],
        digest: str,
        size: int,
        progress: Callable[[int], None],
        cancel: threading.Event,
        timeout: float = 60,
        deadline: float | None = None,
    ) -> Path:
        """Fetch into ``.partial`` (resuming what is there), hashing while streaming,
        then rename. Blocking: runs in a worker thread so hashing and disk writes never
        stall the event loop that serves requests. Plain ``http.client``: one recv per
        read and no per-chunk protocol parsing, so the pull keeps pace with ``curl``."""
        final, partial = self.path(digest), self.partial(digest)
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > size:
            partial.unlink()
            offset = 0
        # The hash must cover every byte, so the bytes already on disk are hashed first.
        hasher = hash_file(partial) if offset else hashlib.sha256()
        if offset == size:
            return self._finish(partial, final, digest, hasher)
        if offset:
            headers = headers | {"Range": f"bytes={offset}-", "If-Range": f'"{digest}"'}
        url = urlsplit(server)
        conn_cls = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(url.hostname, url.port, timeout=timeout)
        try:
            conn.request("GET", url.path.rstrip("/") + path, headers=headers)
            resp = conn.getresponse()
            if resp.status == 200 and offset:  # the server sent the whole file instead
                offset, hasher = 0, hashlib.sha256()
            elif resp.status not in (200, 206):
                raise DownloadFailed(
                    f"GET {path} answered {resp.status}: {resp.read(300).decode(errors='replace')}"
                )
            progress(offset)
            with partial.open("r+b" if offset else "wb") as f:
                f.seek(offset)
                f.truncate()
                offset = self._receive(resp, f, hasher, offset, progress, cancel, deadline)
        finally:
            conn.close()
        if offset != size:
            raise DownloadFailed(f"GET {path} ended at byte {offset} of {size}; resuming")
        return self._finish(partial, final, digest, hasher)

    @staticmethod
    def _receive(resp, f, hasher, offset: int, progress, cancel, deadline=None) -> int:
        """Every chunk goes to disk and into the hash as it arrives, so a killed pull
        resumes from all it got. Measured (bench/node.py): inline hashing with SHA-NI
        beats a hashing thread, whose hand-offs cost more than the hash itself."""
        reported = offset
        while chunk := resp.read1(READ_BYTES):
            if cancel.is_set():
                raise Cancelled("download cancelled")
            # A source that trickles (a slow peer) is given up on, not waited for.
            if deadline is not None and time.monotonic() > deadline:
                raise DownloadFailed(f"too slow: {offset} bytes by the deadline")
            f.write(chunk)
            hasher.update(chunk)
            offset += len(chunk)
            if offset - reported >= PROGRESS_EVERY:
                progress(offset)
                reported = offset
        progress(offset)
        return offset

    def _finish(self, partial: Path, final: Path, digest: str, hasher) -> Path:
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            partial.unlink(missing_ok=True)
            raise DownloadFailed(
                f"downloaded bytes hash to {actual}, expected {digest}; fetching again"
            )
        os.replace(partial, final)
        self._verified[digest] = _stamp(final.stat())
        return final


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
