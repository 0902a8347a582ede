"""What the benchmarks share: the release build's path and the release of a
scratch pool (a loop-mounted btrfs image in a temp dir) by exact name."""
import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAILER = os.path.join(REPO, "target", "release", "jailer")


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
