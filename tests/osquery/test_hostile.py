"""jailer-extension under hostile or heavy input on its socket (issue 14):
it keeps serving the core."""

import os
import socket
import struct
import subprocess
import sys
import time

from conftest import INTERVAL, wait_for
from standin import ExtensionConnection


def registered_socket(core, ext):
    assert core.handler.registered.wait(10), ext.log()
    uuid, _, _ = core.only_extension()
    path = "%s.%d" % (core.path, uuid)
    assert wait_for(lambda: os.path.exists(path), 5), ext.log()
    return uuid, path


def raw(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def header(name, seq=1):
    """A strict binary-protocol CALL header for method `name`."""
    return struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", seq)


def recv_all(s):
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            return out
        out += b


def pings(core, uuid):
    with ExtensionConnection(core.path, uuid) as c:
        st = c.ping()
    return st.code == 0 and st.uuid == uuid


# 1. Bounded frames -----------------------------------------------------------

TWO_GIB_STRING = header(b"call") + bytes([0x0B, 0x00, 0x01]) + b"\x7f\xff\xff\xff"


def test_a_string_claiming_2_gib_does_not_abort_the_extension_under_a_memory_cap(core, start_ext):
    ext = start_ext(wrap=["prlimit", "--as=1073741824", "--"])
    uuid, path = registered_socket(core, ext)
    for _ in range(3):
        with raw(path) as s:
            s.sendall(TWO_GIB_STRING)
            # The connection is closed without a reply.
            assert recv_all(s) == b""
        assert ext.alive(), ext.log()
        assert pings(core, uuid), ext.log()
    lines = [l for l in ext.log().splitlines() if "2147483647" in l]
    assert len(lines) == 3, ext.log()
    assert "limit" in lines[0], lines[0]


def test_many_connections_each_claiming_a_large_string_cost_no_memory(core, start_ext):
    ext = start_ext()
    uuid, path = registered_socket(core, ext)
    claim = header(b"call") + bytes([0x0B, 0x00, 0x01]) + struct.pack(">i", 31 << 20)
    conns = []
    for _ in range(32):
        s = raw(path)
        s.sendall(claim)
        conns.append(s)
    for s in conns:
        assert recv_all(s) == b""
        s.close()
    assert pings(core, uuid), ext.log()
    with open("/proc/%d/status" % ext.proc.pid) as f:
        rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    assert rss_kb < 64 * 1024, rss_kb


def vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))


def test_partial_frames_on_many_connections_cannot_buffer_past_the_global_budget(core, start_ext):
    ext = start_ext()
    uuid, path = registered_socket(core, ext)
    claim = header(b"call") + bytes([0x0B, 0x00, 0x01]) + struct.pack(">i", 7 << 20)
    conns = [raw(path, timeout=5) for _ in range(80)]
    for s in conns:
        s.sendall(claim)
    chunk = b"x" * (256 << 10)
    shed = 0
    with ExtensionConnection(core.path, uuid) as c:
        # 80 connections x 3 MiB sent (of 7 MiB claimed): 240 MiB offered.
        for _ in range(12):
            for s in list(conns):
                try:
                    s.sendall(chunk)
                except OSError:
                    conns.remove(s)
                    s.close()
                    shed += 1
            assert c.ping().code == 0, ext.log()
    for s in conns:
        s.close()
    assert ext.alive(), ext.log()
    assert pings(core, uuid), ext.log()
    # The peak, not a sample: 64 MiB of budget plus the extension itself.
    assert vm_kb(ext.proc.pid, "VmHWM") < 100 * 1024, ext.log()
    assert shed > 0
    assert "closed the one holding the most" in ext.log(), ext.log()


# 4. Untrusted input in the log and in replies ---------------------------------


