#!/usr/bin/env bash
# ProdNG's own Debian package, end to end on this machine (as root):
# builds it with `dpkg-buildpackage -b` from a copy of the source, installs
# it with `dpkg -i`, checks `jailer --version`, the files and their modes,
# the osquery autoload line, the units (`systemd-analyze verify`, enabled
# for boot, not started), that `jailer init --attach-only` (the boot unit's
# command) neither makes a pool nor loses one, and then purges it and checks
# that a pool, its template and its jail made with the installed jailer are
# untouched. Host lane only: the VM guest has no dpkg.
#
# Without root or dpkg-buildpackage it skips with the reason (a failure
# under CI=true). It installs its build tools (debhelper, fakeroot) itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

skip() {
    if [ "${CI:-}" = true ]; then
        echo "FAILED: packaging test cannot run under CI: $*" >&2
        exit 1
    fi
    echo "SKIPPED: packaging test: $*"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (dpkg -i)"
if dpkg-query -W -f='${Status}' jailer 2>/dev/null | grep -q "install ok installed"; then
    skip "a jailer package is installed on this machine already; it is not replaced by a test"
fi
need=(debhelper fakeroot dpkg-dev systemd man-db)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /var/tmp/jailer-pkg-test.XXXXXX)
pool=$work/pool
dev_jailer=$repo/target/debug/jailer
installed=false
tpl_installed=false
cleanup() {
    set +e
    if $tpl_installed; then
        "$dev_jailer" --root "$pool" rm pkg-j3 >/dev/null 2>&1
        JAILER_ROOT=$pool dpkg --purge jailer-template-pkg-run >/dev/null 2>&1
    fi
    if $installed; then dpkg --purge jailer >/dev/null 2>&1; fi
    if mountpoint -q "$pool" 2>/dev/null; then
        "$dev_jailer" --root "$pool" rm --force pkg-j >/dev/null 2>&1
        umount "$pool"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

echo "== dpkg-buildpackage -b (a copy of the source: only what git tracks)"
mkdir -p "$work/src"
git ls-files -z --cached --others --exclude-standard | tar -C "$repo" --null -T - -cf - | tar -C "$work/src" -xf -
(
    cd "$work/src"
    # The release build is kept between runs, apart from the debug one.
    CARGO_TARGET_DIR=$repo/target/deb dpkg-buildpackage -b -us -uc -d >"$work/build.log" 2>&1
) || { tail -40 "$work/build.log"; fail "dpkg-buildpackage"; }
deb=$(ls "$work"/jailer_*.deb)
echo "built $(basename "$deb")"

echo "== the package's metadata and files"
dpkg-deb -f "$deb" Depends | grep -q "btrfs-progs" || fail "Depends lacks btrfs-progs: $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -f "$deb" Recommends | grep -q "debootstrap" || fail "Recommends lacks debootstrap"

echo "== dpkg -i"
dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i"; }
installed=true
version=$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)
out=$(/usr/bin/jailer --version)
[ "$out" = "jailer ${version%-*}" ] || fail "jailer --version says '$out', the package is $version"

mode_owner() { stat -c '%a %U:%G' "$1"; }
check_file() { # path mode
    [ -e "$1" ] || fail "$1 is not installed"
    [ "$(mode_owner "$1")" = "$2 root:root" ] || fail "$1 is $(mode_owner "$1"), want $2 root:root"
}
check_file /usr/bin/jailer 755
# osqueryd autoloads only an extension that is root-owned and not group- or
# world-writable.
check_file /usr/lib/osquery/extensions/jailer.ext 755
[ "$(readlink -f /usr/bin/jailer-extension)" = /usr/lib/osquery/extensions/jailer.ext ] || fail "jailer-extension link"
grep -qxF /usr/lib/osquery/extensions/jailer.ext /etc/osquery/extensions.load || fail "no autoload line in extensions.load"
check_file /lib/systemd/system/jailer-pool.service 644
check_file /lib/systemd/system/jailer-autostart.service 644
check_file /etc/default/jailer 644
for page in jailer jailer-start jailer-stop jailer-init jailer-create; do
    check_file "/usr/share/man/man1/$page.1.gz" 644
done
zcat /usr/share/man/man1/jailer-start.1.gz | grep -q -- "autostart" || fail "jailer-start(1) does not mention --autostart"
check_file /usr/share/bash-completion/completions/jailer 644
check_file /usr/share/zsh/vendor-completions/_jailer 644
check_file /usr/share/fish/vendor_completions.d/jailer.fish 644
bash -c 'source /usr/share/bash-completion/completions/jailer && complete -p jailer' >/dev/null || fail "bash completion does not load"
# dh_compress gzips the larger documents.
check_file "$(ls /usr/share/doc/jailer/README.md*)" 644
check_file "$(ls /usr/share/doc/jailer/network.md* /usr/share/doc/jailer/osquery.md* 2>/dev/null | head -1)" 644
/usr/bin/jailer-extension --help >/dev/null || fail "jailer-extension --help"

