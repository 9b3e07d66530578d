"""Upload and download a 1 GiB GGUF through Hangar's API and directly to the same
S3 server with the minio SDK, in the same run; print MB/s and the ratios.

    uv run --all-extras python -m bench.registry [--size-mib 1024] [--rounds 2]

Targets: download >= 0.90 of direct S3, upload >= 0.85.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import tempfile
import time
from pathlib import Path

import httpx
from minio import Minio

from bench.common import hangar_stack, new_tenant, report

PART = 16 * 1024 * 1024


def make_gguf(path: Path, size: int) -> None:
    """A minimal valid GGUF header followed by pseudo-random filler up to ``size``."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    key = b"general.architecture"
    header += struct.pack("<Q", len(key)) + key + struct.pack("<I", 8)
    header += struct.pack("<Q", 5) + b"llama"
    block = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)
    with path.open("wb") as f:
        f.write(header)
        left = size - len(header)
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        src, dst = root / "model.gguf", root / "out.bin"
        make_gguf(src, size)
        with hangar_stack(root / "stack", part_size=PART) as (base, operator, s3):
            key = new_tenant(base, operator)
            direct = Minio(
                s3.endpoint, s3.access_key, s3.secret_key, secure=False, region="us-east-1"
            )
            http = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600
            )

            def hangar_up(i: int):
                def run():
                    with src.open("rb") as f:
                        r = http.post(
                            f"/v1/models/bench-{i}/versions",
                            content=iter(lambda: f.read(1 << 20), b""),
                            headers={"Content-Length": str(size)},
                        )
                    r.raise_for_status()

                return run

            def hangar_down():
                with (
                    http.stream("GET", "/v1/models/bench-0/versions/latest/blob") as r,
                    dst.open("wb") as f,
                ):
                    for chunk in r.iter_raw(1 << 20):
                        f.write(chunk)

            def s3_up(i: int):
                return lambda: direct.fput_object(
                    s3.bucket, f"direct/{i}", str(src), part_size=PART
                )

            def s3_down():
                direct.fget_object(s3.bucket, "direct/0", str(dst))

            up_h, up_s, down_h, down_s = [], [], [], []
            for i in range(args.rounds):  # interleaved so drift hits both sides alike
                # different bytes per round would defeat dedup; a new model name is enough
                # because each push is a full upload before the digest is known
                up_s.append(timed(s3_up(i)))
                up_h.append(timed(hangar_up(i)))
                down_s.append(timed(s3_down))
                down_h.append(timed(hangar_down))
            mb = size / 1e6
            print(
                f"file: {args.size_mib} MiB, best of {args.rounds} rounds, part size {PART >> 20} MiB"
            )
            report(
                [
                    ("upload", mb / min(up_h), mb / min(up_s)),
                    ("download", mb / min(down_h), mb / min(down_s)),
                ]
            )


if __name__ == "__main__":
    main()
