#!/usr/bin/env python3
"""Usage (from a checkout, as root): python3 benches/osquery_tables.py

SELECT * FROM jail_processes / jail_capabilities through osquery's Thrift
interface, against `ps` and a plain Python loop over the same /proc files.

Setup: N_JAILS fixture jails recorded as running, whose (fixture) cgroups
hold N_PROCS real sleeping processes in all; /proc is the real one. The
extension (release build) registers with the stand-in osquery core of
tests/osquery; each timed query is one `generate` call on a fresh
connection, as osqueryd makes it, timed to the reply's last byte (osqueryd
decodes in C++; Python's decoder would dominate, so the replies are decoded
once, untimed, to check them). Rounds are interleaved so that load
drift hits every contender alike. Prints medians, the extension's RSS and
a Markdown table.

Needs cargo, python3 and python3-venv (tests/run.sh installs them); it
builds the extension as debian/rules does (benches/scratch.py), makes
tests/osquery/.venv from
tests/osquery/requirements.txt when missing or stale (as
tests/osquery/run.sh does; network access to PyPI) and runs itself in it.
N_JAILS, N_PROCS and ROUNDS change the sizes; EXT_LOG=FILE with
JAILER_LOG=debug keeps the extension's log (per-call timings).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from scratch import build  # benches/scratch.py, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests", "osquery")
VENV = os.path.join(TESTS, ".venv")

N_JAILS = int(os.environ.get("N_JAILS", 100))
N_PROCS = int(os.environ.get("N_PROCS", 1000))
ROUNDS = int(os.environ.get("ROUNDS", 15))


def ensure_venv():
    """Runs this script in tests/osquery/.venv, made from requirements.txt
    (and remade when that file changed, as tests/osquery/run.sh does)."""
    req = os.path.join(TESTS, "requirements.txt")
    marker = os.path.join(VENV, ".requirements")
    py = os.path.join(VENV, "bin", "python")

    def current():
        try:
            with open(req, "rb") as a, open(marker, "rb") as b:
                return a.read() == b.read() and os.path.exists(py)
        except OSError:
            return False

    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        try:
            import osquery  # noqa: F401
            import thrift  # noqa: F401
        except ImportError as e:
            sys.exit("%s lacks a package (%s): remove it and run again" % (VENV, e))
        return
    if not current():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet",
                        "--disable-pip-version-check", "-r", req], check=True)
        shutil.copy(req, marker)
    os.execv(py, [py] + sys.argv)


ensure_venv()
sys.path.insert(0, TESTS)

from osquery.extensions import Extension  # noqa: E402
from standin import StandIn  # noqa: E402
from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

CAPS = [
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
    "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
    "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
]
DEFAULT_CAPS = [
    "cap_audit_write", "cap_chown", "cap_dac_override", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_net_bind_service", "cap_setfcap", "cap_setgid", "cap_setpcap",
    "cap_setuid", "cap_sys_chroot",
]


def start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[19])


def make_fixture(base, procs):
    """N_JAILS running jails; jail i's cgroup lists its share of procs."""
    pool = os.path.join(base, "pool")
    cg = os.path.join(base, "cgroup")
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    per = len(procs) // N_JAILS
    for i in range(N_JAILS):
        name = "j%03d" % i
        mine = procs[i * per:(i + 1) * per]
        ref = {"pid": mine[0].pid, "start_time": start_time(mine[0].pid)}
        cgdir = os.path.join(cg, "jailer", name)
        os.makedirs(cgdir)
        with open(os.path.join(cgdir, "cgroup.procs"), "w") as f:
            f.write("".join("%d\n" % p.pid for p in mine))
        rec = {
            "version": 1, "id": "%032x" % (i + 1),
            "spec": {
                "name": name, "template": "bookworm", "hostname": name,
                "memory": 268435456, "cpus": 1.0, "pids": 100,
                "cap_add": [], "cap_drop": [], "capabilities": DEFAULT_CAPS,
                "net": {"mode": "none"}, "env": [], "command": ["/bin/sleep", "infinity"],
            },
            "state": "running",
            "ids": {"uid_base": (1 << 28) + i * 65536, "gid_base": (1 << 28) + i * 65536,
                    "count": 65536},
            "created_at": 1700000000, "started_at": 1700000001,
            "finished_at": None, "exit_code": None,
            "runtime": {
                "boot_id": boot_id, "monitor": ref, "init": ref,
                "cgroup": {"version": 2,
                           "paths": {"unified": "/sys/fs/cgroup/jailer/%s" % name}},
            },
        }
        os.makedirs(os.path.join(pool, "jails", name, "rootfs"))
        with open(os.path.join(pool, "jails", name, "jail.json"), "w") as f:
            json.dump(rec, f)
    return pool, cg


