#!/usr/bin/env bash
# Side-by-side benchmark of our nodes against redis-server (DESIGN.md §6), on loopback.
#
#   scripts/bench-vs-redis.sh [--full | --records N] [--seconds S] [--repeat R] [--rt]
#                             [--keyspace K] [--out DIR]
#
# Every server runs pinned to core 0 and every load generator to core 1 (`taskset`). Redis is
# driven by redis-benchmark, our dht node by benches' `loadgen`, with the same connections (50),
# pipeline depth (16 and 1), value size (100 bytes) and key space (uniform over K keys, default
# 1M; both stores are first filled with all K keys so gets hit and puts overwrite). As a
# cross-check the same `loadgen` also drives Redis (RESP, the same `key:%012d` keys), so each
# ratio can be read with the same generator on both sides.
#
# Memory: a fresh Redis gets N records via DEBUG POPULATE (N x 100-byte values; keys key:0..),
# a fresh dhtnode N records via `loadgen --prefill N`; the table compares the dht node's RSS with
# Redis's `used_memory` and RSS. The dht engine alone is measured in-process by `dht_memory`.
#
# Options:
#   --records N   records for the memory rows (default 1000000); --full = 10000000
#   --seconds S   length of each throughput run (default 5)
#   --repeat R    runs per throughput cell; the table shows the median by ops/s (default 1)
#   --rt          run servers and generators SCHED_FIFO (chrt -f 10), for a machine that other
#                 work shares: it keeps other processes from delaying their wake-ups. Applied
#                 to Redis and to our node alike. The kernel's RT throttling (95%) still gives
#                 other processes 50 ms per second, which shows up in max latency, not p99.
#   --keyspace K  keys of the throughput runs (default 1000000)
#   --out DIR     keep raw results (JSON, CSV) and table.md there (default: a temp directory)
#
# Installs redis-server/redis-tools (and jq) with apt-get when missing (needs root). Uses only
# 127.0.0.1, bounds every run with `timeout`, and kills what it started on exit.
set -euo pipefail

records=1000000
seconds=5
repeat=1
rt=0
keyspace=1000000
out=""
connections=50
value_size=100

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --full) records=10000000 ;;
        --records) records="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        --repeat) repeat="$2"; shift ;;
        --rt) rt=1 ;;
        --keyspace) keyspace="$2"; shift ;;
        --out) out="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
for n in "$records" "$seconds" "$repeat" "$keyspace"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $n" >&2; exit 2; }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf '== %s\n' "$*" >&2; }

# ---- tools -----------------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
    log "installing ${missing[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in taskset timeout ss awk; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (server on 0, load on 1)" >&2; exit 1; }

log "building release binaries"
timeout 1800 cargo build --release -q -p dhtnode -p benches
dhtnode="$root/target/release/dhtnode"
loadgen="$root/target/release/loadgen"
dht_memory="$root/target/release/dht_memory"

# ---- processes -------------------------------------------------------------------------------
tmp="$(mktemp -d /tmp/bench-vs-redis.XXXXXX)"
keep_tmp=0
if [ -z "$out" ]; then out="$tmp/results"; keep_tmp=1; fi
mkdir -p "$out"
started_pids=()
cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # Server data goes; the results stay (in $tmp/results when no --out was given).
    if [ "$keep_tmp" -eq 1 ]; then rm -rf "$tmp/redis" "$tmp/dht"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

server_run=(taskset -c 0)
client_run=(taskset -c 1)
if [ "$rt" -eq 1 ]; then
    server_run=(chrt -f 10 taskset -c 0)
    client_run=(chrt -f 10 taskset -c 1)
fi

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htln "( sport = :$port )")" ]; then echo "$port"; return; fi
    done
}

# Waits until something listens on 127.0.0.1:$1 (10 s at most).
wait_listening() {
    local i
    for i in $(seq 100); do
        [ -n "$(ss -Htln "( sport = :$1 )")" ] && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1 after 10 s" >&2
    return 1
}

