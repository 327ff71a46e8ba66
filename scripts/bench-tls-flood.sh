#!/usr/bin/env bash
# What a flood of TLS handshakes costs a dht node's established clients: for each value of
# `server.tls_handshakes_per_pass` in PER_PASS (alternating, so that the machine's load hits each
# alike), start a dht node with TLS, and run `tls_flood` against it: one established TLS client
# sends requests back to back while FLOOD new TLS connections are opened at once, ROUNDS times.
# Prints the established client's worst, p99 and median request latency during the floods, and
# the handshakes per second, and the node's CPU time per handshake, with the load average of the
# machine.
#
# usage: scripts/bench-tls-flood.sh [FLOOD] [ROUNDS]   (defaults: 500, 5)
#
# Environment: PER_PASS="1000000 16 1000000 16" (the runs, in order; 1000000 is no bound at all,
# what the node did before the setting existed), BIN_DIR=DIR (take `dhtnode` and `tls_flood`
# from DIR instead of building them). The node runs on CPU 0 and the flood on CPU 1 when the
# machine has two CPUs or more.
#
# Needs openssl. Loopback only; cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
flood=${1:-500}
rounds=${2:-5}
per_pass_runs=${PER_PASS:-1000000 16 1000000 16}
command -v openssl >/dev/null || { echo "needs openssl" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh
release_bins "${BIN_DIR:-}" -p dhtnode -p benches --bin dhtnode --bin tls_flood
scratch_dir bench-tls-flood
certs="$work/certs"
make_tls_certs "$certs"
node_cpu=() flood_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    node_cpu=(taskset -c 0) flood_cpu=(taskset -c 1)
fi

run=0
for per_pass in $per_pass_runs; do
    run=$((run + 1))
    dir="$work/run$run"
    config=$(printf '[server]\nmax_connections = %d\ntls_handshakes_per_pass = %d\n[dht]\ndurability = "none"\n[tls]\ncert_file = "%s"\nkey_file = "%s"' \
        $((flood + 100)) "$per_pass" "$certs/node.pem" "$certs/node-key.pem")
    launch_node "$dir" "$config" "${dht_node_env[@]}" "${node_cpu[@]}" "$bin/dhtnode" || exit 1
    addr=$node_addr
    echo "== tls_handshakes_per_pass = $per_pass, flood $flood x $rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    ticks_before=$(cpu_ticks "$node_pid")
    # The established client in a process of its own, measuring while the floods run.
    touch "$dir/flooding"
    "${flood_cpu[@]}" "$bin/tls_flood" --addr "$addr" --tls-ca "$certs/ca.pem" \
        --measure-while "$dir/flooding" &
    measure_pid=$!
    sleep 0.3
    "${flood_cpu[@]}" "$bin/tls_flood" --addr "$addr" --tls-ca "$certs/ca.pem" \
        --flood "$flood" --rounds "$rounds" | grep -v '^established client'
    rm "$dir/flooding"
    wait "$measure_pid"
    ticks=$(( $(cpu_ticks "$node_pid") - ticks_before ))
    hz=$(getconf CLK_TCK)
    awk -v t="$ticks" -v hz="$hz" -v n=$((flood * rounds)) 'BEGIN {
        printf "node CPU during the floods: %.2f s, %.2f ms per handshake (the established client'"'"'s requests included)\n", t / hz, 1000 * t / hz / n }'
    stop_node TERM
done
