"""What the benchmarks share: the build of what ships, and the release of a
scratch pool (a loop-mounted btrfs image in a temp dir) by exact name."""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(*packages):
    """Builds `packages` as debian/rules does (release, static glibc, an
    explicit target so that proc-macros stay dynamic) and returns the
    directory of the binaries. The benchmarks measure what ships."""
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True,
                          check=True).stdout
    triple = next(l.split()[1] for l in host.splitlines() if l.startswith("host:"))
    cmd = ["cargo", "build", "--release", "--locked", "--quiet", "--target", triple]
    for p in packages:
        cmd += ["-p", p]
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static")
    if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed")
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target_dir, triple, "release")


def release_pool(root, image, tmp):
    """Unmounts the pool at `root`, detaches the loop device backed by exactly
    `image` (autoclear should have released it on unmount) and removes
    `tmp`."""
    subprocess.run(["umount", root], stderr=subprocess.DEVNULL)
    for dev in os.listdir("/sys/block"):
        bf = f"/sys/block/{dev}/loop/backing_file"
        if os.path.exists(bf) and open(bf).read().strip() == image:
            subprocess.run(["losetup", "-d", f"/dev/{dev}"])
    shutil.rmtree(tmp, ignore_errors=True)