def test_a_5mb_malformed_context_adds_little_to_the_log_and_the_reply(core, start_ext):
    ext = start_ext(verbose=False)
    uuid, path = registered_socket(core, ext)
    ctx = '{"constraints": [' + "x" * (5 << 20)
    before = os.path.getsize(ext.stderr_path)
    with ExtensionConnection(core.path, uuid) as c:
        resp = c.generate("jails", ctx)
        assert resp.status.code == 1
        assert "not JSON" in resp.status.message, resp.status.message[:300]
        assert len(resp.status.message) < 1024, len(resp.status.message)
        # A 5 MB item or registry name is not echoed back whole either.
        for reply in (c.client.call("table", "j" * (5 << 20), {"action": "generate"}),
                      c.client.call("r" * (5 << 20), "jails", {"action": "generate"})):
            assert reply.status.code == 1
            assert len(reply.status.message) < 1024, len(reply.status.message)
            assert "%d bytes" % (5 << 20) in reply.status.message, reply.status.message
        assert c.ping().code == 0
    grown = os.path.getsize(ext.stderr_path) - before
    assert 0 < grown < 4096, (grown, ext.log()[:2000])
    assert "%d bytes" % len(ctx) in ext.log()


def test_a_newline_in_a_context_cannot_forge_a_log_line(core, start_ext):
    ext = start_ext(verbose=False)
    uuid, path = registered_socket(core, ext)
    forged = "2026-12-02T13:00:00.000000Z  WARN forged: jail web was deleted"
    before = ext.log().splitlines()
    with ExtensionConnection(core.path, uuid) as c:
        resp = c.generate("jails", "not json\n" + forged + "\n")
        assert resp.status.code == 1
        resp = c.generate("jails", '{"constraints":[{"name":"a\\n%s","list":7}]}' % forged)
        assert resp.status.code == 1
        assert "\n" not in resp.status.message, resp.status.message
    lines = ext.log().splitlines()[len(before):]
    assert len(lines) == 2, lines
    assert not any(l.startswith("2026-12-02T13:00:00") for l in lines), lines
    assert all(forged in l for l in lines), lines


# 5. The socket belongs to its owner and the core ------------------------------


def test_the_socket_is_0600_from_the_moment_it_exists_even_under_umask_0(ext_bin, workdir, pool):
    import stat
    from conftest import Ext
    from standin import StandIn

    seen = []
    for i in range(10):
        core = StandIn(os.path.join(workdir, "c%d.em" % i)).start()
        ext = Ext(ext_bin, core.path, pool, workdir, preexec_fn=lambda: os.umask(0))
        try:
            assert core.handler.registered.wait(10), ext.log()
            uuid, _, _ = core.only_extension()
            path = "%s.%d" % (core.path, uuid)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                seen.append(stat.S_IMODE(st.st_mode))
                break
            assert pings(core, uuid), ext.log()
        finally:
            ext.stop()
            core.stop()
    assert seen == [0o600] * 10, [oct(m) for m in seen]
    # No private directory is left behind.
    assert not [n for n in os.listdir(workdir) if n.startswith(".jailer-ext")]


NOBODY_SHUTDOWN = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(struct.pack(">Ii", 0x80010001, 8) + b"shutdown" + struct.pack(">i", 1) + b"\0")
reply = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    reply += b
    if b"refused" in reply:
        break
