#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine, as root:
# installs the system packages it needs, checks formatting and lints, then runs
# the unit tests, the privileged integration tests (a real btrfs pool on a
# loop device, real debootstrap) and the osquery protocol tests, and last the
# VM lane: the privileged tests again in a qemu guest on Debian 12's kernel,
# with cgroup v2 and then with v1 (tests/vm/run.sh). Under CI=true a skipped
# test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=(btrfs-progs debootstrap zstd libcap2-bin e2fsprogs util-linux tar python3 python3-venv
    iproute2 dnsmasq-base)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build"
# `cargo test` builds a package's binaries only for that package's own
# integration tests: the privileged tests run `jailer query`, which runs the
# jailer-extension binary next to jailer, so build it first.
cargo build --workspace --locked
echo "== cargo test"
# Privileged tests share one scratch pool and a few loop devices; they run
# with two threads at most.
cargo test --workspace --locked -- --test-threads=2
echo "== osquery extension protocol tests (Thrift, against a Python stand-in core)"
tests/osquery/run.sh
echo "== Debian package: dpkg-buildpackage -b, dpkg -i, checks, dpkg --purge (tests/packaging/run.sh)"
tests/packaging/run.sh
for layout in v2 v1; do
    echo "== VM lane: Debian 12's kernel 6.1 with cgroup $layout (JAILER_VM_CGROUP=$layout tests/vm/run.sh)"
    if [ "$(id -u)" != 0 ] && [ "${CI:-}" != true ]; then
        echo "SKIPPED: the VM lane needs root (debootstrap, mknod); run tests/vm/run.sh as root"
    else
        JAILER_VM_CGROUP=$layout tests/vm/run.sh
    fi
done