# The plain loop: the same files the extension reads, rows as dicts --------


def plain_jails(pool, cg):
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    jails_dir = os.path.join(pool, "jails")
    for name in sorted(os.listdir(jails_dir)):
        with open(os.path.join(jails_dir, name, "jail.json")) as f:
            rec = json.load(f)
        rt = rec.get("runtime")
        if rec["state"] != "running" or not rt or rt["boot_id"] != boot_id:
            continue
        try:
            if start_time(rt["init"]["pid"]) != rt["init"]["start_time"]:
                continue
        except OSError:
            continue
        path = rt["cgroup"]["paths"]["unified"].replace("/sys/fs/cgroup", cg, 1)
        with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
        yield rec, pids


def status_fields(pid):
    d = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.strip()
    return d


def plain_processes(pool, cg):
    rows = []
    for rec, pids in plain_jails(pool, cg):
        for pid in pids:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    stat = f.read()
                st = status_fields(pid)
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
                try:
                    exe = os.readlink("/proc/%d/exe" % pid)
                except OSError:
                    exe = ""
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            uid = st["Uid"].split()
            gid = st["Gid"].split()
            rows.append({
                "jail": rec["spec"]["name"], "pid": pid,
                "jail_pid": st.get("NSpid", "-1").split()[-1],
                "parent": fields[1], "name": st["Name"], "path": exe, "cmdline": cmdline,
                "state": fields[0], "uid": uid[0], "euid": uid[1], "gid": gid[0], "egid": gid[1],
                "start_time": fields[19], "user_time": fields[11], "system_time": fields[12],
                "resident_size": st.get("VmRSS", "-1"), "total_size": st.get("VmSize", "-1"),
                "threads": st["Threads"], "no_new_privs": st.get("NoNewPrivs", "0"),
                "seccomp_mode": st.get("Seccomp", "-1"),
            })
    return rows


def plain_capabilities(pool, cg):
    rows = []
    for rec, pids in plain_jails(pool, cg):
        spec = 0
        for c in rec["spec"]["capabilities"]:
            spec |= 1 << CAPS.index(c)
        for pid in pids:
            try:
                st = status_fields(pid)
            except OSError:
                continue
            for set_name, key, from_spec in (
                ("effective", "CapEff", True), ("permitted", "CapPrm", True),
                ("inheritable", "CapInh", False), ("bounding", "CapBnd", True),
                ("ambient", "CapAmb", False),
            ):
                held = int(st[key], 16)
                expected = spec if from_spec else 0
                both = held | expected
                for b in range(64):
                    bit = 1 << b
                    if both & bit:
                        e, a = bool(expected & bit), bool(held & bit)
                        rows.append({
                            "jail": rec["spec"]["name"], "pid": pid,
                            "capability": CAPS[b] if b < len(CAPS) else "cap_%d" % b,
                            "cap_set": set_name, "expected": int(e), "actual": int(a),
                            "status": "missing" if e and not a else "unexpected" if a and not e else "ok",
                        })
    return rows


# Through Thrift ----------------------------------------------------------


def call_bytes(table):
    """The `call` message osqueryd sends for SELECT * FROM table."""
    buf = TTransport.TMemoryBuffer()
    Extension.Client(TBinaryProtocol.TBinaryProtocol(buf)).send_call(
        "table", table, {"action": "generate", "context": '{"constraints":[]}'})
    return buf.getvalue()


