"""The harness for "show me that nothing leaves": a Linux network namespace joined to
the host by one veth pair (its only route), commands run inside it under
``strace -f -e trace=connect,sendto,sendmsg,sendmmsg``, and the trace read back as a
count of connection attempts per destination.

strace sees every connect() (and every datagram sent to an explicit address) a process
and its children make, whether or not it succeeds, so a node that *tried* to reach an
upstream, a DNS server or a telemetry endpoint shows up even though the namespace has
no route there."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

# connect() is how TCP (and connected UDP) leaves; sendto/sendmsg with an address is how a
# datagram leaves without connect(). --seccomp-bpf stops the tracee only on these calls, so
# inference runs at full speed under the trace.
STRACE = ("strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg,sendmmsg")

# Labels for destinations that are never a leak.
LOOPBACK = "loopback"
LOCAL_SOCKET = "local socket (AF_UNIX/AF_NETLINK/AF_UNSPEC)"


def unavailable_reason() -> str | None:
    """Why this kernel will not give us a network namespace, or None when it will.
    Missing tools are not a reason to skip (CI installs them): that is a failure."""
    for tool in ("ip", "strace"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"`{tool}` is not installed; install iproute2 and strace (.ci/run does it)"
            )
    probe = f"hgprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return (
            "this kernel/container does not allow network namespaces "
            f"(`ip netns add` said: {made.stderr.strip()}); needs root with CAP_NET_ADMIN"
        )
    subprocess.run(["ip", "netns", "del", probe], check=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


class Netns:
    """A namespace ``name`` with loopback up and one veth link to the host:
    host side ``host_ip``, namespace side ``ns_ip``, a /30 between them and no
    other route (no default gateway, no DNS server reachable)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"hangar-proof-{tag}"
        self.host_if, self.ns_if = f"hgp{tag}h", f"hgp{tag}n"
        # A random /30 in 10.231.0.0/16: two runs on one machine rarely collide, and a
        # collision fails loudly at `ip addr add`, never silently.
        net = ipaddress.ip_network(
            f"10.231.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}/30"
        )
        host, ns = list(net.hosts())
        self.host_ip, self.ns_ip, self.prefix = str(host), str(ns), net.prefixlen
        self.up = False

    def create(self) -> Netns:
        _ip("netns", "add", self.name)
        self.up = True
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/{self.prefix}", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/{self.prefix}", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        return self

    def routes(self) -> str:
        return subprocess.run(
            ["ip", "-n", self.name, "route", "show"], capture_output=True, text=True, check=True
        ).stdout

    def delete(self) -> None:
        if self.up:
            # Deleting the namespace destroys its veth end, and with it the host end.
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
            self.up = False

    def traced(self, argv: Sequence[str], trace: Path) -> list[str]:
        """``argv`` run inside the namespace, every connection attempt written to ``trace``."""
        return ["ip", "netns", "exec", self.name, *STRACE, "-o", str(trace), *argv]


# --- reading a trace ---------------------------------------------------------------

_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(
    r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"'
)
# "PID  syscall(" — anchored, so a buffer that happens to contain "connect(" is not a call.
_CALL = re.compile(r"^(?:\d+\s+)?(connect|sendto|sendmsg|sendmmsg)\(")
# The data of a send, as strace quotes it (escaped quotes inside, "..." when cut short).
_BUFFER = re.compile(r'(sendto\(\d+, |iov_base=)"(?:[^"\\]|\\.)*"(?:\.\.\.)?')
_OTHER = re.compile(r"sa_family=(AF_UNIX|AF_NETLINK|AF_UNSPEC)")


@dataclass(frozen=True)
class Attempt:
    family: str
    host: str
    port: int
    line: str


def parse(trace: str) -> list[Attempt]:
    """Every connect(), and every send to an explicit address, in an strace log. A call
    split by another thread (``<unfinished ...>`` / ``<... resumed>``) carries its
    address on the first half."""
    found = []
    for line in trace.splitlines():
        line = _BUFFER.sub(r'\1""', line)  # bytes sent are data, never an address
        call = _CALL.match(line)  # "<... connect resumed>" halves do not match
        if call is None:
            continue
        if call[1] != "connect" and "sa_family=" not in line:
            continue  # a send on a connected socket: its connect() was counted
        if m := _INET.search(line):
            found.append(Attempt("AF_INET", m[2], int(m[1]), line))
        elif m := _INET6.search(line):
            found.append(Attempt("AF_INET6", m[2], int(m[1]), line))
        elif m := _OTHER.search(line):
            found.append(Attempt(m[1], "", 0, line))
        else:  # a family we do not know is reported, never ignored
            found.append(Attempt("unknown", "?", 0, line))
    return found


def classify(attempt: Attempt, allowed: Mapping[str, tuple[str, int]]) -> str:
    """The label of the destination: an allowed ``(host, port)``, loopback, a local
    socket, or ``foreign host:port`` — the last is a leak."""
    if attempt.family in ("AF_UNIX", "AF_NETLINK", "AF_UNSPEC"):
        return LOCAL_SOCKET
    if attempt.family in ("AF_INET", "AF_INET6"):
        addr = ipaddress.ip_address(attempt.host)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if attempt.port == 53:  # a name lookup leaves even through a loopback stub resolver
            return f"FOREIGN DNS lookup via {attempt.host}:53"
        for label, (host, port) in allowed.items():
            if addr == ipaddress.ip_address(host) and attempt.port == port:
                return label
        if addr.is_loopback:
            return LOOPBACK
    return f"FOREIGN {attempt.host}:{attempt.port} ({attempt.family})"


