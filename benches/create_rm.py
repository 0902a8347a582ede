#!/usr/bin/env python3
"""Benchmark: `jailer create` + `jailer rm` against the same cycle by hand.

In one run, on one scratch pool (a loop-mounted btrfs image in a temp dir,
released by exact name at the end):
  * jailer:   `jailer create bN --template base` + `jailer rm bN`
  * by hand:  `btrfs subvolume snapshot` + `btrfs subvolume delete`
  * copy:     `cp -a` of the template tree + `rm -rf` of the copy
The template is a debootstrap minbase root (about 6,800 files). Prints
medians and ratios as a Markdown table for docs/performance.md.

Usage (root): benches/create_rm.py [--runs 25] [--copy-runs 7]
              [--rootfs DIR]   reuse a debootstrap tree instead of running it
Builds jailer as debian/rules does (benches/scratch.py: release, static).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from scratch import build, release_pool  # benches/scratch.py, beside this script


def run(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--copy-runs", type=int, default=7)
    ap.add_argument("--rootfs", help="an existing debootstrap tree to import")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("create_rm.py needs root (btrfs, loop devices)")
    jailer = os.path.join(build("jailer"), "jailer")
    # Write back what the machine has dirty (a build just before, say), so
    # that its writeback does not land in the timed commits.
    os.sync()

    tmp = tempfile.mkdtemp(prefix="jailer-bench-")
    root = os.path.join(tmp, "pool")
    image = root + ".img"
    try:
        j = lambda *x: run(jailer, "--root", root, *x)
        j("init", "--size", "8G")
        if a.rootfs:
            j("template", "import", "base", a.rootfs)
        else:
            j("template", "debootstrap", "base", "--variant", "minbase")
        tpl = os.path.join(root, "templates", "base", "rootfs")
        files = int(subprocess.run(["sh", "-c", f"find {tpl} | wc -l"],
                                   capture_output=True, text=True).stdout) - 1
        hand_dir = os.path.join(root, "hand")
        os.mkdir(hand_dir)
        copy_dir = os.path.join(root, "copy")
        os.mkdir(copy_dir)
        # Warm the caches once for each method.
        j("create", "warm", "--template", "base", "--", "/bin/true")
        j("rm", "warm")

        def jailer_cycle(i):
            j("create", f"b{i}", "--template", "base", "--", "/bin/true")
            j("rm", f"b{i}")

        def hand_cycle(i):
            dst = os.path.join(hand_dir, f"s{i}")
            run("btrfs", "subvolume", "snapshot", tpl, dst)
            run("btrfs", "subvolume", "delete", dst)

        def copy_cycle(i):
            dst = os.path.join(copy_dir, f"c{i}")
            run("cp", "-a", tpl, dst)
            run("rm", "-rf", dst)

        results = {"jailer": [], "hand": [], "copy": []}
        # Interleave so that drift in the machine's load hits all alike.
        for i in range(a.runs):
            results["jailer"].append(timed(lambda: jailer_cycle(i)))
            results["hand"].append(timed(lambda: hand_cycle(i)))
            if i < a.copy_runs:
                results["copy"].append(timed(lambda: copy_cycle(i)))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"template: debootstrap minbase, {files} files; runs: "
              f"{a.runs} (copy {a.copy_runs}); kernel {os.uname().release}")
        print()
        print("| cycle | median (ms) | ratio to jailer |")
        print("|---|---:|---:|")
        for k, label in [("jailer", "`jailer create` + `jailer rm`"),
                         ("hand", "`btrfs subvolume snapshot` + `delete`"),
                         ("copy", "`cp -a` + `rm -rf`")]:
            print(f"| {label} | {med[k] * 1000:.1f} | {med[k] / med['jailer']:.2f}x |")
        print()
        print(f"jailer / hand-made snapshot cycle: {med['jailer'] / med['hand']:.2f}x "
              f"(target <= 1.2x)")
        print(f"copy / jailer: {med['copy'] / med['jailer']:.1f}x (target >= 30x)")
    finally:
        release_pool(root, image, tmp)


if __name__ == "__main__":
    main()
