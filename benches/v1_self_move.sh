#!/usr/bin/env bash
# Benchmark: what moving a fresh process into its cgroup costs on a cgroup v1
# host whose kernel is in its default mode, two ways (jailer/examples/
# cgroup_move_probe.rs, 21 rounds 100 ms apart, 5 hierarchies):
#   outside  the parent writes the pid to each cgroup.procs: the kernel takes
#            its global cgroup_threadgroup_rwsem and waits for an RCU grace
#            period (what runtimes do, and jailer did)
#   self     the process writes 0 to each tasks file: the kernel skips that
#            lock (what jailer's init and exec helper do, cgroup::SelfEntry)
# It runs in a qemu guest on Debian 12's own kernel (6.1), because a host
# kernel that ever had a hierarchy mounted with favordynmods stays in that
# mode until reboot, and then neither way waits. TCG inflates the CPU work
# (the `self` column) but not the grace period, which is wall-clock time.
#
#   benches/v1_self_move.sh
#
# Needs root and the VM lane's cache (qemu, the kernel): run
# tests/vm/run.sh once first. Prints the probe's lines.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${JAILER_VM_CACHE:-tests/vm/.cache}
if [ ! -e "$cache/qemu/.complete" ] || [ ! -e "$cache/kernel/.complete" ] || [ ! -e "$cache/busybox/.complete" ]; then
    echo "v1_self_move: no qemu, kernel or busybox in $cache: run tests/vm/run.sh once first" >&2
    exit 1
fi
cache=$(cd "$cache" && pwd -P)
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --quiet --locked --release --target "$target" -p jailer --example cgroup_move_probe
probe=target/$target/release/examples/cgroup_move_probe
qemu_dir=$cache/qemu
kver=$(ls "$cache/kernel/lib/modules")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/stage/dev" "$tmp/stage/proc" "$tmp/stage/sys"
cp "$probe" "$tmp/stage/init"
mknod "$tmp/stage/dev/console" c 5 1
(cd "$tmp/stage" && find . | "$cache/busybox/bin/busybox" cpio -o -H newc 2> /dev/null) > "$tmp/initrd.cpio"
timeout -k 10 300 env LD_LIBRARY_PATH="$qemu_dir/usr/lib/x86_64-linux-gnu:$qemu_dir/lib/x86_64-linux-gnu" \
    QEMU_MODULE_DIR="$qemu_dir/usr/lib/x86_64-linux-gnu/qemu" "$qemu_dir/usr/bin/qemu-system-x86_64" \
    -L "$qemu_dir/usr/share/qemu" -L "$qemu_dir/usr/share/seabios" \
    -machine pc,accel=tcg -cpu max -smp 2 -m 512M \
    -nographic -no-reboot -monitor none -vga none -nic none -serial stdio \
    -kernel "$cache/kernel/boot/vmlinuz-$kver" -initrd "$tmp/initrd.cpio" \
    -append "console=ttyS0 rdinit=/init panic=1 mitigations=off quiet" < /dev/null |
    tr -d "\r" | grep -a "^probe:"
