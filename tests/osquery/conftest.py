"""Fixtures: the extension binary, its --spec, a fixture pool, a running
stand-in core and a running extension."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from standin import StandIn  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
INTERVAL = 0.2

# Two jails as `jailer create` records them (jailer/src/record.rs JailRecord,
# spec.rs JailSpec), and one whose jail.json is corrupt.
WEB = {
    "version": 1,
    "id": "5f0c6a1e9b2d4c7f8a3e1d2c3b4a5968",
    "spec": {
        "name": "web",
        "template": "bookworm",
        "hostname": "web",
        "memory": 268435456,
        "cpus": 0.5,
        "pids": 100,
        "cap_add": ["cap_net_raw"],
        "cap_drop": ["cap_chown"],
        "capabilities": [
            "cap_audit_write", "cap_dac_override", "cap_fowner", "cap_fsetid",
            "cap_kill", "cap_net_bind_service", "cap_net_raw", "cap_setfcap",
            "cap_setgid", "cap_setpcap", "cap_setuid", "cap_sys_chroot",
        ],
        "net": {"mode": "none"},
        "env": [["LANG", "C.UTF-8"]],
        "command": ["/usr/sbin/nginx", "-g", "daemon off;"],
    },
    "state": "created",
    "ids": {"uid_base": 268435456, "gid_base": 268435456, "count": 65536},
    "created_at": 1700000000,
    "started_at": None,
    "finished_at": None,
    "exit_code": None,
    "runtime": None,
}

DB = {
    "version": 1,
    "id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "spec": {
        "name": "db",
        "template": "bookworm",
        "hostname": "db",
        "memory": None,
        "cpus": None,
        "pids": None,
        "cap_add": [],
        "cap_drop": [],
        "capabilities": [
            "cap_audit_write", "cap_chown", "cap_dac_override", "cap_fowner",
            "cap_fsetid", "cap_kill", "cap_net_bind_service", "cap_setfcap",
            "cap_setgid", "cap_setpcap", "cap_setuid", "cap_sys_chroot",
        ],
        "net": {
            "mode": "macvlan",
            "parent": "eth1",
            "address": {"kind": "static", "ip": "192.0.2.10", "prefix": 24, "gateway": "192.0.2.1"},
        },
        "env": [],
        "command": ["/usr/bin/postgres"],
    },
    "state": "stopped",
    "ids": {"uid_base": 268500992, "gid_base": 268500992, "count": 65536},
    "created_at": 1700000100,
    "started_at": 1700000200,
    "finished_at": 1700000300,
    "exit_code": 0,
    "runtime": None,
}


def extension_binary():
    path = os.environ.get("JAILER_EXTENSION")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        path = os.path.join(target, "debug", "jailer-extension")
    if not os.access(path, os.X_OK):
        pytest.exit("no extension binary at %s: run tests/osquery/run.sh" % path, 2)
    return path


@pytest.fixture(scope="session")
def ext_bin():
    return extension_binary()


@pytest.fixture(scope="session")
def spec(ext_bin):
    out = subprocess.run([ext_bin, "--spec"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.fixture
def workdir():
    # Unix socket paths are limited to 108 bytes: keep them short.
    d = tempfile.mkdtemp(prefix="jx-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_pool(root):
    for name, rec in (("web", WEB), ("db", DB)):
        os.makedirs(os.path.join(root, "jails", name, "rootfs"))
        with open(os.path.join(root, "jails", name, "jail.json"), "w") as f:
            json.dump(rec, f)
    os.makedirs(os.path.join(root, "jails", "bad"))
    with open(os.path.join(root, "jails", "bad", "jail.json"), "w") as f:
        f.write('{"version": 1, "id": ')
    os.makedirs(os.path.join(root, "templates"))
    return root


@pytest.fixture
def pool(workdir):
    return write_pool(os.path.join(workdir, "pool"))


class Ext:
    """A running jailer-extension process."""

    def __init__(self, binary, socket, root, workdir, timeout=3, interval=INTERVAL, extra=(),
                 wrap=(), verbose=True, preexec_fn=None):
        self.socket = socket
        self.stderr_path = os.path.join(workdir, "ext.stderr")
        self.stderr = open(self.stderr_path, "w")
        # wrap: a command line the extension runs under (prlimit ...).
        args = [
            *wrap, binary, "--socket", socket, "--timeout", str(timeout),
            "--interval", str(interval), "--root", root,
            *(["--verbose"] if verbose else []), *extra,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=self.stderr, preexec_fn=preexec_fn
        )

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self):
        self.stderr.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.stderr.close()


@pytest.fixture
def start_ext(ext_bin, workdir, pool):
    started = []

    def start(socket=None, root=None, **kw):
        e = Ext(ext_bin, socket or os.path.join(workdir, "osquery.em"), root or pool, workdir, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


@pytest.fixture
def core(workdir):
    """A stand-in osquery core serving its extensions socket."""
    s = StandIn(os.path.join(workdir, "osquery.em")).start()
    yield s
    s.stop()


def wait_for(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture
def registered(core, start_ext):
    """A stand-in core with the extension registered and serving its socket."""
    ext = start_ext()
    assert core.handler.registered.wait(10), ext.log()
    uuid, info, registry = core.only_extension()
    ext_sock = "%s.%d" % (core.path, uuid)
    assert wait_for(lambda: os.path.exists(ext_sock), 5), ext.log()
    return core, ext, uuid, info, registry