def thrift_generate(path, request):
    """One call on a fresh connection, timed to the reply's last byte.
    Half-closing the connection after the request makes the extension close
    it once it has replied, so the reply is complete at EOF without decoding
    it here (osqueryd decodes in C++; Python's decoder would dominate)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    chunks = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        chunks.append(b)
    s.close()
    return b"".join(chunks)


def decode_rows(reply):
    client = Extension.Client(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(reply)))
    resp = client.recv_call()
    assert resp.status.code == 0, resp.status.message
    return resp.response


PS_ARGS = ["ps", "-eo", "pid,ppid,comm,stat,uid,gid,euid,egid,rss,vsz,nlwp,lstart,args"]


def run_ps():
    out = subprocess.run(PS_ARGS, check=True, capture_output=True).stdout
    return out.count(b"\n") - 1


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def timed(fn, *a):
    t = time.perf_counter()
    r = fn(*a)
    return (time.perf_counter() - t) * 1000, r


def main():
    binary = os.path.join(build("jailer-extension"), "jailer-extension")
    base = tempfile.mkdtemp(prefix="jxb-", dir="/tmp")
    procs, core, ext = [], None, None
    try:
        procs = [subprocess.Popen(["sleep", "infinity"]) for _ in range(N_PROCS)]
        pool, cg = make_fixture(base, procs)
        core = StandIn(os.path.join(base, "osquery.em")).start()
        ext = subprocess.Popen([binary, "--socket", core.path, "--interval", "3",
                                "--root", pool, "--cgroup-root", cg],
                               stderr=open(os.environ["EXT_LOG"], "w") if "EXT_LOG" in os.environ
                               else subprocess.DEVNULL)
        assert core.handler.registered.wait(10), "the extension did not register"
        uuid, _, _ = core.only_extension()
        ext_sock = "%s.%d" % (core.path, uuid)
        deadline = time.monotonic() + 5
        while not os.path.exists(ext_sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        rss_idle = vm(ext.pid, "VmRSS")

        req = {t: call_bytes(t) for t in ("jail_processes", "jail_capabilities")}
        replies = {}

        def via_thrift(table):
            replies[table] = thrift_generate(ext_sock, req[table])
            return len(replies[table])

        contenders = [
            ("jail_processes via Thrift", lambda: via_thrift("jail_processes")),
            ("jail_processes, plain /proc loop", lambda: len(plain_processes(pool, cg))),
            ("`%s`" % " ".join(PS_ARGS), run_ps),
            ("jail_capabilities via Thrift", lambda: via_thrift("jail_capabilities")),
            ("jail_capabilities, plain /proc loop", lambda: len(plain_capabilities(pool, cg))),
        ]
        times = {name: [] for name, _ in contenders}
        rows = {}
        for rnd in range(ROUNDS + 1):
            for name, fn in contenders:
                ms, n = timed(fn)
                rows[name] = n
                if rnd > 0:  # the first round warms caches
                    times[name].append(ms)
        rss_after = vm(ext.pid, "VmRSS")
        rss_peak = vm(ext.pid, "VmHWM")
        # Thrift rows, decoded once (untimed) to check them.
        nbytes = {}
        for table in replies:
            nbytes[table] = len(replies[table])
            decoded = decode_rows(replies[table])
            rows["%s via Thrift" % table] = len(decoded)
        assert rows["jail_processes via Thrift"] == rows["jail_processes, plain /proc loop"]
        assert rows["jail_capabilities via Thrift"] == rows["jail_capabilities, plain /proc loop"]
    finally:
        if ext is not None:
            ext.terminate()
            ext.wait(10)
        if core is not None:
            core.stop()
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print("%d jails, %d processes, %d rounds (medians), %s" % (
        N_JAILS, N_PROCS, ROUNDS, time.strftime("%Y-%m-%d")))
    print()
    print("| query | rows | median (ms) |")
    print("|---|---:|---:|")
    for name, _ in contenders:
        print("| %s | %d | %.1f |" % (name, rows[name], med[name]))
    print()
    p = med["jail_processes via Thrift"] / med["jail_processes, plain /proc loop"]
    c = med["jail_capabilities via Thrift"] / med["jail_capabilities, plain /proc loop"]
    print("- jail_processes, Thrift / plain loop: %.2fx (target: at most 2x)" % p)
    print("- jail_capabilities, Thrift / plain loop: %.2fx (target: at most 2x)" % c)
    print("- reply sizes: jail_processes %.1f MB, jail_capabilities %.1f MB" % (
        nbytes["jail_processes"] / 1e6, nbytes["jail_capabilities"] / 1e6))
    print("- extension RSS: %.1f MB idle (target: under 15 MB), %.1f MB after the runs, "
          "%.1f MB peak" % (rss_idle / 1024, rss_after / 1024, rss_peak / 1024))


if __name__ == "__main__":
    main()
