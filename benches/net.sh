#!/usr/bin/env bash
# Benchmark: what a static macvlan network adds to a jail's start, against
# the same namespace + macvlan setup done by hand with `ip` commands.
#
#   benches/net.sh POOL_ROOT TEMPLATE [ROUNDS]
#
# In one run, ROUNDS (default 30) times each, interleaved:
#   none     `jailer start --wait` of a `--net none` jail running /bin/true
#   macvlan  the same jail with --net macvlan,parent=P,ip=...,gateway=...
#   by hand  ip netns add; ip link add ... netns (macvlan on P); ip -n: link
#            set name eth0, addr add, link set up, route add default; ip
#            netns del: the steps jailer does in-process over rtnetlink
#   + del    the same, with `ip -n link del eth0` before the netns goes: the
#            kernel's synchronous unregister of the link, which jailer's
#            monitor does at the end of every instance (so that nothing is
#            left on the parent once stop returns)
# and the start alone (until the command runs, the teardown left out):
#   start none / start macvlan   `jailer start` (no --wait: it returns once
#            the command is exec'd) of a jail running sleep, stopped untimed
#   setup by hand   the hand-made sequence up to the route, its netns
#            deleted untimed
# and prints the medians in ms and the ratios: macvlan/none, and what the
# network adds to jailer's start (macvlan - none) over the hand-made
# sequence, start-to-exit and start alone. Everything runs on a LAN of its own (network namespaces and a
# veth pair, deleted on exit), with jailer entered into the "host"
# namespace only (`nsenter --net`); the real host's network is not touched.
# Needs root, a pool made by `jailer init` holding TEMPLATE (with /bin/true),
# and iproute2. Builds jailer --release.
set -euo pipefail
cd "$(dirname "$0")/.."
pool=${1:?usage: benches/net.sh POOL_ROOT TEMPLATE [ROUNDS]}
template=${2:?usage: benches/net.sh POOL_ROOT TEMPLATE [ROUNDS]}
rounds=${3:-30}
cargo build --quiet --release -p jailer
jailer=$PWD/target/release/jailer
tag=$$
host=jnb-$tag-h
router=jnb-$tag-r
parent=jnb${tag}p
peer=jnb${tag}r
cleanup() {
    nsenter --net=/run/netns/$host "$jailer" --root "$pool" rm --force jnb-none jnb-mv jnb-snone jnb-smv > /dev/null 2>&1 || true
    ip netns del jnb-$tag-x 2> /dev/null || true
    ip netns del "$host" 2> /dev/null || true
    ip netns del "$router" 2> /dev/null || true
}
trap cleanup EXIT
ip netns add "$host"
ip netns add "$router"
ip -n "$host" link add "$parent" type veth peer name "$peer" netns "$router"
ip -n "$host" link set "$parent" up
ip -n "$router" link set "$peer" up
ip -n "$router" addr add 10.99.0.1/24 dev "$peer"
j() { nsenter --net=/run/netns/$host "$jailer" --root "$pool" "$@"; }
j create jnb-none --template "$template" --net none -- /bin/true > /dev/null
j create jnb-mv --template "$template" \
    --net "macvlan,parent=$parent,ip=10.99.0.10/24,gateway=10.99.0.1" -- /bin/true > /dev/null
j create jnb-snone --template "$template" --net none -- /bin/sleep 1000 > /dev/null
j create jnb-smv --template "$template" \
    --net "macvlan,parent=$parent,ip=10.99.0.12/24,gateway=10.99.0.1" -- /bin/sleep 1000 > /dev/null
# One of each first: caches warm.
j start --wait jnb-none > /dev/null
j start --wait jnb-mv > /dev/null
now() { date +%s%N; }
by_hand() {
    local ns=jnb-$tag-x
    ip netns add $ns
    nsenter --net=/run/netns/$host ip link add name jnbtmp0 link "$parent" netns $ns type macvlan mode bridge
    ip -n $ns link set jnbtmp0 name eth0
    ip -n $ns addr add 10.99.0.11/24 dev eth0
    ip -n $ns link set eth0 up
    ip -n $ns route add default via 10.99.0.1
    if [ "${1:-}" = del ]; then ip -n $ns link del eth0; fi
    if [ "${1:-}" != setup ]; then ip netns del $ns; fi
}
: > /tmp/jnb-$tag.none
: > /tmp/jnb-$tag.mv
: > /tmp/jnb-$tag.hand
: > /tmp/jnb-$tag.del
: > /tmp/jnb-$tag.snone
: > /tmp/jnb-$tag.smv
: > /tmp/jnb-$tag.shand
for _ in $(seq "$rounds"); do
    t=$(now); j start --wait jnb-none > /dev/null; echo $(( $(now) - t )) >> /tmp/jnb-$tag.none
    t=$(now); j start --wait jnb-mv > /dev/null; echo $(( $(now) - t )) >> /tmp/jnb-$tag.mv
    t=$(now); by_hand; echo $(( $(now) - t )) >> /tmp/jnb-$tag.hand
    t=$(now); by_hand del; echo $(( $(now) - t )) >> /tmp/jnb-$tag.del
    t=$(now); j start jnb-snone > /dev/null; echo $(( $(now) - t )) >> /tmp/jnb-$tag.snone
    j stop -t 0 jnb-snone > /dev/null
    t=$(now); j start jnb-smv > /dev/null; echo $(( $(now) - t )) >> /tmp/jnb-$tag.smv
    j stop -t 0 jnb-smv > /dev/null
    t=$(now); by_hand setup; echo $(( $(now) - t )) >> /tmp/jnb-$tag.shand
    ip netns del jnb-$tag-x
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2) / 1e6}'; }
none=$(median /tmp/jnb-$tag.none)
mv=$(median /tmp/jnb-$tag.mv)
hand=$(median /tmp/jnb-$tag.hand)
del=$(median /tmp/jnb-$tag.del)
snone=$(median /tmp/jnb-$tag.snone)
smv=$(median /tmp/jnb-$tag.smv)
shand=$(median /tmp/jnb-$tag.shand)
rm -f /tmp/jnb-$tag.none /tmp/jnb-$tag.mv /tmp/jnb-$tag.hand /tmp/jnb-$tag.del \
    /tmp/jnb-$tag.snone /tmp/jnb-$tag.smv /tmp/jnb-$tag.shand
awk -v n="$none" -v m="$mv" -v h="$hand" -v d="$del" -v r="$rounds" \
    -v sn="$snone" -v sm="$smv" -v sh="$shand" 'BEGIN {
    printf "rounds %d, medians: none %.2f ms, macvlan %.2f ms, by hand with ip %.2f ms, by hand + link del %.2f ms\n", r, n, m, h, d
    printf "macvlan/none %.2fx; network added (macvlan - none) %.2f ms = %.2fx the hand-made ip sequence, %.2fx with its link del\n", m / n, m - n, (m - n) / h, (m - n) / d
    printf "start alone: none %.2f ms, macvlan %.2f ms, setup by hand %.2f ms; network added %.2f ms = %.2fx the hand-made setup\n", sn, sm, sh, sm - sn, (sm - sn) / sh
}'
