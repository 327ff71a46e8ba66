#!/usr/bin/env bash
# The cost of Prometheus metrics on the dht hot path (docs/benchmarks.md, "Metrics on the hot
# path"): two dht nodes in one run, the same build and config except that one serves /metrics
# ([metrics] listen on loopback) and is scraped every --scrape-s seconds during its runs (15 times
# Prometheus's default rate at 1 s); the other has no listener. Each run starts both nodes afresh
# (so what differs between two processes — the hash layout, where the allocator put the tables —
# falls on both sides over the runs, not always on one) and prefills them with the same keys; then
# put and get, pipeline depth 16, 50 connections, 100-byte values, alternating which node goes
# first. Prints the median ops/s and p99 of each of the --repeat runs and the ratio.
#
# --same-process isolates what a scrape costs from what differs between two processes: one node
# per run, with the listener, whose runs alternate between scraped every --scrape-s ("on") and
# not scraped ("off").
#
# --compare OLD NEW compares two dhtnode binaries the same way (before and after a change): the
# "off" node runs OLD, the "on" node NEW, neither has a listener and nothing is scraped.
#
#   scripts/bench-metrics.sh [--seconds S] [--repeat R] [--keyspace K] [--scrape-s X] [--rt]
#                            [--same-process | --compare OLD NEW] [--out DIR]
#
# Servers on core 0, loadgen on core 1 (taskset), as scripts/bench-vs-redis.sh. Uses only
# 127.0.0.1, bounds every run with `timeout`, and kills what it started on exit.
set -euo pipefail

seconds=5
repeat=5
keyspace=1000000
scrape_s=1
rt=0
same_process=0
compare_old=""
compare_new=""
out=""
connections=50
value_size=100

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/bench-common.sh
source "$root/scripts/lib/bench-common.sh"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) need_value "$1" $#; seconds="$2"; shift 2 ;;
        --repeat) need_value "$1" $#; repeat="$2"; shift 2 ;;
        --keyspace) need_value "$1" $#; keyspace="$2"; shift 2 ;;
        --scrape-s) need_value "$1" $#; scrape_s="$2"; shift 2 ;;
        --rt) rt=1; shift ;;
        --same-process) same_process=1; shift ;;
        --compare)
            [ $# -ge 3 ] || { echo "--compare needs two dhtnode binaries" >&2; usage; }
            compare_old="$2"; compare_new="$3"; shift 3 ;;
        --out) need_value "$1" $#; out="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
done
positive_numbers "$seconds" "$repeat" "$keyspace" "$scrape_s"
if [ -n "$compare_old" ]; then
    [ "$same_process" = 0 ] || { echo "--compare and --same-process exclude each other" >&2; exit 2; }
    for bin in "$compare_old" "$compare_new"; do
        [ -x "$bin" ] || { echo "--compare: $bin is not an executable file" >&2; exit 2; }
    done
fi
for tool in taskset timeout ss jq curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (server on 0, load on 1)" >&2; exit 1; }

log "building (release)"
(cd "$root" && timeout 1800 cargo build --release -q -p dhtnode -p benches)
dhtnode="$root/target/release/dhtnode"
loadgen="$root/target/release/loadgen"
bench_sched
bench_workdir bench-metrics
{
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); git: $(cd "$root" && git rev-parse --short HEAD)"
    echo "- CPU: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores"
    echo "- uptime at start: $(uptime)"
} | tee "$out/machine.md" >&2

# node_bin NAME: the dhtnode binary node NAME runs.
node_bin() {
    if [ -z "$compare_old" ]; then echo "$dhtnode"
    elif [ "$1" = off ]; then echo "$compare_old"
    else echo "$compare_new"; fi
}

# start_node NAME RUN [metrics]: sets <NAME>_pid, <NAME>_port and, with metrics, metrics_addr.
start_node() {
    local name="$1" dir="$tmp/$1-$2" port pid
    port="$(free_port)"
    mkdir -p "$dir"
    if [ "${3:-}" = metrics ]; then
        printf '[metrics]\nlisten = "127.0.0.1:0"\n' > "$dir/config.toml"
    else
        : > "$dir/config.toml"
    fi
    (cd "$dir" && exec "${server_run[@]}" "$(node_bin "$name")" -c config.toml --listen "127.0.0.1:$port") &
    pid=$!
    started_pids+=("$pid")
    wait_listening "$port" "$pid"
    printf -v "${name}_pid" '%s' "$pid"
    printf -v "${name}_port" '%s' "$port"
    if [ "${3:-}" = metrics ]; then
        metrics_addr="$(grep -o 'metrics served at http://[^/]*' "$dir/log/root.log" | sed 's|.*http://||')"
        [ -n "$metrics_addr" ] || { echo "no metrics address in $dir/log/root.log" >&2; exit 1; }
    fi
}

