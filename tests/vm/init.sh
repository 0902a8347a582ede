#!/bin/busybox sh
# PID 1 of the VM lane's guest (tests/vm/run.sh builds the initramfs around
# it). Stage 1 moves the initramfs onto a tmpfs (pivot_root(2), which every
# jail start uses, refuses the initial rootfs); stage 2 mounts what the tests
# need, runs the test binaries the host listed and writes their exit status
# to the results share. Whatever happens, it powers the guest off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bb
bb=/bin/busybox

if [ ! -e /.stage2 ]; then
    $bb mkdir -p /newroot
    $bb mount -t tmpfs -o mode=0755 root /newroot
    for e in /* /.[!.]*; do
        case $e in /newroot | /proc | /sys | /dev | '/.[!.]*') ;; *) $bb cp -a "$e" /newroot/ ;; esac
    done
    $bb mkdir -p /newroot/proc /newroot/sys /newroot/dev
    $bb touch /newroot/.stage2
    exec $bb switch_root /newroot /init
fi

say() { echo "vm-init: $*" > /dev/console; }
die() {
    say "error: $*"
    [ -n "${results:-}" ] && [ -d "$results" ] && echo "$*" >> "$results/setup-error"
    $bb sync
    $bb poweroff -f
}

# 1. Pseudo filesystems, devices.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /root /mnt
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=0755 run /run

# 2. Kernel modules, in the order the host resolved (dependencies first).
while read -r ko params; do
    [ -n "$ko" ] || continue
    # shellcheck disable=SC2086 # params are module parameters, one word each
    insmod "/lib/vm-modules/$ko" $params || die "insmod $ko failed"
done < /etc/vm/modules

# 3. /tmp on the first virtio disk (ext4, formatted by the host): the
#    scratch pool is an 8 GiB sparse image, more than RAM could hold. Mounted
#    before the shares, which may lie below /tmp on the host.
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o noinit_itable /dev/vda /tmp || die "cannot mount /dev/vda on /tmp"
chmod 1777 /tmp

# 4. The host's directories over 9p, at the paths they have on the host
#    (ro or rw, as the host exports them).
while read -r tag mode path; do
    [ -n "$tag" ] || continue
    mkdir -p "$path"
    mount -t 9p -o "$mode,trans=virtio,version=9p2000.L,msize=512000,access=any" "$tag" "$path" ||
        die "mount 9p $tag on $path failed"
done < /etc/vm/shares
results=$(cat /etc/vm/results)
[ -f "$results/env" ] || die "no $results/env from the host"
# shellcheck disable=SC1091 # written by run.sh for this boot
. "$results/env"
# The second disk is the template's tree, read-only, at its host path.
mount -t ext4 -o ro /dev/vdb "$rootfs" || die "cannot mount /dev/vdb on $rootfs"

# 5. The binaries under test, copied to RAM and bound over their directory
#    on the share (same paths): an exec from 9p costs about a second here.
mkdir -p /run/bin
for f in $localize; do
    mkdir -p "/run/bin/$(dirname "$f")"
    cp "$bindir/$f" "/run/bin/$f" || die "cannot copy $bindir/$f"
done
mount -o bind /run/bin "$bindir" || die "cannot bind /run/bin on $bindir"

# 6. Cgroups, in the layout the host asked for (cgroup=v2 or v1 in env).
#    v2: the unified hierarchy with cpu, memory, pids and io enabled for the
#    root's children; the test processes go to a leaf group, as on a systemd
#    host (a v2 root group has no memory.current of its own).
#    v1: one hierarchy per controller under a tmpfs, and an empty cgroup2 at
#    unified/, as on a hybrid host (and the host lane's machines).
if [ "${cgroup:-v2}" = v1 ]; then
    mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup || die "cannot mount a tmpfs on /sys/fs/cgroup"
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir -p "/sys/fs/cgroup/$c"
        mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || die "cannot mount the v1 $c hierarchy"
    done
    mkdir -p /sys/fs/cgroup/unified
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified || die "cannot mount cgroup2 on unified/"
    cgroups="v1: $(ls /sys/fs/cgroup | tr '\n' ' ')"
else
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || die "cannot mount cgroup2"
    echo "+cpu +memory +pids +io" > /sys/fs/cgroup/cgroup.subtree_control ||
        die "cannot enable cpu memory pids io in cgroup.subtree_control"
    mkdir -p /sys/fs/cgroup/lane
    echo $$ > /sys/fs/cgroup/lane/cgroup.procs || die "cannot move into /sys/fs/cgroup/lane"
    cgroups="v2, root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
fi

# 7. Loopback up (the host's ip: busybox's cannot make dummy or macvlan links).
/usr/sbin/ip link set lo up || die "ip link set lo up failed"

say "kernel $(uname -r), cgroup $cgroups"
say "memory $(awk '/MemTotal/ {print $2 $3}' /proc/meminfo), cpus $(nproc), /tmp $(df -h /tmp | awk 'NR==2 {print $2}')"

# 8. The tests, one binary after another (run_tests is defined in env). Each
#    output line goes to test.log (the host streams it), to times.log with
#    the guest's uptime in front, and to the console.
set -o pipefail
status=0
cd "$workdir" || die "no $workdir"
run_one() {
    say "running $*"
    "$@" 2>&1 | while IFS= read -r line || [ -n "$line" ]; do
        read -r up _ < /proc/uptime
        echo "$up $line" >> "$results/times.log"
        echo "$line" >> "$results/test.log"
        echo "$line" > /dev/console
    done
    rc=$?
    say "exit status $rc: $1"
    [ $status -ne 0 ] || status=$rc
}
run_tests

# 9. What the tests left in the cgroup tree (every jail's group should be
#    gone), status, kernel log, power off.
left=$(find /sys/fs/cgroup/jailer /sys/fs/cgroup/*/jailer -mindepth 1 -type d 2> /dev/null | tr '\n' ' ')
say "cgroups left under jailer/: ${left:-none}"
dmesg > "$results/dmesg.log" 2>&1
echo "$status" > "$results/status"
sync
say "done, status $status"
poweroff -f
