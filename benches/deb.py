#!/usr/bin/env python3
"""Benchmark: a service package into a fresh jail, three ways, in one run.

On one scratch pool (a loop-mounted btrfs image in a temp dir, released by
exact name at the end), with the example package of docs/packaging.md
(docs/examples/jailer-echod: a perl echo service whose postinst runs
`useradd --system`), on a debootstrap minbase template:
  * jailer:  `jailer create jN --template base --deb echod.deb`, then
             `jailer rm jN`; split: the same create without --deb (snapshot
             and record), the rest of the --deb create (the install inside
             the jail), and the rm (cleanup)
  * root:    `cp -a` of the template, `dpkg --root=COPY -i echod.deb` (its
             maintainer scripts run as host root, chrooted), `rm -rf`
  * chroot:  `btrfs subvolume snapshot` of the template, the .deb copied in,
             `unshare --mount --uts --ipc --pid --fork chroot SNAP dpkg -i`
             (host root in new namespaces, no user namespace), `btrfs
             subvolume delete`
Interleaved, so drift in the machine's load hits all alike. Prints medians
as a Markdown table for docs/performance.md.

Usage (root): benches/deb.py [--runs 9] [--copy-runs 5] [--rootfs DIR]
Builds jailer as debian/rules does (benches/scratch.py: release, static).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from scratch import REPO, build, release_pool  # benches/scratch.py


def run(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--copy-runs", type=int, default=5)
    ap.add_argument("--rootfs", help="an existing debootstrap tree to import")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("deb.py needs root (btrfs, loop devices, dpkg --root)")
    jailer = os.path.join(build("jailer"), "jailer")
    os.sync()
    tmp = tempfile.mkdtemp(prefix="jailer-bench-deb-")
    root = os.path.join(tmp, "pool")
    image = root + ".img"
    try:
        deb = os.path.join(tmp, "jailer-echod_1.0_all.deb")
        run("dpkg-deb", "--root-owner-group", "--build",
            os.path.join(REPO, "docs", "examples", "jailer-echod"), deb)
        j = lambda *x: run(jailer, "--root", root, *x)
        j("init", "--size", "8G")
        if a.rootfs:
            j("template", "import", "base", a.rootfs)
        else:
            j("template", "debootstrap", "base", "--variant", "minbase")
        tpl = os.path.join(root, "templates", "base", "rootfs")
        hand = os.path.join(root, "hand")
        os.mkdir(hand)

        # Warm the caches once for each method.
        j("create", "warm", "--template", "base", "--deb", deb)
        j("rm", "warm")

        res = {k: [] for k in ["j_snap", "j_deb", "j_rm", "r_cp", "r_dpkg", "r_rm",
                               "c_snap", "c_dpkg", "c_rm"]}

        def jailer_cycle(i):
            res["j_snap"].append(timed(lambda: j("create", f"s{i}", "--template", "base",
                                                 "--", "/bin/true")))
            j("rm", f"s{i}")
            os.sync()
            res["j_deb"].append(timed(lambda: j("create", f"d{i}", "--template", "base",
                                                "--deb", deb)))
            res["j_rm"].append(timed(lambda: j("rm", f"d{i}")))

        def root_cycle(i):
            dst = os.path.join(hand, f"c{i}")
            res["r_cp"].append(timed(lambda: run("cp", "-a", tpl, dst)))
            res["r_dpkg"].append(timed(lambda: run(
                "dpkg", f"--root={dst}", "--force-confdef", "--force-confold", "-i", deb,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))))
            res["r_rm"].append(timed(lambda: run("rm", "-rf", dst)))

        def chroot_cycle(i):
            dst = os.path.join(hand, f"u{i}")
            res["c_snap"].append(timed(lambda: run("btrfs", "subvolume", "snapshot", tpl, dst)))

            def install():
                shutil.copy(deb, os.path.join(dst, "tmp", "echod.deb"))
                run("unshare", "--mount", "--uts", "--ipc", "--pid", "--fork",
                    "chroot", dst, "dpkg", "--force-confdef", "--force-confold",
                    "-i", "/tmp/echod.deb",
                    env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            res["c_dpkg"].append(timed(install))
            res["c_rm"].append(timed(lambda: run("btrfs", "subvolume", "delete", dst)))

        # Each method starts with nothing dirty (untimed sync): the writeback
        # of a `cp -a` would otherwise land in the next method's fsyncs (dpkg
        # fsyncs what it unpacks).
        for i in range(a.runs):
            os.sync()
            jailer_cycle(i)
            os.sync()
            chroot_cycle(i)
            if i < a.copy_runs:
                os.sync()
                root_cycle(i)

        m = {k: statistics.median(v) * 1000 for k, v in res.items()}
        # The install part of jailer's create: the --deb create less the
        # plain one (both medians).
        j_inst = m["j_deb"] - m["j_snap"]
        rows = [
            ("`jailer create --deb` + `jailer rm`", m["j_snap"], j_inst, m["j_rm"]),
            ("`cp -a` + `dpkg --root` + `rm -rf`", m["r_cp"], m["r_dpkg"], m["r_rm"]),
            ("snapshot + `unshare` chroot `dpkg -i` + delete", m["c_snap"], m["c_dpkg"],
             m["c_rm"]),
        ]
        total0 = sum(rows[0][1:])
        print(f"package: jailer-echod 1.0 (docs/examples); template: minbase; runs: "
              f"{a.runs} (cp -a {a.copy_runs}); kernel {os.uname().release}")
        print()
        print("| method | snapshot (ms) | dpkg (ms) | cleanup (ms) | total (ms) | ratio to jailer |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, s, d, c in rows:
            t = s + d + c
            print(f"| {label} | {s:.1f} | {d:.1f} | {c:.1f} | {t:.1f} | {t / total0:.2f}x |")
        print()
        print(f"jailer's --deb create: {m['j_deb']:.1f} ms (plain create {m['j_snap']:.1f} ms)")
    finally:
        subprocess.run(["sh", "-c", f"for s in {root}/hand/*; do btrfs subvolume delete \"$s\"; done"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        release_pool(root, image, tmp)


if __name__ == "__main__":
    main()
