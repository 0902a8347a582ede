#!/usr/bin/env python3
"""Benchmark: running a jail against crun and unshare+chroot, in one run.

On one scratch pool (a loop-mounted btrfs image in a temp dir, released by
exact name at the end), medians over --runs, interleaved:
  * jailer run --rm       create from snapshot, start with full isolation
                          (user, mount, pid, uts, ipc, net, cgroup namespaces,
                          idmapped rootfs, caps, seccomp, cgroup limits),
                          wait for /bin/true, remove
  * jailer start --wait   start-to-exit of /bin/true in an existing jail
  * jailer exec           /bin/true in a running jail
  * crun run              an OCI bundle of the same tree with the same
                          namespaces and a 65,536-id user mapping
                          (--cgroup-manager=disabled: hybrid cgroup host),
                          the peer the issue names
  * crun run, cgroupfs    the same bundle with jailer's limits (memory, pids,
                          cpu) through crun's cgroupfs manager: the same
                          cgroup work as jailer (possible in the private
                          mount namespace below, which hides cgroup2)
  * crun exec             /bin/true in a running crun container
  * unshare + chroot      the same namespaces, no /proc, /dev, caps, seccomp
Each timed command is preceded by a pause (--pause, default 0.1 s) so that
none of them finds the RCU grace period of another's cgroup move still
running (moving a task between cgroups waits for one; moves within one
period of each other share it): every number is what one start on a quiet
host costs. --pause 0 measures back-to-back commands instead.
Prints a Markdown table for docs/performance.md.

Usage (root): benches/run_exec.py [--runs 30] [--pause 0.1] [--rootfs DIR]
Builds jailer as debian/rules does (benches/scratch.py: release, static).
Needs: cargo, apt-get install crun
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from scratch import build, release_pool  # benches/scratch.py, beside this script
CRUN_IDS = 1879048192  # a host id range no jail of this pool uses


def run(*args, check=True):
    r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {r.stderr.decode()}")
    return r


def timed(*args):
    t = time.perf_counter()
    r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {r.stderr.decode()}")
    return dt


LIMITS = ["--memory", "512M", "--pids", "512", "--cpus", "1"]


def crun_bundle(bundle, rootfs, cgroups=False):
    os.makedirs(bundle, exist_ok=True)
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["root"] = {"path": rootfs, "readonly": False}
    cfg["hostname"] = "bench"
    lin = cfg["linux"]
    lin["namespaces"] = [{"type": t} for t in
                         ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"]]
    lin["uidMappings"] = [{"containerID": 0, "hostID": CRUN_IDS, "size": 65536}]
    lin["gidMappings"] = [{"containerID": 0, "hostID": CRUN_IDS, "size": 65536}]
    lin.pop("resources", None)
    if cgroups:
        # jailer's LIMITS, in OCI terms.
        lin["resources"] = {"memory": {"limit": 512 << 20}, "pids": {"limit": 512},
                            "cpu": {"quota": 100000, "period": 100000}}
        lin["cgroupsPath"] = "/jailer-bench-crun"
    # No cgroup mount: the cgroup manager is disabled on this hybrid host.
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)


def private_mount_namespace_without_cgroup2():
    """crun 1.8 refuses a hybrid host whose cgroup2 hierarchy holds any
    controller (here: hugetlb), even with --cgroup-manager=disabled. Give this
    benchmark (and every process it starts, jailer included) a private mount
    namespace in which /sys/fs/cgroup/unified is not mounted."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        sys.exit(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    run("mount", "--make-rprivate", "/")
    if os.path.ismount("/sys/fs/cgroup/unified"):
        run("umount", "/sys/fs/cgroup/unified")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--pause", type=float, default=0.1,
                    help="seconds of quiet before each timed command")
    ap.add_argument("--rootfs", help="an existing debootstrap tree to import")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run_exec.py needs root")
    if not shutil.which("crun"):
        sys.exit("needs crun: apt-get install crun")
    jailer = os.path.join(build("jailer"), "jailer")
    # Write back what the machine has dirty (a build just before, say), so
    # that its writeback does not land in the timed commits.
    os.sync()
    private_mount_namespace_without_cgroup2()
    tmp = tempfile.mkdtemp(prefix="jailer-bench-")
    # crun resolves the bundle's path as the container's root user: the
    # directory must be searchable by others (jailer does not need this).
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, "pool")
    image = root + ".img"
    crun_root = os.path.join(tmp, "crun-state")
    started = []
    bound = []
    try:
        J = lambda *x: run(jailer, "--root", root, *x)
        J("init", "--size", "8G")
        if a.rootfs:
            J("template", "import", "base", a.rootfs)
        else:
            J("template", "debootstrap", "base")
        tpl = os.path.join(root, "templates", "base", "rootfs")
        # crun's rootfs: a snapshot in the pool, seen through a bind mount
        # in the (0755) temp dir. The pool's root is 0700 (jailer keeps its
        # files from other host users), and crun resolves the rootfs as the
        # container's unprivileged root, which must not need to cross it.
        # (Bind mounts are private to this process's mount namespace.)
        snap = os.path.join(root, "crun-rootfs")
        run("btrfs", "subvolume", "snapshot", tpl, snap)
        crootfs = os.path.join(tmp, "crun-rootfs")
        os.mkdir(crootfs)
        run("mount", "--bind", snap, crootfs)
        bound.append(crootfs)
        bundle = os.path.join(tmp, "bundle")
        crun_bundle(bundle, crootfs)
        cg_bundle = os.path.join(tmp, "bundle-cg")
        crun_bundle(cg_bundle, crootfs, cgroups=True)
        crun = ["crun", "--root", crun_root, "--cgroup-manager=disabled"]
        crun_cg = ["crun", "--root", crun_root, "--cgroup-manager=cgroupfs"]

        J("create", "starter", *LIMITS, "--template", "base", "--", "/bin/true")
        J("create", "sleeper", *LIMITS, "--template", "base", "--", "/bin/sleep", "100000")
        J("start", "sleeper")
        started.append("sleeper")
        # A long-running crun container for exec.
        sleeper_bundle = os.path.join(tmp, "sleeper-bundle")
        shutil.copytree(bundle, sleeper_bundle, symlinks=True, ignore=shutil.ignore_patterns("rootfs"))
        with open(os.path.join(sleeper_bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"]["args"] = ["/bin/sleep", "100000"]
        with open(os.path.join(sleeper_bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        # The detached container inherits crun's stdio: give it none, or
        # waiting for crun's output would wait for the container.
        # Its errors go to a file, which is shown if it fails.
        with tempfile.TemporaryFile() as err:
            r = subprocess.run([*crun, "run", "--detach", "--bundle", sleeper_bundle, "crun-sleeper"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            if r.returncode != 0:
                err.seek(0)
                sys.exit(f"crun run --detach failed: {err.read().decode(errors='replace')}")

        ops = {
            "run_rm": lambda i: (jailer, "--root", root, "run", "--rm", f"r{i}", *LIMITS,
                                 "--template", "base", "--", "/bin/true"),
            "start_wait": lambda i: (jailer, "--root", root, "start", "--wait", "starter"),
            "exec": lambda i: (jailer, "--root", root, "exec", "sleeper", "--", "/bin/true"),
            "crun_run": lambda i: (*crun, "run", "--bundle", bundle, f"c{i}"),
            "crun_cg_run": lambda i: (*crun_cg, "run", "--bundle", cg_bundle, f"g{i}"),
            "crun_exec": lambda i: (*crun, "exec", "crun-sleeper", "/bin/true"),
            "unshare": lambda i: ("unshare", "--mount", "--pid", "--fork", "--uts", "--ipc",
                                  "--net", "--user", "--map-root-user", "chroot", crootfs,
                                  "/bin/true"),
        }
        res = {k: [] for k in ops}
        for i in range(a.runs):
            for k, cmd in ops.items():
                time.sleep(a.pause)
                res[k].append(timed(*cmd(i)))
        med = {k: statistics.median(v) * 1000 for k, v in res.items()}
        print(f"runs: {a.runs}; pause {a.pause} s; kernel {os.uname().release}; "
              f"crun {subprocess.run(['crun', '--version'], capture_output=True, text=True).stdout.split()[2]}")
        print()
        print("| what | median (ms) |")
        print("|---|---:|")
        for k, label in [("run_rm", "`jailer run --rm` /bin/true (create, start, wait, rm)"),
                         ("start_wait", "`jailer start --wait` /bin/true (start-to-exit)"),
                         ("crun_run", "`crun run` /bin/true (start-to-exit, no cgroups)"),
                         ("crun_cg_run", "`crun run` /bin/true, cgroupfs with the same limits"),
                         ("unshare", "`unshare` + `chroot` /bin/true"),
                         ("exec", "`jailer exec` /bin/true"),
                         ("crun_exec", "`crun exec` /bin/true")]:
            print(f"| {label} | {med[k]:.1f} |")
        print()
        print(f"start-to-exit, jailer / crun run: {med['start_wait'] / med['crun_run']:.2f}x (target <= 1.0x)")
        print(f"create-run-remove, jailer run --rm / crun run: {med['run_rm'] / med['crun_run']:.2f}x (target < 2x)")
        print(f"start-to-exit, jailer / crun run with the same cgroups: "
              f"{med['start_wait'] / med['crun_cg_run']:.2f}x")
        print(f"create-run-remove, jailer run --rm / crun run with the same cgroups: "
              f"{med['run_rm'] / med['crun_cg_run']:.2f}x")
        print(f"exec, jailer / crun: {med['exec'] / med['crun_exec']:.2f}x")
    finally:
        subprocess.run(["crun", "--root", crun_root, "kill", "crun-sleeper", "KILL"],
                       stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        subprocess.run(["crun", "--root", crun_root, "delete", "-f", "crun-sleeper"],
                       stderr=subprocess.DEVNULL)
        for n in started:
            subprocess.run([jailer, "--root", root, "rm", "--force", n],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for m in bound:
            subprocess.run(["umount", m], stderr=subprocess.DEVNULL)
        release_pool(root, image, tmp)


if __name__ == "__main__":
    main()
