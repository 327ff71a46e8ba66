#!/usr/bin/env bash
# Instructions the dht node spends per request, with and without TLS, counted by valgrind's
# callgrind: a count that does not depend on what else the machine runs (unlike ops/s on a
# shared machine), for before/after comparisons of the request and TLS paths.
#
# usage: scripts/bench-tls-instructions.sh [OPS] [REQUESTS]   (defaults: get, 200000)
#
# Environment: DURABILITY=none|interval|always (the node's `dht.durability`, default none: with
# a change log the node's cost of logging each change is counted too), MODES="plain tls" (the
# runs to make, default both), KEEP_PROFILES=DIR (copy the callgrind dumps there, for
# `callgrind_annotate --threshold=100 DIR/plain.2`; default: deleted), BIN_DIR=DIR (take
# `dhtnode` and `loadgen` from DIR instead of building them: copies of earlier builds, so that
# two commits can be compared without rebuilding either), KEYS=K (the key space, default 10000),
# PREFILL=0 (leave it empty, so that most measured puts insert a key rather than overwrite
# one, as in the replication row of bench-vs-redis.sh, which is not prefilled), REPLICA=1 (a
# second node, native, as `loadgen --replica`: the measured node gets every put as a
# PutVersion, one member's share of a replicated put; issue 19).
# DEPTH=P: the pipeline depth of the measured runs (default 16; 1 for the unpipelined rows).
#
# For each of plain and TLS: start dhtnode under callgrind, put K (10 000) keys (100-byte values,
# 50 connections), zero the counters, run REQUESTS then 3 x REQUESTS OPS (`loadgen -c 50 -P DEPTH`,
# a fresh set of connections each), dumping the counters after each. The difference of the two
# dumps over 2 x REQUESTS is the node's instructions per request in the steady state: the
# connections' handshakes (TLS's key exchange above all) cancel out. The first dump over
# REQUESTS, with its 50 handshakes, is printed as well. Syscalls are not counted (callgrind
# sees user space only).
#
# Needs valgrind and openssl (Debian packages). Loopback only; cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ops=${1:-get}
requests=${2:-200000}
durability=${DURABILITY:-none}
modes=${MODES:-plain tls}
keep=${KEEP_PROFILES:-}
keys=${KEYS:-10000}
[[ "$keys" =~ ^[1-9][0-9]*$ ]] || { echo "KEYS must be a positive integer" >&2; exit 2; }
[[ "${REPLICA:-0}" =~ ^[01]$ ]] || { echo "REPLICA must be 0 or 1" >&2; exit 2; }
[[ "${PREFILL:-1}" =~ ^[01]$ ]] || { echo "PREFILL must be 0 or 1" >&2; exit 2; }
case "$durability" in none|interval|always) ;; *) echo "DURABILITY: none, interval or always" >&2; exit 2;; esac
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
command -v openssl >/dev/null || { echo "needs openssl" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh
release_bins "${BIN_DIR:-}" -p dhtnode -p benches --bin dhtnode --bin loadgen
scratch_dir bench-tls-instructions
certs="$work/certs"
make_tls_certs "$certs"
# A node under valgrind takes long to start.
listen_timeout_s=60

# measure plain|tls: prints "instructions per request: first run, steady state".
measure() {
    local mode=$1 dir="$work/$1" config="[dht]
durability = \"$durability\"" tls=()
    if [ "$mode" = tls ]; then
        config="$config
[tls]
cert_file = \"$certs/node.pem\"
key_file = \"$certs/node-key.pem\""
        tls=(--tls-ca "$certs/ca.pem")
    fi
    local replica=()
    replica_pid=""
    if [ "${REPLICA:-0}" = 1 ]; then
        launch_node "$dir/replica" "$config" "$bin/dhtnode" || exit 1
        replica_pid=$node_pid
        # The replica goes with the scratch directory, whatever ends the script.
        trap 'kill "$replica_pid" 2>/dev/null || true; scratch_cleanup' EXIT
        replica=(--replica "$node_addr")
    fi
    launch_node "$dir" "$config" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
        "$bin/dhtnode" || exit 1
    local addr=$node_addr
    local load=("$bin/loadgen" --kind dht --addr "$addr" "${tls[@]}" -c 50 -d 100 "${replica[@]}")
    if [ "${PREFILL:-1}" != 0 ]; then
        "${load[@]}" --prefill "$keys" --count 0 > "$dir/prefill.txt"
    fi
    callgrind_control -z "$node_pid" > /dev/null 2>&1
    "${load[@]}" -P "${DEPTH:-16}" --keys "uniform:$keys" --ops "$ops" --count "$requests" > "$dir/run1.txt"
    callgrind_control -d "$node_pid" > /dev/null 2>&1
    "${load[@]}" -P "${DEPTH:-16}" --keys "uniform:$keys" --ops "$ops" --count $((3 * requests)) > "$dir/run2.txt"
    callgrind_control -d "$node_pid" > /dev/null 2>&1
    stop_node TERM
    if [ -n "$replica_pid" ]; then
        kill "$replica_pid"
        wait "$replica_pid" 2>/dev/null || true
        replica_pid=""
    fi
    local first second
    first=$(callgrind_summary "$(ls "$dir"/cg.*.1)")
    second=$(callgrind_summary "$(ls "$dir"/cg.*.2)")
    if [ -n "$keep" ]; then
        mkdir -p "$keep"
        cp "$(ls "$dir"/cg.*.1)" "$keep/$mode.1"
        cp "$(ls "$dir"/cg.*.2)" "$keep/$mode.2"
    fi
    echo "$mode $ops$([ "${REPLICA:-0}" = 1 ] && echo ' as PutVersion (REPLICA=1)') (durability $durability, keys $keys$([ "${PREFILL:-1}" = 0 ] && echo ', not prefilled')): $((first / requests)) instructions per request over the first $requests" \
        "(50 handshakes included), $(((second - first) / (2 * requests))) in the steady state"
}

for mode in $modes; do
    measure "$mode"
done
