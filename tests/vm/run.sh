#!/usr/bin/env bash
# The VM lane: the privileged integration tests (jailer's `privileged` test
# binary) and the tables' real-kernel test (`real_proc`, the jail_resources
# rows) inside a qemu guest (TCG: KVM cannot boot here) that runs Debian 12's
# own kernel (linux-image-amd64, 6.1) with the unified cgroup v2 hierarchy at
# /sys/fs/cgroup and cpu, memory, pids and io enabled in the root's
# cgroup.subtree_control, or with JAILER_VM_CGROUP=v1 the v1 hierarchies of
# a hybrid host (one per controller, an empty cgroup2 at unified/) on a
# kernel in its default mode. The host lane (tests/run.sh) covers this
# machine's kernel with cgroup v1; docs/testing.md says what each covers.
#
#   tests/vm/run.sh [ARGS..]   ARGS go to the privileged test binary
#                              (a name filter, --skip NAME, --exact, ...)
#
# Exits with the tests' own status (the first non-zero one), 1 if the guest
# never reported one. Needs root (debootstrap, mknod) and apt's mirrors.
#
# - qemu, the kernel and busybox-static are fetched with `apt-get download`
#   and unpacked with `dpkg -x` into the cache, never installed (installing
#   qemu-system-x86 would replace the machine's qemu-utils).
# - The initramfs is busybox-static, the host's own tools the tests run
#   (btrfs-progs, util-linux, e2fsprogs, tar, zstd, iproute2, getcap, find,
#   dash as /bin/sh) with their libraries, and the kernel modules for btrfs,
#   loop, ext4, dummy/macvlan and virtio/9p; init is tests/vm/init.sh.
# - The test binaries (and jailer, jailer-extension) are built static
#   (+crt-static, explicit target); the repository (and the cache and target
#   dir if outside it) is shared over 9p at the same paths, so the jailer
#   path baked into the test binary works. The guest copies the binaries to
#   its RAM and binds them over their 9p directory (an exec from 9p costs
#   about a second under TCG), and writes the output and exit status to the
#   share: qemu itself always exits 0.
# - The shared debootstrap template is NOT made by debootstrap in the guest:
#   a minbase tree made once on the host (cached) is imported through
#   JAILER_TEST_ROOTFS, so `cli::debootstrap_makes_a_debian_template` checks
#   an imported tree here. The host lane runs the real debootstrap. The tree
#   reaches the guest as a read-only ext4 image (mkfs.ext4 -d, cached) mounted
#   at the tree's own path: 5 times faster to import than over 9p.
# - /tmp in the guest is a sparse raw virtio disk, ext4 formatted by the host,
#   not a tmpfs: the scratch pool is an 8 GiB sparse image and a tmpfs would
#   keep all that the tests write in the guest's RAM, beside the page cache.
#   It lives outside the work tree (JAILER_VM_TMPDIR, default /var/tmp) and
#   is removed when the lane ends.
#
# Environment: JAILER_VM_CGROUP (v2 or v1, default v2), JAILER_VM_CACHE
# (default tests/vm/.cache), JAILER_VM_TIMEOUT
# (seconds, default 1800), JAILER_VM_MEM (default 4G), JAILER_VM_SMP
# (default 2), JAILER_VM_TMPDIR (default /var/tmp). CI, RUST_BACKTRACE and
# JAILER_LOG are passed to the guest.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd -P)
vm=$repo/tests/vm
cache=${JAILER_VM_CACHE:-$vm/.cache}
timeout_s=${JAILER_VM_TIMEOUT:-1800}
mem=${JAILER_VM_MEM:-4G}
smp=${JAILER_VM_SMP:-2}
cgroup=${JAILER_VM_CGROUP:-v2}
target=x86_64-unknown-linux-gnu
mirror=http://deb.debian.org/debian
t0=$(date +%s)
step() { echo "== vm lane: $* ($(($(date +%s) - t0)) s)"; }
fail() {
    echo "vm lane: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, mknod, loop devices in the guest)"
case $cgroup in v1 | v2) ;; *) fail "JAILER_VM_CGROUP must be v1 or v2, not $cgroup" ;; esac
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)
exec 9> "$cache/lock"
flock -n 9 || fail "another tests/vm/run.sh uses $cache"

# -- Host packages: the tools copied into the guest, debootstrap, and the
#    tools this script uses. Installed like tests/run.sh does.
host_pkgs=(btrfs-progs debootstrap zstd libcap2-bin e2fsprogs util-linux tar
    findutils iproute2 dash coreutils dnsmasq-base)