stop() {
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Sets redis_pid and redis_port.
start_redis() {
    redis_port="$(free_port)"
    rm -rf "$tmp/redis"; mkdir -p "$tmp/redis"
    "${server_run[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
        --appendonly no --enable-debug-command local --dir "$tmp/redis" \
        --logfile "$tmp/redis/redis.log" --daemonize no &
    redis_pid=$!
    started_pids+=("$redis_pid")
    wait_listening "$redis_port"
}

# Sets dht_pid and dht_port. The node is killed with SIGKILL at the end, so it writes no
# shutdown dump of the benchmark data.
start_dht() {
    dht_port="$(free_port)"
    rm -rf "$tmp/dht"; mkdir -p "$tmp/dht/data" "$tmp/dht/log"
    "${server_run[@]}" "$dhtnode" --listen "127.0.0.1:$dht_port" --data-dir "$tmp/dht/data" \
        --log-dir "$tmp/dht/log" &
    dht_pid=$!
    started_pids+=("$dht_pid")
    wait_listening "$dht_port"
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_bytes() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
clk_tck="$(getconf CLK_TCK)"

# ---- throughput runs -------------------------------------------------------------------------
# Each run appends one line "ops_per_s p99_us generator_cpu_share server_cpu_share" to $1.

run_redis_benchmark() { # file test P
    local file="$1" test="$2" p="$3" n rate before after cpu wall
    rate=$([ "$p" -gt 1 ] && echo 700000 || echo 150000)
    n=$((seconds * rate))
    before="$(cpu_ticks "$redis_pid")"
    local TIMEFORMAT='%R %U %S'
    { time timeout $((seconds * 10 + 60)) "${client_run[@]}" redis-benchmark -h 127.0.0.1 \
        -p "$redis_port" -t "$test" -c "$connections" -P "$p" -d "$value_size" -r "$keyspace" \
        -n "$n" --csv > "$file.csv"; } 2> "$file.time"
    after="$(cpu_ticks "$redis_pid")"
    read -r wall user sys < <(tail -1 "$file.time")
    awk -F'","' -v wall="$wall" -v user="$user" -v sys="$sys" -v srv=$((after - before)) \
        -v hz="$clk_tck" 'NR == 2 {
            gsub(/"/, "", $0); split($0, f, ",");
            printf "%.0f %.0f %.2f %.2f\n", f[2], f[7] * 1000, (user + sys) / wall, srv / hz / wall
        }' "$file.csv" >> "$1.runs"
}

run_loadgen() { # file kind port pid op P
    local file="$1" kind="$2" port="$3" pid="$4" op="$5" p="$6" status=0
    timeout $((seconds * 4 + 120)) "${client_run[@]}" "$loadgen" --kind "$kind" \
        --addr "127.0.0.1:$port" -c "$connections" -P "$p" -d "$value_size" \
        --keys "uniform:$keyspace" --ops "$op" --warmup-s 0.5 --duration-s "$seconds" \
        --server-pid "$pid" --json "$file.json" > "$file.txt" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "loadgen failed ($status):" >&2; cat "$file.txt" >&2; return 1
    fi
    jq -r '"\(.ops_per_s|round) \(.latency_us.p99) \(.loadgen_cpu.utilisation*100|round/100) \(.server.utilisation*100|round/100)"' \
        "$file.json" >> "$1.runs"
}

# The median run by ops/s: "ops_per_s p99_us generator_cpu server_cpu".
median() {
    sort -n -k1,1 "$1.runs" | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }'
}

# "min–max" of ops/s over the runs.
spread() {
    sort -n -k1,1 "$1.runs" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%d–%d", lo, hi }'
}

machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores ($(lscpu | awk -F: '/^Hypervisor vendor/ {gsub(/^ +/, "", $2); print $2 " guest"}'))"
    echo "- kernel: $(uname -r); memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "- redis-server: $(redis-server --version | awk '{print $3}' | sed 's/v=//')"
    echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- scheduling: $([ "$rt" -eq 1 ] && echo 'SCHED_FIFO (--rt)' || echo 'normal'); servers on core 0, generators on core 1"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

info_file="$out/machine.md"
machine_info > "$info_file"
cat "$info_file" >&2

log "throughput: starting redis-server and dhtnode"
start_redis
start_dht
log "prefilling both with $keyspace keys"
timeout 900 "${client_run[@]}" "$loadgen" --kind redis --addr "127.0.0.1:$redis_port" \
    -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 > "$out/prefill-redis.txt"
timeout 900 "${client_run[@]}" "$loadgen" --kind dht --addr "127.0.0.1:$dht_port" \
    -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 > "$out/prefill-dht.txt"

rows=()
spreads=()
for p in 16 1; do
    for op in put get; do
        test=$([ "$op" = put ] && echo set || echo get)
        cell="$out/p$p-$op"
        rm -f "$cell".*.runs
        for r in $(seq "$repeat"); do
            # Alternate the order, so that drift on a shared machine does not favour one side.
            if [ $((r % 2)) -eq 1 ]; then
                log "P=$p $op: run $r of $repeat (redis-benchmark, loadgen on Redis, loadgen on dhtnode)"
                run_redis_benchmark "$cell.rb" "$test" "$p"
                run_loadgen "$cell.lgredis" redis "$redis_port" "$redis_pid" "$op" "$p"
                run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" "$op" "$p"
            else
                log "P=$p $op: run $r of $repeat (loadgen on dhtnode, loadgen on Redis, redis-benchmark)"
                run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" "$op" "$p"
                run_loadgen "$cell.lgredis" redis "$redis_port" "$redis_pid" "$op" "$p"
                run_redis_benchmark "$cell.rb" "$test" "$p"
            fi
        done
        rows+=("$p $op $(median "$cell.rb") $(median "$cell.lgredis") $(median "$cell.ours")")
        spreads+=("$(spread "$cell.rb") / $(spread "$cell.lgredis") / $(spread "$cell.ours")")
    done
done
stop "$redis_pid"
stop "$dht_pid"

# ---- memory ----------------------------------------------------------------------------------
log "memory: $records records of $value_size bytes"
start_redis
redis_used_before="$(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/ {print $2+0}')"
redis_rss_before="$(rss_bytes "$redis_pid")"
timeout 900 redis-cli -p "$redis_port" debug populate "$records" key "$value_size" > /dev/null
redis_keys="$(redis-cli -p "$redis_port" dbsize)"
redis_used="$(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/ {print $2+0}')"
redis_rss="$(rss_bytes "$redis_pid")"
stop "$redis_pid"
[ "$redis_keys" -eq "$records" ] || { echo "Redis holds $redis_keys keys, not $records" >&2; exit 1; }

start_dht
dht_rss_before="$(rss_bytes "$dht_pid")"
timeout 1800 "${client_run[@]}" "$loadgen" --kind dht --addr "127.0.0.1:$dht_port" \
    -c "$connections" -d "$value_size" --prefill "$records" --count 0 --json "$out/fill-dht.json" \
    > "$out/fill-dht.txt"
sleep 1
dht_rss="$(rss_bytes "$dht_pid")"
stop "$dht_pid"

timeout 1800 "$dht_memory" --records "$records" --value-size "$value_size" \
    --json "$out/dht-memory.json" > "$out/dht-memory.txt"
engine_rss_per="$(jq '.rss_per_record' "$out/dht-memory.json")"
engine_heap_per="$(jq '.heap_per_record' "$out/dht-memory.json")"

# ---- the table -------------------------------------------------------------------------------
table="$out/table.md"
{
    echo "| operation | Redis ops/s (redis-benchmark) | ours ops/s | ratio | target | Redis p99 µs | our p99 µs | p99 ≤ Redis | Redis ops/s via loadgen (p99 µs) | ratio, same generator |"
    echo "|---|---:|---:|---:|---:|---:|---:|:-:|---:|---:|"
    for row in "${rows[@]}"; do
        # p op | rb: ops p99 gen srv | lgredis: ops p99 gen srv | ours: ops p99 gen srv
        read -r p op rb_ops rb_p99 _ _ lr_ops lr_p99 _ _ ours_ops ours_p99 _ _ <<< "$row"
        target=$([ "$p" -gt 1 ] && echo 1.5 || echo 1.2)
        mode=$([ "$p" -gt 1 ] && echo "pipelined P=$p" || echo "unpipelined P=1")
        awk -v p="$p" -v op="$op" -v mode="$mode" -v t="$target" -v c="$connections" \
            -v rb="$rb_ops" -v rbp="$rb_p99" -v lr="$lr_ops" -v lrp="$lr_p99" \
            -v o="$ours_ops" -v op99="$ours_p99" 'BEGIN {
            name = (op == "put") ? "dht put vs SET" : "dht get vs GET";
            r = o / rb; r2 = o / lr;
            printf "| %s, %s, %d conns | %d | %d | **%.2f×** %s | ≥ %s× | %d | %d | %s | %d (%d) | %.2f× |\n",
                name, mode, c, rb, o, r, (r >= t ? "✓" : "✗"), t, rbp, op99,
                (op99 <= rbp ? "✓" : "✗"), lr, lrp, r2
        }'
    done
    awk -v n="$records" -v ru="$redis_used" -v rr="$redis_rss" -v rub="$redis_used_before" \
        -v rrb="$redis_rss_before" -v dr="$dht_rss" -v drb="$dht_rss_before" \
        -v er="$engine_rss_per" -v eh="$engine_heap_per" 'BEGIN {
        printf "| dht memory, %d × 100-byte records: bytes/record | used_memory %.1f, RSS %.1f | RSS %.1f | **%.3f×** RSS/RSS %s, %.3f× RSS/used_memory %s | ≤ 0.8× | | | | (net of empty process: Redis used %.1f, RSS %.1f; ours RSS %.1f; engine alone in-process: RSS %.1f, heap %.1f) | |\n",
            n, ru / n, rr / n, dr / n, dr / rr, (dr / rr <= 0.8 ? "✓" : "✗"), dr / ru, (dr / ru <= 0.8 ? "✓" : "✗"),
            (ru - rub) / n, (rr - rrb) / n, (dr - drb) / n, er, eh
    }'
    echo "| logfiles put vs XADD (pipelined) | | see scripts/bench-logfiles.sh | | ≥ 1.5× | | | | | |"
    echo "| queue push/pop vs LPUSH/RPOP (pipelined) | | n/a (node not built yet) | | ≥ 1.5× | | | | | |"
} > "$table"

