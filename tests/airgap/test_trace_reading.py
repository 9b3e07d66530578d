"""How a trace is read: strace lines as strace 6 writes them, including a call split by
another thread and a send whose buffer happens to read like a call."""

from __future__ import annotations

from tests.airgap import netns as harness

TRACE = """\
123   connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("10.0.0.1")}, 16 <unfinished ...>
124   sendto(4, "connect(3, {sa_family=AF_INET, ", 32, 0, NULL, 0) = 32
123   <... connect resumed>) = -1 EINPROGRESS (Operation now in progress)
125   connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2606:4700::1111", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)
126   sendto(3, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20
127   sendmsg(6, {msg_name={sa_family=AF_INET, sin_port=htons(123), sin_addr=inet_addr("1.1.1.1")}, msg_namelen=16}, 0) = -1 ENETUNREACH (Network is unreachable)
128   connect(7, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
129   connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0
130   connect(9, {sa_family=AF_UNIX, sun_path="/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
131   connect(10, {sa_family=AF_PACKET, sll_protocol=htons(ETH_P_ALL)}, 20) = 0
132   --- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=1, si_uid=0} ---
"""


def test_every_attempt_is_found_once_and_labelled():
    counts = harness.tally(harness.parse(TRACE), {"control plane": ("10.0.0.1", 8080)})
    assert counts == {
        "control plane": 1,
        "FOREIGN 2606:4700::1111:443 (AF_INET6)": 1,
        harness.LOCAL_SOCKET: 2,
        "FOREIGN 1.1.1.1:123 (AF_INET)": 1,
        harness.LOOPBACK: 1,
        # A stub resolver on loopback still sends the name out: a lookup is a leak.
        "FOREIGN DNS lookup via 127.0.0.53:53": 1,
        # A family the reader does not know is reported, never ignored.
        "FOREIGN ?:0 (unknown)": 1,
    }
    assert len(harness.foreign(counts)) == 4


def test_the_summary_line_can_be_quoted():
    counts = harness.tally(
        harness.parse(TRACE.splitlines()[0]), {"control plane": ("10.0.0.1", 8080)}
    )
    assert harness.summary("node", counts) == "node: 1 connection attempts — control plane 1"