missing=()
for p in "${host_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_updated=
apt_update() {
    [ -n "$apt_updated" ] && return
    apt-get update -qq
    apt_updated=1
}
if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# -- Debian packages, unpacked without installing. `deps PKG..` prints PKG
#    and, breadth first, every package they depend on that this machine has
#    not installed (no virtual packages), except those named in deps_skip.
installed() { dpkg-query -W -f='${Status}' "$1" 2> /dev/null | grep -q "ok installed"; }
deps() {
    local -A seen=()
    local level=("$@") out=() next p
    for p in "${deps_skip[@]}"; do seen[$p]=1; done
    while ((${#level[@]})); do
        next=()
        for p in "${level[@]}"; do
            [ -n "${seen[$p]:-}" ] && continue
            seen[$p]=1
            installed "$p" && continue
            out+=("$p")
            next+=("$p")
        done
        ((${#next[@]})) || break
        mapfile -t level < <(apt-cache depends --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "${next[@]}" 2> /dev/null |
            awk '$1 == "Depends:" && $2 !~ /^</ {print $2}' | sort -u)
    done
    printf '%s\n' "${out[@]}"
}
# unpack DIR PKG..: downloads PKG.. and unpacks them all into DIR (once).
unpack() {
    local dir=$1
    shift
    [ -e "$dir/.complete" ] && return
    apt_update
    rm -rf "$dir" "$dir.debs"
    mkdir -p "$dir.debs"
    (cd "$dir.debs" && apt-get download -q "$@" > /dev/null 2>&1) ||
        (cd "$dir.debs" && apt-get download "$@") || fail "apt-get download $* failed"
    for d in "$dir.debs"/*.deb; do dpkg -x "$d" "$dir"; done
    ls "$dir.debs" > "$dir/.packages"
    rm -rf "$dir.debs"
    touch "$dir/.complete"
}

if [ ! -e "$cache/qemu/.complete" ]; then
    step "fetching qemu-system-x86 and its libraries"
    apt_update
    # qemu-system-common holds the TCG accelerator module; its dependencies
    # serve the display, audio and USB modules, unused with -nographic, as
    # is ipxe-qemu (network boot ROMs) with -nic none.
    deps_skip=(qemu-system-common ipxe-qemu)
    mapfile -t qemu_pkgs < <(deps qemu-system-x86)
    unpack "$cache/qemu" "${qemu_pkgs[@]}" qemu-system-common
fi
if [ ! -e "$cache/kernel/.complete" ]; then
    step "fetching linux-image-amd64"
    apt_update
    kpkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
    [ -n "$kpkg" ] || fail "cannot resolve linux-image-amd64"
    unpack "$cache/kernel" "$kpkg"
fi
if [ ! -e "$cache/busybox/.complete" ]; then
    step "fetching busybox-static"
    unpack "$cache/busybox" busybox-static
fi
qemu_dir=$cache/qemu
qemu_lib=$qemu_dir/usr/lib/x86_64-linux-gnu:$qemu_dir/lib/x86_64-linux-gnu
qemu=$qemu_dir/usr/bin/qemu-system-x86_64
qemu_modules=$qemu_dir/usr/lib/x86_64-linux-gnu/qemu
if LD_LIBRARY_PATH=$qemu_lib ldd "$qemu" "$qemu_modules/accel-tcg-x86_64.so" | grep "not found"; then
    fail "qemu-system-x86_64 misses libraries (delete $cache/qemu to fetch again)"
fi
busybox=$cache/busybox/bin/busybox
kver=$(ls "$cache/kernel/lib/modules")
kernel=$cache/kernel/boot/vmlinuz-$kver

# -- The template's source: a debootstrap minbase tree, made once.
rootfs=$cache/rootfs
if [ ! -e "$rootfs/etc/debian_version" ]; then
    step "debootstrap --variant=minbase bookworm (once, cached)"
    rm -rf "$rootfs.partial"
    debootstrap --variant=minbase bookworm "$rootfs.partial" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
        fail "debootstrap failed, see $cache/debootstrap.log"
    rm -rf "$rootfs" "$rootfs.ext4"
    mv "$rootfs.partial" "$rootfs"
fi
if [ ! -e "$rootfs.ext4" ]; then
    step "making the template's ext4 image (once, cached)"
    size_mb=$(($(du -sm "$rootfs" | cut -f1) * 3 / 2 + 64))
    mkfs.ext4 -q -F -L jailer-rootfs -d "$rootfs" "$rootfs.ext4.partial" "${size_mb}M" ||
        fail "mkfs.ext4 -d $rootfs failed"
    mv "$rootfs.ext4.partial" "$rootfs.ext4"
fi

# -- Static binaries. Building the privileged test builds the jailer binary
#    with the same flags (its path is baked in as CARGO_BIN_EXE_jailer);
#    `jailer query` runs the jailer-extension beside it, which no test build
#    makes.
step "building static binaries"
export RUSTFLAGS='-C target-feature=+crt-static'
cargo build --locked --target "$target" -p jailer-extension
build_test() {
    cargo test --locked --target "$target" --no-run --message-format=json-render-diagnostics "$@" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'
}
privileged=$(build_test -p jailer --test privileged | grep '/deps/privileged-')
real_proc=$(build_test -p jailer-tables --test real_proc | grep '/deps/real_proc-')
# The probe escape_disk copies into a jail (examples/ beside deps/).
cargo build --locked --target "$target" -p jailer --example subvol_probe
unset RUSTFLAGS
bindir=$(dirname "$(dirname "$privileged")")
for b in "$privileged" "$real_proc" "$bindir/jailer" "$bindir/jailer-extension" "$bindir/examples/subvol_probe"; do
    [ -x "$b" ] || fail "no $b after the build"
    ldd "$b" 2>&1 | grep -Eq "statically linked|not a dynamic executable" || fail "$b is not static"
done

# -- The initramfs.
step "making the initramfs (kernel $kver)"
run=$cache/run
rm -rf "$run"
mkdir -p "$run"
disk_dir=$(mktemp -d "${JAILER_VM_TMPDIR:-/var/tmp}/jailer-vm-XXXXXX")
trap 'rm -rf "$disk_dir"' EXIT
stage=$disk_dir/stage
mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc/vm,lib/vm-modules,bb,dev,proc,sys,tmp}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$stage/$d"; done
# put PATH: the host's file at the same path in the stage; a symbolic link
# is kept as a link, and its target put too.
put() {
    local p=$1 t
    while :; do
        cp -P --parents "$p" "$stage/" 2> /dev/null || [ -e "$stage$p" ] || fail "cannot copy $p"
        [ -L "$p" ] || break
        t=$(readlink "$p")
        case $t in /*) p=$t ;; *) p=$(dirname "$p")/$t ;; esac
    done
}
tools=(sh mkfs.btrfs btrfs losetup mount umount blkid unshare setpriv nsenter
    mkfs.ext4 mke2fs tar zstd ip bridge getcap setcap find xargs dnsmasq)
for tool in "${tools[@]}"; do
    path=$(command -v "$tool") || fail "$tool is not installed on the host"
    put "$path"
    while read -r lib; do put "$lib"; done < <(ldd "$(readlink -f "$path")" 2> /dev/null | grep -o '/[^ ]*')
done
[ -e /etc/mke2fs.conf ] && put /etc/mke2fs.conf
cp "$busybox" "$stage/usr/bin/busybox"
for a in $("$busybox" --list); do ln -s /bin/busybox "$stage/bb/$a"; done
cp "$vm/init.sh" "$stage/init"
chmod 755 "$stage/init"
mknod "$stage/dev/console" c 5 1
mknod "$stage/dev/null" c 1 3
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$stage/etc/group"

# Kernel modules: the wanted ones in this order (the order found to work),
# each after the modules it depends on (from the .ko's modinfo), built-in
# ones skipped. af_alg: a socket family the jails' filter refuses, which
# the guest's kernel must have for the test to tell the filter from a
# kernel without it.
mods=(crc32c_generic xxhash_generic blake2b_generic zstd_compress raid6_pq xor libcrc32c btrfs
    dummy macvlan veth ipvlan
    virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci virtio_blk
    9pnet 9pnet_virtio netfs fscache 9p
    loop crc16 mbcache jbd2 ext4
    af_alg)
moddir=$cache/kernel/lib/modules/$kver
declare -A ko_of=() loaded=()
while read -r f; do
    n=$(basename "$f" .ko)
    ko_of[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko')
load() {
    local m=${1//-/_} f d
    [ -n "${loaded[$m]:-}" ] && return
    loaded[$m]=1
    if [ -z "${ko_of[$m]:-}" ]; then
        grep -q "/${m}.ko$\|/${m//_/-}.ko$" "$moddir/modules.builtin" && return
        fail "kernel $kver has no module $m"
    fi
    f=${ko_of[$m]}
    for d in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do load "$d"; done
    cp "$f" "$stage/lib/vm-modules/"
    case $m in loop) echo "$(basename "$f") max_loop=16" ;; *) basename "$f" ;; esac >> "$stage/etc/vm/modules"
}
for m in "${mods[@]}"; do load "$m"; done

# 9p shares, mounted in the guest at the host's paths: the work tree (and
# the cache and target dir if outside it) read-only, the results writable.
results=$run/results
mkdir -p "$results"
shares=("$repo")
for d in "$cache" "$bindir"; do
    case $d/ in "$repo"/*) ;; *) shares+=("$d") ;; esac
done
modes=()
for i in "${!shares[@]}"; do modes+=(ro); done
shares+=("$results")
modes+=(rw)
for i in "${!shares[@]}"; do echo "host$i ${modes[$i]} ${shares[$i]}"; done > "$stage/etc/vm/shares"
echo "$results" > "$stage/etc/vm/results"
(cd "$stage" && find . | "$busybox" cpio -o -H newc 2> /dev/null) > "$disk_dir/initrd.cpio"
rm -rf "$stage"

# -- What the guest runs: env is sourced by init.sh.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
    echo "workdir=$(q "$repo/jailer")"
    echo "cgroup=$cgroup"
    echo "export HOME=/root"
    echo "export CARGO_MANIFEST_DIR=$(q "$repo/jailer")"
    echo "export JAILER_TEST_ROOTFS=$(q "$rootfs")"
    # The guest's kernel has ipvlan (loaded above): its tests must run.
    echo "export JAILER_TEST_NEED_IPVLAN=1"
    echo "rootfs=$(q "$rootfs")"
    echo "bindir=$(q "$bindir")"
    printf 'localize='
    q "jailer jailer-extension examples/subvol_probe deps/$(basename "$privileged") deps/$(basename "$real_proc")"
    echo
    for v in CI RUST_BACKTRACE JAILER_LOG; do
        [ -n "${!v+x}" ] && echo "export $v=$(q "${!v}")"
    done
    echo "run_tests() {"
    echo "    cd $(q "$repo/tables") && run_one $(q "$real_proc")"
    printf '    cd %s && run_one %s' "$(q "$repo/jailer")" "$(q "$privileged")"
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    echo
    echo "}"
} > "$results/env"
: > "$results/test.log"

# /tmp of the guest: a sparse raw disk, ext4 without lazy inode table
# zeroing in the guest (mounted noinit_itable), made fresh for every run.
truncate -s 16G "$disk_dir/tmp.img"
mkfs.ext4 -q -F -i 65536 -E lazy_itable_init=1,lazy_journal_init=1 "$disk_dir/tmp.img"

# -- Boot. Serial console to a file; the tests' output is streamed from the
#    share as the guest writes it.
qemu_version=$(LD_LIBRARY_PATH=$qemu_lib "$qemu" --version | head -1)
step "booting $(basename "$kernel") with cgroup $cgroup under $qemu_version (TCG, $smp cpus, $mem; timeout ${timeout_s}s)"
virtfs=()
for i in "${!shares[@]}"; do
    ro=
    [ "${modes[$i]}" = ro ] && ro=,readonly=on
    virtfs+=(-virtfs "local,path=${shares[$i]},mount_tag=host$i,security_model=none,multidevs=remap$ro")
done
t_boot=$(date +%s)
# mitigations=off: page-table isolation and friends cost a lot under TCG.
timeout -k 10 "$timeout_s" env LD_LIBRARY_PATH="$qemu_lib" QEMU_MODULE_DIR="$qemu_modules" "$qemu" \
    -L "$qemu_dir/usr/share/qemu" -L "$qemu_dir/usr/share/seabios" \
    -machine pc,accel=tcg -cpu max -smp "$smp" -m "$mem" \
    -nographic -no-reboot -monitor none -vga none -nic none \
    -serial "file:$run/console.log" \
    -kernel "$kernel" -initrd "$disk_dir/initrd.cpio" \
    -append "console=ttyS0 rdinit=/init panic=1 mitigations=off quiet" \
    -drive "file=$disk_dir/tmp.img,format=raw,if=virtio,cache=unsafe,discard=unmap" \
    -drive "file=$rootfs.ext4,format=raw,if=virtio,readonly=on" \
    "${virtfs[@]}" < /dev/null &
qemu_pid=$!
tail -n +1 -f --pid="$qemu_pid" "$results/test.log" &
tail_pid=$!
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
wait "$tail_pid" || true
rm -rf "$disk_dir"
# Only libtest's own lines on stdout at the end: they close the output.
echo "vm lane: console log $run/console.log, per-line times $results/times.log" >&2
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    tail -n 30 "$run/console.log" >&2 || true
    fail "the guest did not finish within ${timeout_s}s (JAILER_VM_TIMEOUT)"
fi
if [ -s "$results/setup-error" ]; then
    tail -n 30 "$run/console.log" >&2 || true
    fail "guest setup failed: $(cat "$results/setup-error")"
fi
if [ ! -s "$results/status" ]; then
    tail -n 30 "$run/console.log" >&2 || true
    fail "the guest reported no status (qemu exited $qemu_rc)"
fi
status=$(cat "$results/status")
step "guest ran $(($(date +%s) - t_boot)) s; tests exited $status" >&2
exit "$status"