{
    echo
    echo "### Where the CPU went (median runs; share of one core over the run) and the spread of the runs"
    echo
    echo "| run | redis-benchmark CPU | Redis CPU | loadgen CPU (on Redis) | Redis CPU | loadgen CPU (on ours) | dhtnode CPU | ops/s min–max: redis-benchmark / loadgen on Redis / ours |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for i in "${!rows[@]}"; do
        read -r p op _ _ rb_gen rb_srv _ _ lr_gen lr_srv _ _ o_gen o_srv <<< "${rows[$i]}"
        echo "| P=$p $op | $rb_gen | $rb_srv | $lr_gen | $lr_srv | $o_gen | $o_srv | ${spreads[$i]} |"
    done
} > "$out/cpu.md"

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$info_file"
echo
cat "$info_file"
echo
echo "Command: scripts/bench-vs-redis.sh $([ "$records" -eq 10000000 ] && echo --full || echo "--records $records") --seconds $seconds --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt') --keyspace $keyspace"
echo
cat "$table"
cat "$out/cpu.md"
echo
echo "Notes: logfiles and queue rows wait for those nodes (no request codes yet). Ratios use the"
echo "median run of $repeat; the 'same generator' ratio divides ours by Redis driven by our loadgen."
echo "Raw results: $out"