echo "== the units"
systemd-analyze verify /lib/systemd/system/jailer-pool.service /lib/systemd/system/jailer-autostart.service \
    >"$work/verify.log" 2>&1 || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
# Lines about other units on this machine are not ours to judge.
if grep -i "jailer" "$work/verify.log"; then fail "systemd-analyze verify warns about the units"; fi
for u in jailer-pool jailer-autostart; do
    [ -L "/etc/systemd/system/multi-user.target.wants/$u.service" ] || fail "$u.service is not enabled for boot"
done

echo "== jailer init --attach-only (the boot unit's command) never makes a pool"
mkdir -p "$pool"
out=$(/usr/bin/jailer --root "$pool" init --attach-only)
echo "$out" | grep -q "nothing to attach" || fail "init --attach-only on no pool said: $out"
[ ! -e "$pool.img" ] || fail "init --attach-only made an image"

echo "== a pool, a template and a jail made with the installed jailer"
/usr/bin/jailer --root "$pool" init --size 512M >/dev/null
mkdir -p "$work/tree/etc" "$work/tree/bin"
echo pkg > "$work/tree/etc/hostname"
/usr/bin/jailer --root "$pool" template import pkg-t "$work/tree" -- /bin/true >/dev/null
/usr/bin/jailer --root "$pool" create pkg-j --template pkg-t --autostart >/dev/null
/usr/bin/jailer --root "$pool" --json inspect pkg-j | grep -q '"autostart": true' || fail "--autostart not in the spec"
# Re-attached after an unmount, as at boot.
umount "$pool"
out=$(/usr/bin/jailer --root "$pool" init --attach-only)
echo "$out" | grep -q "re-attached" || fail "init --attach-only after unmount said: $out"

echo "== a template package: jailer template pack, dpkg -i, a jail runs from it, dpkg -r"
# A template that can run /bin/true: the binary and the libraries it loads.
rt=$work/runnable
mkdir -p "$rt/bin" "$rt/etc"
cp -L /bin/true "$rt/bin/true"
for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$rt$(dirname "$lib")"
    cp -L "$lib" "$rt$lib"
done
/usr/bin/jailer --root "$pool" template import pkg-run "$rt" -- /bin/true >/dev/null
/usr/bin/jailer --root "$pool" template pack pkg-run -o "$work/tpl.deb" >/dev/null
/usr/bin/jailer --root "$pool" template rm pkg-run >/dev/null
JAILER_ROOT=$pool dpkg -i "$work/tpl.deb" >"$work/tpl-install.log" 2>&1 || { cat "$work/tpl-install.log"; fail "dpkg -i of the template package"; }
tpl_installed=true
/usr/bin/jailer --root "$pool" template ls | grep -q "^pkg-run " || fail "the template package's postinst did not import pkg-run"
out=$(/usr/bin/jailer --root "$pool" run --rm pkg-j2 --template pkg-run 2>&1) || fail "a jail of the packaged template: $out"
# Removal is refused while a jail uses the template, and the package stays.
/usr/bin/jailer --root "$pool" create pkg-j3 --template pkg-run >/dev/null
if JAILER_ROOT=$pool dpkg -r jailer-template-pkg-run >"$work/tpl-rm.log" 2>&1; then
    fail "dpkg -r of a template in use succeeded"
fi
grep -q "used by jail(s) pkg-j3" "$work/tpl-rm.log" || { cat "$work/tpl-rm.log"; fail "dpkg -r of a template in use does not say why"; }
dpkg-query -W -f='${Status}' jailer-template-pkg-run | grep -q "install ok installed" || fail "the template package is not installed after a refused removal"
/usr/bin/jailer --root "$pool" rm pkg-j3 >/dev/null
JAILER_ROOT=$pool dpkg -r jailer-template-pkg-run >"$work/tpl-rm.log" 2>&1 || { cat "$work/tpl-rm.log"; fail "dpkg -r of an unused template"; }
tpl_installed=false
if /usr/bin/jailer --root "$pool" template ls | grep -q "^pkg-run "; then fail "dpkg -r left template pkg-run"; fi

echo "== dpkg --purge leaves pools, templates and jails"
dpkg --purge jailer >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
installed=false
[ ! -e /usr/bin/jailer ] || fail "/usr/bin/jailer left after purge"
[ ! -e /lib/systemd/system/jailer-pool.service ] || fail "unit left after purge"
[ ! -e /etc/default/jailer ] || fail "/etc/default/jailer left after purge"
if grep -qsxF /usr/lib/osquery/extensions/jailer.ext /etc/osquery/extensions.load; then
    fail "autoload line left after purge"
fi
mountpoint -q "$pool" || fail "the pool was unmounted by the purge"
"$dev_jailer" --root "$pool" template ls | grep -q pkg-t || fail "template gone after purge"
"$dev_jailer" --root "$pool" ls | grep -q pkg-j || fail "jail gone after purge"
echo "packaging: ok"