sys.stdout.write(repr(reply))
"""


def test_shutdown_from_another_user_is_refused(registered):
    core, ext, uuid, info, registry = registered
    path = "%s.%d" % (core.path, uuid)
    # As if the socket were reachable (a lax directory, a race): the peer's
    # credentials still decide.
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, 0o666)
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", NOBODY_SHUTDOWN, path],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "refused" in out.stdout and "65534" in out.stdout, out.stdout
    time.sleep(3 * INTERVAL)
    assert ext.alive(), ext.log()
    assert not core.handler.deregistered.is_set()
    assert pings(core, uuid), ext.log()
    assert "shutdown refused" in ext.log()
    # root (the core) may still stop it.
    with ExtensionConnection(core.path, uuid) as c:
        c.shutdown()
    assert ext.wait(10) == 0, ext.log()


# 7. A missing pool, malformed frames --------------------------------------------


def test_a_missing_root_is_said_at_start_and_in_every_generate(core, start_ext, workdir):
    root = os.path.join(workdir, "no-such-pool")
    ext = start_ext(root=root, verbose=False)
    uuid, path = registered_socket(core, ext)
    assert wait_for(lambda: "does not exist" in ext.log(), 5), ext.log()
    assert root in ext.log()
    with ExtensionConnection(core.path, uuid) as c:
        for table in core.only_extension()[2]["table"]:
            resp = c.generate(table, {"constraints": []})
            assert resp.status.code == 1, (table, resp)
            assert root in resp.status.message and "does not exist" in resp.status.message
    os.makedirs(os.path.join(root, "jails"))
    with ExtensionConnection(core.path, uuid) as c:
        resp = c.generate("jails", {"constraints": []})
        assert resp.status.code == 0 and resp.response == [], resp


def test_malformed_frames_are_at_most_one_log_line_each(core, start_ext):
    ext = start_ext(verbose=False)
    uuid, path = registered_socket(core, ext)
    before = len(ext.log().splitlines())
    frames = [
        header(b"call") + bytes([0x0B, 0x00, 0x01]) + b"\xff\xff\xff\xff",  # length -1
        header(b"call") + bytes([0x0F, 0x00, 0x03, 0x0D]) + b"\xff\xff\xff\xfe",  # list -2
        header(b"call") + bytes([0x0D, 0x00, 0x03, 0x0B, 0x0B]) + b"\x80\x00\x00\x00",
        header(b"ping") + bytes([0x42, 0x00, 0x01]),  # no such type
    ]
    for f in frames:
        with raw(path) as s:
            s.sendall(f)
            s.shutdown(socket.SHUT_WR)
            recv_all(s)
    assert pings(core, uuid) and ext.alive(), ext.log()
    lines = ext.log().splitlines()[before:]
    assert len(lines) <= len(frames), lines
    assert not any(l.startswith(("thread ", "note:", "stack backtrace", "  ")) for l in lines), lines


# 2. Hostile connections do not lock the core out --------------------------------


class Hostile:
    """500 clients that hold connections open: idle, half a header,
    never reading their replies, trickling a byte at a time. Each one that
    is closed connects again, for as long as the test runs."""

    KINDS = ("idle", "half", "unread", "trickle")

    def __init__(self, path, n=500):
        import threading
        self.path = path
        self.socks = {}
        self.stop = threading.Event()
        self.reconnects = 0
        self.sent = {}
        for i in range(n):
            self.open(i)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def kind(self, i):
        return self.KINDS[i % len(self.KINDS)]

    def open(self, i):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        s.setblocking(False)
        if self.kind(i) == "half":
            s.send(header(b"ping")[:6])
        self.socks[i] = s

    def run(self):
        ping = header(b"ping") + b"\0"
        while not self.stop.wait(0.1):
            for i, s in list(self.socks.items()):
                try:
                    k = self.kind(i)
                    if k == "unread":
                        while True:
                            s.send(ping)  # until the buffers are full
                    elif k == "trickle":
                        # A valid ping, a byte every 0.4 s: whole after 7 s.
                        n = self.sent.get(i, 0)
                        if n % 4 == 0:
                            s.send(ping[(n // 4) % len(ping):][:1])
                        self.sent[i] = n + 1
                    else:
                        if s.recv(1, socket.MSG_PEEK) == b"":
                            raise ConnectionError("closed")
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    try:
                        self.open(i)
                        self.reconnects += 1
                    except OSError:
                        pass

    def close(self):
        self.stop.set()
        self.thread.join(10)
        for s in self.socks.values():
            s.close()


def test_500_hostile_connections_do_not_stop_the_cores_pings(core, start_ext):
    ext = start_ext(verbose=False)
    uuid, path = registered_socket(core, ext)
    hostile = Hostile(path)
    try:
        answered = 0
        deadline = time.monotonic() + 8  # past two request deadlines (3 s)
        while time.monotonic() < deadline:
            # As osqueryd pings an extension: a fresh connection, a timeout.
            with ExtensionConnection(core.path, uuid, timeout=3) as c:
                st = c.ping()
                assert st.code == 0 and st.uuid == uuid, st
                if answered % 10 == 0:
                    resp = c.generate("jails", {"constraints": []})
                    assert resp.status.code == 0, resp.status.message
                    assert {r["name"] for r in resp.response} == {"web", "db", "bad"}
            answered += 1
            time.sleep(0.1)
        assert answered >= 20
        assert ext.alive(), ext.log()
        # The deadlines closed hostile connections (and they came back).
        assert hostile.reconnects > 0
    finally:
        hostile.close()
    assert pings(core, uuid)
    with open("/proc/%d/status" % ext.proc.pid) as f:
        threads = next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
    assert threads < 16, threads


def test_idle_rss_stays_under_15_mb(registered):
    core, ext, uuid, info, registry = registered
    assert pings(core, uuid)
    time.sleep(2 * INTERVAL)
    with open("/proc/%d/status" % ext.proc.pid) as f:
        rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    assert rss_kb < 15 * 1024, rss_kb


# 6. A core restarted within the ping interval ------------------------------------


def test_a_core_restarted_within_the_ping_interval_is_noticed(registered):
    from standin import StandIn

    core, ext, uuid, info, registry = registered
    ext_sock = "%s.%d" % (core.path, uuid)
    # Faster than one interval (here: at once, its socket renamed over the
    # old one), so that the new core answers the next ping.
    new = StandIn(core.path + ".new").start()
    os.rename(new.path, core.path)
    new.path, core.path = core.path, new.path
    core.stop()
    try:
        code = ext.wait(20 * INTERVAL + 5)
        assert code == 0, ext.log()
        assert "restarted" in ext.log(), ext.log()
        assert not os.path.exists(ext_sock)
        assert not new.handler.registered_extensions
    finally:
        new.stop()


def test_a_core_that_forgot_the_extension_is_left(registered):
    core, ext, uuid, info, registry = registered
    with core.handler.lock:
        core.handler.registered_extensions.pop(uuid)
    code = ext.wait(20 * INTERVAL + 5)
    assert code == 0, ext.log()
    assert "no longer knows this extension (uuid %d)" % uuid in ext.log(), ext.log()


def slow_pool(root, n):
    """A pool of n jails: a `jails` generate over all of them takes long."""
    import copy
    import json

    from conftest import WEB
    for i in range(n):
        name = "j%05d" % i
        rec = copy.deepcopy(WEB)
        rec["spec"]["name"] = rec["spec"]["hostname"] = name
        os.makedirs(os.path.join(root, "jails", name))
        with open(os.path.join(root, "jails", name, "jail.json"), "w") as f:
            json.dump(rec, f)
    os.makedirs(os.path.join(root, "templates"))
    return root


def test_a_running_generate_is_abandoned_when_its_client_hangs_up(core, start_ext, workdir):
    root = slow_pool(os.path.join(workdir, "slow"), 6000)
    ext = start_ext(root=root)
    uuid, path = registered_socket(core, ext)
    abandoned = lambda: ext.log().count("abandoned generate for closed client")
    # One slow generate per worker; the clients hang up once all four
    # calls are with the workers.
    clients = []
    for _ in range(4):
        c = ExtensionConnection(core.path, uuid)
        c.__enter__()
        c.client.send_call("table", "jails", {"action": "generate"})
        clients.append(c)
    assert wait_for(lambda: ext.log().count("call started") == 4, 10), ext.log()[-3000:]
    for c in clients:
        c.__exit__(None, None, None)
    # A fifth query is answered once the workers are free again: only after
    # all four generates were given up (they would still be running).
    only_web = {"constraints": [{"name": "name", "affinity": "TEXT",
                                 "list": [{"op": 2, "expr": "j00001"}]}]}
    with ExtensionConnection(core.path, uuid) as c:
        assert wait_for(lambda: abandoned() == 4, 30), ext.log()[-3000:]
        resp = c.generate("jails", only_web)
        assert resp.status.code == 0, resp.status.message
        assert [r["name"] for r in resp.response] == ["j00001"]
    assert abandoned() == 4, ext.log()[-3000:]
    # None of the four was generated to its end, and none warned.
    log = ext.log()
    before = log.rsplit("abandoned generate for closed client", 1)[0]
    assert "call answered" not in before, log[-3000:]
    assert "WARN" not in log, log[-3000:]
