"""jailer-extension against a stand-in osquery core, over osquery's real
Thrift protocol (Facebook's generated Python code on the other side)."""

import json
import os
import signal
import socket
import struct
import threading
import time

from osquery.extensions.ExtensionManager import Client as ExtensionManagerClient
from thrift.Thrift import TApplicationException

from conftest import INTERVAL, wait_for
from standin import ExtensionConnection, StandIn, eq_context

OPTION_BITS = {"index": 1, "required": 2, "hidden": 16}


def expected_routes(table_spec):
    return [
        {
            "id": "column",
            "name": c["name"],
            "type": c["type"],
            "op": str(sum(bit for opt, bit in OPTION_BITS.items() if c["options"][opt])),
        }
        for c in table_spec["columns"]
    ]


def spec_of(spec, table):
    return next(t for t in spec if t["name"] == table)


def ok(resp):
    assert resp.status.code == 0, resp.status.message
    return resp.response


# Registration ---------------------------------------------------------------


def test_registers_every_table_in_one_call_with_its_columns(registered, spec):
    core, ext, uuid, info, registry = registered
    assert info.name == "jailer"
    assert info.version
    # One registerExtension, every table in the "table" registry.
    assert len(core.handler.registered_extensions) == 1
    tables = registry["table"]
    assert sorted(tables) == sorted(t["name"] for t in spec)
    for t in spec:
        assert tables[t["name"]] == expected_routes(t), t["name"]
    # The public column names are there.
    for table, cols in {
        "jails": ["name", "state", "pid", "uid_base", "cpu_limit", "net_namespace"],
        "jail_processes": ["jail", "pid", "jail_pid", "no_new_privs", "seccomp_mode"],
        "jail_mappings": ["jail", "type", "jail_id", "host_id", "count", "status"],
        "jail_capabilities": ["jail", "pid", "capability", "cap_set", "expected", "actual", "status"],
        "jail_mounts": ["jail", "mount_point", "source", "fstype", "options", "read_only"],
        "jail_resources": ["jail", "cgroup_version", "memory_current", "pids_limit", "frozen"],
        "jail_packages": ["jail", "name", "version", "arch", "status", "source", "maintainer", "installed_size"],
    }.items():
        names = [r["name"] for r in tables[table]]
        for c in cols:
            assert c in names, (table, c)
    jails_routes = {r["name"]: r for r in tables["jails"]}
    assert jails_routes["name"]["op"] == "1"  # INDEX
    assert jails_routes["cpu_limit"]["type"] == "DOUBLE"
    # The extension's socket is private to its owner.
    mode = os.stat("%s.%d" % (core.path, uuid)).st_mode & 0o777
    assert mode == 0o600, oct(mode)


def test_columns_action_returns_the_registered_routes(registered):
    core, ext, uuid, info, registry = registered
    with ExtensionConnection(core.path, uuid) as c:
        for table, routes in registry["table"].items():
            assert ok(c.columns(table)) == routes


def test_ping_answers_and_the_extension_pings_the_core(registered):
    core, ext, uuid, info, registry = registered
    with ExtensionConnection(core.path, uuid) as c:
        st = c.ping()
    assert st.code == 0 and st.uuid == uuid
    before = core.handler.pings
    assert wait_for(lambda: core.handler.pings >= before + 2, 10 * INTERVAL + 2), ext.log()


# Rows -----------------------------------------------------------------------