# scrape_while PID: scrapes /metrics every $scrape_s s until PID exits; counts scrapes.
scrape_while() {
    while kill -0 "$1" 2>/dev/null; do
        curl -sf -o /dev/null "http://$metrics_addr/metrics" && echo >> "$tmp/scrapes"
        sleep "$scrape_s"
    done
}

# run NAME PORT PID OP RUN: appends "ops_per_s p99_us" to $out/NAME-OP.runs.
run() {
    local name="$1" port="$2" pid="$3" op="$4" file="$out/$1-$4-$5" gen scraper=""
    timeout $((seconds * 4 + 120)) "${client_run[@]}" "$loadgen" --kind dht \
        --addr "127.0.0.1:$port" -c "$connections" -P 16 -d "$value_size" \
        --keys "uniform:$keyspace" --ops "$op" --warmup-s 0.5 --duration-s "$seconds" \
        --server-pid "$pid" --json "$file.json" > "$file.txt" 2>&1 &
    gen=$!
    if [ "$name" = on ] && [ -z "$compare_old" ]; then
        scrape_while "$gen" &
        scraper=$!
    fi
    wait "$gen" || { echo "loadgen failed:" >&2; cat "$file.txt" >&2; exit 1; }
    [ -z "$scraper" ] || wait "$scraper"
    jq -r '"\(.ops_per_s|round) \(.latency_us.p99|round)"' "$file.json" >> "$out/$name-$op.runs"
}

# prefill NAME RUN: the same keys and values into node NAME.
prefill() {
    local port_var="${1}_port"
    log "run $2: prefilling node '$1' with $keyspace keys"
    timeout 900 "${client_run[@]}" "$loadgen" --kind dht --addr "127.0.0.1:${!port_var}" \
        -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 \
        > "$out/prefill-$1-$2.txt"
}

: > "$tmp/scrapes"
rm -f "$out"/off-*.runs "$out"/on-*.runs
for r in $(seq "$repeat"); do
    if [ -n "$compare_old" ]; then start_node on "$r"; else start_node on "$r" metrics; fi
    prefill on "$r"
    if [ "$same_process" = 1 ]; then
        off_pid="$on_pid"
        off_port="$on_port"
    else
        start_node off "$r"
        prefill off "$r"
    fi
    order=$([ $((r % 2)) -eq 1 ] && echo "off on" || echo "on off")
    for op in put get; do
        for name in $order; do
            log "P=16 $op, run $r of $repeat: metrics $name"
            port_var="${name}_port"; pid_var="${name}_pid"
            run "$name" "${!port_var}" "${!pid_var}" "$op" "$r"
        done
    done
    stop_pid "$on_pid"
    [ "$same_process" = 1 ] || stop_pid "$off_pid"
    rm -rf "$tmp/off-$r" "$tmp/on-$r"
done
[ -n "$compare_old" ] || [ -s "$tmp/scrapes" ] || { echo "no scrape succeeded" >&2; exit 1; }

{
    echo
    if [ -n "$compare_old" ]; then
        echo "| dht P=16, 50 conns, 100 B | $compare_old: ops/s (p99 µs) | $compare_new: ops/s (p99 µs) | new / old | spread old; new |"
    else
        echo "| dht P=16, 50 conns, 100 B | metrics off: ops/s (p99 µs) | metrics on, scraped every ${scrape_s} s: ops/s (p99 µs) | on / off | spread off; on |"
    fi
    echo "|---|---|---|---|---|"
    for op in put get; do
        off="$(median "$out/off-$op")"; on="$(median "$out/on-$op")"
        # shellcheck disable=SC2086
        set -- $off $on
        awk -v op="$op" -v o="$1" -v op99="$2" -v n="$3" -v np99="$4" \
            -v so="$(spread "$out/off-$op")" -v sn="$(spread "$out/on-$op")" \
            'BEGIN { printf "| %s | %d (%d) | %d (%d) | %.3f | %s; %s |\n", op, o, op99, n, np99, n / o, so, sn }'
    done
    echo
    if [ -n "$compare_old" ]; then
        echo "Median of $repeat runs of ${seconds} s each; nothing scraped."
    else
        echo "Median of $repeat runs of ${seconds} s each; $(wc -l < "$tmp/scrapes") scrapes of the metrics node during its runs."
    fi
} | tee "$out/table.md"
