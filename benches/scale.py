#!/usr/bin/env python3
"""Benchmark: does `jailer create` / `jailer start` cost grow with the jails
a pool holds?

In one run, on one scratch pool (a loop-mounted btrfs image in a temp dir,
released by exact name at the end) and with a private id registry (a temp
dir named by JAILER_ID_REGISTRY, so that the host's registry is untouched):
the pool is filled with 1, 100 and then 1,000 jails (created, not running,
each with the default 10G disk limit), and at each level --runs fresh jails
are timed:
  * create:  `jailer create tN --template base -- /bin/true`
  * start:   `jailer start --wait tN` (start-to-exit of /bin/true)
  * snapshot: `btrfs subvolume snapshot` of the template by hand (what
              btrfs itself costs at that level, beside jailer's create)
then removed again (untimed), so that the level stays what it says.
Prints the medians as a Markdown table for docs/performance.md.

Usage (root): benches/scale.py [--runs 20] [--levels 1,100,1000]
              [--rootfs DIR]   reuse a debootstrap tree instead of running it
              [--jailer BIN]   time this binary instead of building one
              [--baseline BIN] also time BIN (an older build), interleaved,
                               on the same pool and registry
Builds jailer as debian/rules does (benches/scratch.py: release, static).
"""
import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from scratch import build, release_pool  # benches/scratch.py, beside this script


def run(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)


def timed(*args):
    t = time.perf_counter()
    run(*args)
    return time.perf_counter() - t


def forget_subids(registry):
    """The private registry wrote `root:BASE:COUNT` lines for its ranges to
    /etc/subuid and /etc/subgid; removes exactly those (under the host
    registry's lock, which is what else rewrites these files)."""
    try:
        with open(os.path.join(registry, "ranges.json")) as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return
    lines = {"subuid": set(), "subgid": set()}
    for e in entries:
        ids = e["ids"]
        lines["subuid"].add(f"root:{ids['uid_base']}:{ids['count']}")
        lines["subgid"].add(f"root:{ids['gid_base']}:{ids['count']}")
    lock_dir = "/var/lib/jailer-ids"
    lock = open(os.path.join(lock_dir, "lock"), "a") if os.path.isdir(lock_dir) else None
    try:
        if lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        for name, gone in lines.items():
            path = f"/etc/{name}"
            with open(path) as f:
                kept = [l for l in f.read().splitlines() if l not in gone]
            tmp = path + ".jailer-bench"
            with open(tmp, "w") as f:
                f.write("".join(l + "\n" for l in kept))
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
    finally:
        if lock:
            lock.close()


def settle(root):
    """Lets the pool's background work finish before a level is timed: a
    quota rescan (full qgroups; simple quotas have none), then a commit."""
    subprocess.run(["btrfs", "quota", "rescan", "-w", root],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["btrfs", "filesystem", "sync", root],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.sync()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--levels", default="1,100,1000")
    ap.add_argument("--rootfs", help="an existing debootstrap tree to import")
    ap.add_argument("--jailer", help="a jailer binary to time instead of building one")
    ap.add_argument("--baseline", help="an older jailer binary to time alongside")
    ap.add_argument("--pause", type=float, default=0.05,
                    help="seconds of quiet before each timed command")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    if os.geteuid() != 0:
        sys.exit("scale.py needs root (btrfs, loop devices)")
    jailer = a.jailer or os.path.join(build("jailer"), "jailer")
    os.sync()

    tmp = tempfile.mkdtemp(prefix="jailer-bench-")
    root = os.path.join(tmp, "pool")
    image = root + ".img"
    registry = os.path.join(tmp, "ids")
    os.environ["JAILER_ID_REGISTRY"] = registry
    try:
        j = lambda *x: run(jailer, "--root", root, *x)
        j("init", "--size", "16G")
        if a.rootfs:
            j("template", "import", "base", a.rootfs)
        else:
            j("template", "debootstrap", "base", "--variant", "minbase")
        # Warm the caches.
        j("create", "warm", "--template", "base", "--", "/bin/true")
        j("start", "--wait", "warm")
        j("rm", "warm")

        have = 0
        fill_s = 0.0
        rows = []
        for level in levels:
            t = time.perf_counter()
            while have < level:
                j("create", f"f{have}", "--template", "base", "--", "/bin/true")
                have += 1
            fill_s += time.perf_counter() - t
            settle(root)
            bins = {"new": jailer}
            if a.baseline:
                bins["base"] = a.baseline
            res = {k: ([], []) for k in bins}
            hand = []
            tpl = os.path.join(root, "templates", "base", "rootfs")
            hand_dir = os.path.join(root, "hand")
            os.makedirs(hand_dir, exist_ok=True)
            # Interleaved, so that drift in the machine's load hits all alike.
            for i in range(a.runs):
                for k, b in bins.items():
                    n = f"t{level}-{k}-{i}"
                    time.sleep(a.pause)
                    res[k][0].append(timed(b, "--root", root, "create", n,
                                           "--template", "base", "--", "/bin/true"))
                    res[k][1].append(timed(b, "--root", root, "start", "--wait", n))
                time.sleep(a.pause)
                dst = os.path.join(hand_dir, f"s{i}")
                hand.append(timed("btrfs", "subvolume", "snapshot", tpl, dst))
                run("btrfs", "subvolume", "delete", dst)
            for i in range(a.runs):
                for k in bins:
                    j("rm", f"t{level}-{k}-{i}")
            med = {k: (statistics.median(c) * 1000, statistics.median(st) * 1000)
                   for k, (c, st) in res.items()}
            med["hand"] = (statistics.median(hand) * 1000, 0.0)
            rows.append((level, med))
            print(f"# {level} jails: {med}", file=sys.stderr, flush=True)
        print(f"runs: {a.runs} per level, interleaved; pause {a.pause} s; filling to {have} jails took {fill_s:.0f} s "
              f"({fill_s / max(have, 1) * 1000:.0f} ms a jail); kernel {os.uname().release}; "
              f"{os.cpu_count()} cpus")
        print()
        head = ("| jails in the pool | median `create` (ms) | median `start --wait` /bin/true (ms) "
                "| `btrfs subvolume snapshot` by hand (ms) |")
        line = "|---:|---:|---:|---:|"
        if a.baseline:
            head += " baseline `create` (ms) | baseline `start --wait` (ms) |"
            line += "---:|---:|"
        print(head)
        print(line)
        for level, med in rows:
            cells = [f"{level}", f"{med['new'][0]:.1f}", f"{med['new'][1]:.1f}",
                     f"{med['hand'][0]:.1f}"]
            if a.baseline:
                cells += [f"{med['base'][0]:.1f}", f"{med['base'][1]:.1f}"]
            print("| " + " | ".join(cells) + " |")
        print()
        first, last = rows[0], rows[-1]
        for k in bins:
            print(f"{k}: create at {last[0]} / at {first[0]}: "
                  f"{last[1][k][0] / first[1][k][0]:.2f}x; "
                  f"start: {last[1][k][1] / first[1][k][1]:.2f}x")
        print(f"hand snapshot at {last[0]} / at {first[0]}: "
              f"{last[1]['hand'][0] / first[1]['hand'][0]:.2f}x")
    finally:
        release_pool(root, image, tmp + "-keep")
        forget_subids(registry)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