def test_generate_jails_pushes_the_name_constraint_down(registered, spec):
    core, ext, uuid, info, registry = registered
    columns = {c["name"] for c in spec_of(spec, "jails")["columns"]}
    with ExtensionConnection(core.path, uuid) as c:
        rows = ok(c.generate("jails", eq_context("name", "web", cols_used=["name", "state"])))
        assert [r["name"] for r in rows] == ["web"], rows
        web = rows[0]
        assert set(web) <= columns
        assert web["id"] == "5f0c6a1e9b2d4c7f8a3e1d2c3b4a5968"
        assert web["state"] == "created"
        assert web["template"] == "bookworm"
        assert web["hostname"] == "web"
        assert web["uid_base"] == "268435456" and web["id_count"] == "65536"
        assert web["memory_limit"] == "268435456"
        assert float(web["cpu_limit"]) == 0.5
        assert web["pids_limit"] == "100"
        assert web["pid"] == "-1"
        assert web["created_at"] == "1700000000"
        assert web["network"] == "none"

        # Without constraints: every jail, the corrupt one as broken.
        rows = ok(c.generate("jails", {"constraints": []}))
        by_name = {r["name"]: r for r in rows}
        assert set(by_name) == {"web", "db", "bad"}, rows
        assert by_name["bad"]["state"] == "broken"
        db = by_name["db"]
        assert db["state"] == "stopped"
        assert db["memory_limit"] == "-1" and db["pids_limit"] == "-1"
        assert db["ip_address"] == "192.0.2.10"
        assert db["exit_code"] == "0"

        # IN (...) arrives as several equality values.
        ctx = {"constraints": [{"name": "name", "affinity": "TEXT",
                                "list": [{"op": 2, "expr": "db"}, {"op": 2, "expr": "web"}]}]}
        assert sorted(r["name"] for r in ok(c.generate("jails", ctx))) == ["db", "web"]

        # Other operators are left to SQLite: a superset comes back.
        ctx = {"constraints": [{"name": "name", "affinity": "TEXT",
                                "list": [{"op": 65, "expr": "w%"}]}]}
        assert len(ok(c.generate("jails", ctx))) == 3

        # No such jail: no rows, no error.
        assert ok(c.generate("jails", eq_context("name", "nope"))) == []


def test_every_table_generates_on_the_fixture_pool(registered, spec):
    core, ext, uuid, info, registry = registered
    with ExtensionConnection(core.path, uuid) as c:
        for t in spec:
            names = {col["name"] for col in t["columns"]}
            rows = ok(c.generate(t["name"]))
            for r in rows:
                assert set(r) <= names, (t["name"], r)
            # None of the fixture jails runs: no processes to show.
            if t["name"] in ("jail_processes", "jail_capabilities"):
                assert rows == [], (t["name"], rows)
            rows = ok(c.generate(t["name"], eq_context(t["columns"][0]["name"], "web")))
            for r in rows:
                assert r.get(t["columns"][0]["name"]) == "web", (t["name"], r)


def test_concurrent_calls_are_served(registered):
    core, ext, uuid, info, registry = registered
    errors = []

    def worker():
        try:
            for _ in range(10):
                with ExtensionConnection(core.path, uuid) as c:
                    rows = ok(c.generate("jails", eq_context("name", "db")))
                    assert [r["name"] for r in rows] == ["db"]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert ext.alive()


# Errors osquery may send ----------------------------------------------------


def test_malformed_context_is_an_error_status_and_the_extension_lives_on(registered):
    core, ext, uuid, info, registry = registered
    with ExtensionConnection(core.path, uuid) as c:
        for bad in ["{not json", "[]", '{"constraints": 5}',
                    '{"constraints": [{"list": []}]}',
                    '{"constraints": [{"name": "name", "list": [{"op": "x", "expr": "web"}]}]}']:
            resp = c.generate("jails", bad)
            assert resp.status.code == 1, bad
            assert "context" in resp.status.message, resp.status.message
            assert resp.response == []
        # The same connection and the process still work.
        assert [r["name"] for r in ok(c.generate("jails", eq_context("name", "web")))] == ["web"]
    assert ext.alive()
    with ExtensionConnection(core.path, uuid) as c:
        assert c.ping().code == 0


def test_garbage_on_the_socket_drops_that_connection_only(registered):
    core, ext, uuid, info, registry = registered
    path = "%s.%d" % (core.path, uuid)
    call_header = struct.pack(">ii", -2147418111, 4) + b"call" + struct.pack(">i", 1)
    for junk in [
        b"\x00" * 3,
        b"GET / HTTP/1.1\r\n\r\n",
        os.urandom(4096),
        # A call whose first string claims a negative length.
        call_header + b"\x0b\x00\x01" + struct.pack(">i", -1),
        # ... or 2 GiB that never come.
        call_header + b"\x0b\x00\x01" + struct.pack(">i", 0x7FFFFFFF),
    ]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
    assert ext.alive(), ext.log()
    with ExtensionConnection(core.path, uuid) as c:
        assert c.ping().code == 0
        assert [r["name"] for r in ok(c.generate("jails", eq_context("name", "db")))] == ["db"]
    # Unknown methods get a Thrift exception, not a hang.
    with ExtensionConnection(core.path, uuid) as c:
        try:
            ExtensionManagerClient(c.client._iprot).extensions()
            raise AssertionError("extensions() answered")
        except TApplicationException as e:
            assert e.type == TApplicationException.UNKNOWN_METHOD


