"""The README is the contract: its marked blocks (``<!-- readme-walk -->``), run top to
bottom in one shell, as a newcomer would paste them, against a real ``hangar up`` and a
real node. Values the README asks the reader to copy from an earlier output (``hgr_...``,
``hgt_...``, ``<NODE_ID>``) are copied from that output; the README's ports are swapped
for free ones. ``uv run`` is a shim running the same command in this test's environment
(no re-lock, no network)."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from services.embedded import free_port

README = Path(__file__).parents[2] / "README.md"
MARK = "<!-- readme-walk -->"
SENTINEL = "__readme_walk_rc="

# What the reader copies from an earlier output, and where it is in that output.
COPIED = {
    "hgr_...": re.compile(r"hgr_[A-Za-z0-9_\-]{8,}"),
    "hgt_...": re.compile(r"hgt_[A-Za-z0-9_\-]{8,}"),
    "<NODE_ID>": re.compile(r"enrolled as node (\S+)"),
}

# What a reader waiting on the node looks for before moving on (else they try again).
ANSWERS = {"/v1/chat/completions": '"choices"'}

UV_SHIM = """#!{python}
# `uv run [options] CMD ARGS…` → CMD ARGS… in the test's environment.
import os, sys
args = sys.argv[2:] if sys.argv[1:2] == ["run"] else sys.exit("shim: only `uv run`")
while args and args[0].startswith("-"):
    if args.pop(0) in ("--extra", "--with", "--group", "--python", "--project"):
        args.pop(0)
bin_dir = os.path.dirname(sys.executable)
program = sys.executable if args[0] == "python" else os.path.join(bin_dir, args[0])
os.execv(program, [program, *args[1:]])
"""


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block right after a walk mark."""
    blocks = re.findall(re.escape(MARK) + r"\s*\n```(\w+)\n(.*?)\n```", text, re.S)
    assert blocks, f"no {MARK} blocks in README.md"
    return blocks


def commands(language: str, body: str) -> list[str]:
    if language == "python":
        return [f"uv run --all-extras python - <<'PYTHON'\n{body}\nPYTHON"]
    assert language == "bash", language
    found, pending = [], ""
    for line in body.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if not line.rstrip().endswith("\\"):
            found.append(pending.strip())
            pending = ""
    return found


class Shell:
    """One bash, as one terminal: variables and background jobs carry across commands."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd, env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def run(self, command: str, timeout: float = 300) -> tuple[int, str]:
        self.proc.stdin.write(f"{command}\necho; echo {SENTINEL}$?\n")
        self.proc.stdin.flush()
        output, deadline = [], time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith(SENTINEL):
                return int(line[len(SENTINEL) :]), "".join(output)
            output.append(line)

    def close(self) -> None:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            child.send_signal(signal.SIGINT)
        psutil.wait_procs(psutil.Process(self.proc.pid).children(recursive=True), timeout=30)
        self.proc.stdin.close()
        self.proc.wait(30)


def environment(tmp_path: Path) -> dict[str, str]:
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    (shim_dir / "uv").write_text(UV_SHIM.format(python=sys.executable))
    (shim_dir / "uv").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
    return {
        **env,
        "PATH": f"{shim_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "COLUMNS": "200",  # a key in a table must not wrap
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # CLI contexts: this test's own
        # Speed only: a node that beats every second and loads a small context.
        "HANGAR_NODE_HEARTBEAT_SECONDS": "1",
        "HANGAR_NODE_RETRY_SECONDS": "0.5",
        "HANGAR_NODE_N_CTX": "512",
        "HANGAR_NODE_N_THREADS": "2",
    }


async def start_hangar_up(cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    log = (cwd / "hangar-up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "up", "--port", str(port)],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    async with httpx.AsyncClient() as http:
        for _ in range(1800):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (cwd / "hangar-up.log").read_text()
            await asyncio.sleep(0.1)
    raise AssertionError("hangar up did not become healthy")


async def test_every_marked_readme_command_works_as_written(tmp_path):
    walk_dir = tmp_path / "walk"
    walk_dir.mkdir()
    env = environment(tmp_path)
    port, node_port = free_port(), free_port()
    up = await start_hangar_up(walk_dir, env, port)
    shell = Shell(walk_dir, env)
    seen = ""  # everything printed so far, where the reader copies values from
    try:
        for language, body in marked_blocks(README.read_text()):
            for command in commands(language, body):
                command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                command = command.replace(":8000", f":{node_port}")
                command = command.replace("--port 8000", f"--port {node_port}")
                for placeholder, pattern in COPIED.items():
                    if placeholder in command:
                        copied = pattern.findall(seen)
                        assert copied, f"{placeholder} is not in any earlier output: {command}"
                        command = command.replace(placeholder, copied[-1])
                if "hangar node run" in command:  # "leave it running": a second terminal
                    command += " > node.log 2>&1 &"
                # The node pulls and loads the model "within a heartbeat": the reader waits.
                waits = f":{node_port}" in command and "hangar node run" not in command
                deadline = time.monotonic() + (240 if waits else 0)
                started, attempts = time.monotonic(), 0
                while True:
                    attempts += 1
                    code, output = await asyncio.to_thread(shell.run, command)
                    answered = code == 0 and all(
                        want in output for path, want in ANSWERS.items() if path in command
                    )
                    if answered or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(2)
                node_log = walk_dir / "node.log"
                assert answered, f"README command failed ({code}):\n{command}\n{output}" + (
                    f"\nnode log:\n{node_log.read_text()[-3000:]}" if node_log.exists() else ""
                )
                seen += output
                took = time.monotonic() - started
                print(f"{took:6.1f}s {attempts}x  {command.splitlines()[0][:90]}")

        # What the reader should have noticed along the way.
        code, output = await asyncio.to_thread(shell.run, 'cmp "$MODEL" smollm2.gguf')
        assert code == 0, output  # pulled back byte for byte
        code, output = await asyncio.to_thread(shell.run, 'cmp "$MODEL" model.gguf')
        assert code == 0, output  # the plain-HTTP round trip too
        assert '"choices"' in seen and "completion_tokens" in seen  # the node answered
    finally:
        shell.close()
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert up.returncode == 0, (walk_dir / "hangar-up.log").read_text()