def tally(attempts: Iterable[Attempt], allowed: Mapping[str, tuple[str, int]]) -> Counter[str]:
    return Counter(classify(a, allowed) for a in attempts)


def foreign(counts: Counter[str]) -> dict[str, int]:
    return {label: n for label, n in counts.items() if label.startswith("FOREIGN")}


def summary(title: str, counts: Counter[str]) -> str:
    """One quotable line: ``title: 42 connection attempts — control plane 30, peer 2, …``."""
    parts = ", ".join(f"{label} {n}" for label, n in counts.most_common())
    return f"{title}: {sum(counts.values())} connection attempts — {parts or 'none'}"


# --- a traced process ----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


async def run_traced(
    netns: Netns, argv: Sequence[str], trace: Path, *, env: Mapping[str, str], timeout: float = 300
) -> str:
    """Run a short command (enroll, import-bundle, …) inside the namespace under strace;
    return its output, failing with it when the command fails."""
    proc = await asyncio.create_subprocess_exec(
        *netns.traced(argv, trace),
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), timeout))[0].decode()
    assert proc.returncode == 0, f"{' '.join(argv)} failed in {netns.name}:\n{out}"
    return out


async def stop_traced(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    """Stop the program strace runs (not strace: it would detach and lose the tail of
    the trace), then wait for strace to write the last lines and exit."""
    if proc.returncode is not None:
        return
    for pid in _children(proc.pid):
        os.kill(pid, sig)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        for pid in _children(proc.pid):
            os.kill(pid, signal.SIGKILL)
        await proc.wait()


# --- a node run inside the namespace --------------------------------------------------


class TracedNode:
    """``hangar node run`` inside ``netns`` under strace, serving on ``ns_ip:port``
    (so the test, on the host, reaches its API over the veth link; those are
    accepted connections, not connect() calls, and do not show in the trace)."""

    def __init__(
        self, netns: Netns, data_dir: Path, *, port: int, trace: Path, env: Mapping[str, str]
    ):
        self.netns, self.data_dir, self.port, self.trace = netns, data_dir, port, trace
        self.env = dict(env)
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.netns.ns_ip}:{self.port}"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "node_runtime.cli", "run", "--data-dir", str(self.data_dir),
            "--port", str(self.port), "--host", self.netns.ns_ip,
        ]  # fmt: skip

    async def start(self, *, timeout: float = 180) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.netns.traced(self.argv(), self.trace), env=self.env, stdout=log, stderr=log
            )
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        async with httpx.AsyncClient(timeout=5) as http:
            while loop.time() < end:
                assert self.proc.returncode is None, self.log.read_text()[-3000:]
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"node API on {self.url} never came up (log: {self.log})")

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_traced(self.proc)
            self.proc = None


# --- the second run, for when bundles land ------------------------------------------


async def prove_offline_bundle_node(
    netns: Netns,
    *,
    identity_file: Path,
    bundle: Path,
    data_dir: Path,
    port: int,
    trace_dir: Path,
    env: Mapping[str, str],
    drive: Callable[[str], Awaitable[None]],
) -> Counter[str]:
    """Issue 10 §4, second run: a node fed by an offline bundle, with no control plane
    configured. ``hangar node init-offline IDENTITY``, ``hangar node import-bundle
    BUNDLE`` and ``hangar node run`` (all ``--data-dir DATA_DIR``) run inside ``netns``
    under strace; ``drive(base_url)`` sends the requests (chat, embeddings, tool calls)
    while the node runs. Returns the tally, printed as one quotable line, and fails if
    any attempt went beyond loopback and local sockets.

    ``test_a_bundle_fed_node_with_no_control_plane_connects_nowhere`` calls it."""
    hangar_node = [sys.executable, "-m", "services.cli.main", "node"]
    where = ["--data-dir", str(data_dir)]
    await run_traced(
        netns,
        [*hangar_node, "init-offline", str(identity_file), *where],
        trace_dir / "init-offline.trace",
        env=env,
    )
    await run_traced(
        netns,
        [*hangar_node, "import-bundle", str(bundle), *where],
        trace_dir / "import-bundle.trace",
        env=env,
    )
    node = TracedNode(netns, data_dir, port=port, trace=trace_dir / "run.trace", env=env)
    try:
        await node.start()
        await drive(f"{node.url}/v1")
    finally:
        await node.stop()
    traces = sorted(trace_dir.glob("*.trace"))
    counts = tally([a for t in traces for a in parse(t.read_text())], allowed={})
    line = summary("offline node (bundle, no control plane)", counts)
    print("\n" + line)
    assert set(counts) <= {LOOPBACK, LOCAL_SOCKET}, (
        f"a node with no control plane tried to connect beyond loopback: {line}"
    )
    return counts