def test_unknown_table_registry_and_action_are_error_statuses(registered):
    core, ext, uuid, info, registry = registered
    with ExtensionConnection(core.path, uuid) as c:
        resp = c.client.call("table", "no_such_table", {"action": "generate"})
        assert resp.status.code == 1 and "no_such_table" in resp.status.message
        resp = c.client.call("config", "jails", {"action": "genConfig"})
        assert resp.status.code == 1
        resp = c.client.call("table", "jails", {"action": "insert", "json_value_array": "[]"})
        assert resp.status.code == 1 and "read-only" in resp.status.message
        resp = c.client.call("table", "jails", {})
        assert resp.status.code == 1
    assert ext.alive()


# Lifecycle ------------------------------------------------------------------


def test_shutdown_deregisters_removes_the_socket_and_exits_0(registered):
    core, ext, uuid, info, registry = registered
    ext_sock = "%s.%d" % (core.path, uuid)
    with ExtensionConnection(core.path, uuid) as c:
        c.shutdown()
    assert ext.wait(10) == 0, ext.log()
    assert not os.path.exists(ext_sock)
    assert core.handler.deregistrations == [uuid]
    assert core.handler.registered_extensions == {}


def test_sigterm_also_leaves_cleanly(registered):
    core, ext, uuid, info, registry = registered
    ext.proc.send_signal(signal.SIGTERM)
    assert ext.wait(10) == 0, ext.log()
    assert not os.path.exists("%s.%d" % (core.path, uuid))
    assert core.handler.deregistrations == [uuid]


def test_refused_registration_exits_nonzero_with_the_reason(workdir, start_ext):
    core = StandIn(os.path.join(workdir, "osquery.em"),
                   refuse=(1, "Duplicate extension registered")).start()
    try:
        ext = start_ext()
        code = ext.wait(10)
        log = ext.log()
        assert code not in (None, 0), log
        assert "refused" in log and "Duplicate extension registered" in log, log
        assert core.handler.registered.is_set()
        # It never served a socket of its own.
        assert [p for p in os.listdir(workdir) if p.startswith("osquery.em.")] == []
    finally:
        core.stop()


def test_exits_when_the_core_vanishes(registered):
    # Like osquery's own SDK, an extension whose core is gone ends normally
    # (status 0), saying so on stderr.
    core, ext, uuid, info, registry = registered
    ext_sock = "%s.%d" % (core.path, uuid)
    gone_at = time.monotonic()
    core.stop()
    code = ext.wait(5 * INTERVAL + 5)
    took = time.monotonic() - gone_at
    log = ext.log()
    assert code == 0, log
    assert took < 5 * INTERVAL + 2, took
    assert "gone" in log, log
    assert not os.path.exists(ext_sock)


def test_waits_for_a_socket_that_appears_late(workdir, start_ext):
    path = os.path.join(workdir, "osquery.em")
    ext = start_ext(socket=path, timeout=10)
    time.sleep(1.0)
    assert ext.alive(), ext.log()
    core = StandIn(path).start()
    try:
        assert core.handler.registered.wait(10), ext.log()
        uuid, info, registry = core.only_extension()
        assert wait_for(lambda: os.path.exists("%s.%d" % (path, uuid)), 5)
        with ExtensionConnection(path, uuid) as c:
            assert c.ping().code == 0
            assert len(ok(c.generate("jails"))) == 3
    finally:
        core.stop()


def test_gives_up_when_no_socket_appears_within_timeout(workdir, start_ext):
    started = time.monotonic()
    ext = start_ext(timeout=0.5)
    code = ext.wait(10)
    took = time.monotonic() - started
    log = ext.log()
    assert code not in (None, 0), log
    assert took < 5, took
    assert "no osquery extension manager" in log, log


def test_spec_lists_every_table_as_json(ext_bin, spec):
    names = [t["name"] for t in spec]
    assert names[0] == "jails"
    for t in ["jail_processes", "jail_mappings", "jail_capabilities", "jail_mounts", "jail_resources"]:
        assert t in names
    for t in spec:
        assert t["columns"], t["name"]
        for c in t["columns"]:
            assert c["type"] in ("TEXT", "INTEGER", "BIGINT", "DOUBLE")
            assert set(c["options"]) >= {"index", "required", "hidden"}
    json.dumps(spec)
