#!/usr/bin/env python3
"""Usage (from a checkout): python3 benches/osquery_eq.py

The cost of equality constraints with many values (`WHERE name IN (...)`,
issue 14 item 3): one `generate` of `jails` and of `jail_processes` through
osquery's Thrift interface with a context of N distinct `name` (or `jail`)
values, N = 10,000 and 40,000 (SIZES changes them). Linear handling takes
about 4x as long for 4x the values; the quadratic one it replaced took 15x
(0.19 s vs 2.8 s).

Builds the extension as debian/rules does (benches/scratch.py), runs in
tests/osquery/.venv (made as benches/osquery_tables.py makes it) against the
stand-in core of tests/osquery and a two-jail fixture pool. Prints, for each
table and N, the median wall time to the reply and the extension's CPU time
for the call. Not a test: nothing is asserted.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from osquery_tables import ensure_venv  # noqa: E402  (re-execs in the venv)
from scratch import build  # noqa: E402

ensure_venv()
TESTS = os.path.join(os.path.dirname(HERE), "tests", "osquery")
sys.path.insert(0, TESTS)

from conftest import write_pool  # noqa: E402
from standin import ExtensionConnection, StandIn  # noqa: E402

SIZES = [int(n) for n in os.environ.get("SIZES", "10000,40000").split(",")]
ROUNDS = int(os.environ.get("ROUNDS", 5))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context(column, n):
    values = [{"op": 2, "expr": "j%06d" % i} for i in range(n)] + [{"op": 2, "expr": "web"}]
    return json.dumps({"constraints": [{"name": column, "list": values, "affinity": "TEXT"}]})


def main():
    binary = os.path.join(build("jailer-extension"), "jailer-extension")
    tmp = tempfile.mkdtemp(prefix="jxeq-", dir="/tmp")
    core = StandIn(os.path.join(tmp, "osquery.em")).start()
    ext = subprocess.Popen([binary, "--socket", core.path, "--interval", "1",
                            "--root", write_pool(os.path.join(tmp, "pool"))])
    try:
        if not core.handler.registered.wait(10):
            sys.exit("the extension did not register")
        uuid, _, _ = core.only_extension()
        while not os.path.exists("%s.%d" % (core.path, uuid)):
            time.sleep(0.02)
        print("| table | values | context | median wall | extension CPU |")
        print("|---|---:|---:|---:|---:|")
        for table, column in (("jails", "name"), ("jail_processes", "jail")):
            for n in SIZES:
                ctx = context(column, n)
                walls, cpus = [], []
                for _ in range(ROUNDS):
                    with ExtensionConnection(core.path, uuid, timeout=600) as c:
                        cpu0, t0 = cpu_seconds(ext.pid), time.monotonic()
                        resp = c.generate(table, ctx)
                        walls.append(time.monotonic() - t0)
                        cpus.append(cpu_seconds(ext.pid) - cpu0)
                    assert resp.status.code == 0, resp.status.message
                print("| %s | %d | %d KiB | %.3f s | %.2f s |" % (
                    table, n, len(ctx) >> 10, statistics.median(walls),
                    statistics.median(cpus)))
    finally:
        ext.terminate()
        ext.wait(10)
        core.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
