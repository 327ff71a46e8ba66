#!/usr/bin/env bash
# Side-by-side benchmark of our three nodes against redis-server (DESIGN.md §6), on loopback:
# one table with every row of issue 9.
#
#   scripts/bench-vs-redis.sh [--full | --records N] [--seconds S] [--repeat R] [--rt]
#                             [--keyspace K] [--queue-count N]
#                             [--only dht,dht-log,logfiles,queue]
#                             [--out DIR]
#
# Every server runs pinned to core 0 and every load generator to core 1 (`taskset`), with 50
# connections and 100-byte values.
#
# dht (put/get vs SET/GET, pipeline depth 16 and 1): Redis is driven by redis-benchmark, our dht
# node by benches' `loadgen`, with the same key space (uniform over K keys, default 1M; both
# stores are first filled with all K keys so gets hit and puts overwrite). As a cross-check the
# same `loadgen` also drives Redis (RESP, the same `key:%012d` keys), so each ratio can be read
# with the same generator on both sides.
# The dht node of these rows runs with `durability = "none"` (no change log), against Redis
# without persistence.
# dht-log (the change log, issue #18; put P=16 and P=1): dhtnode with `durability = "interval"`
# against Redis `appendonly yes, appendfsync everysec`, and `durability = "always"` against
# `appendfsync always`, a fresh pair per policy, prefilled like the dht rows; loadgen drives
# both sides (RESP SET on Redis), on the same disk (the work directory).
# dht memory: a fresh Redis gets N records via DEBUG POPULATE (N x 100-byte values; keys
# key:0..), a fresh dhtnode N records via `loadgen --prefill N`; the row compares the dht node's
# RSS with Redis's `used_memory` and RSS. The dht engine alone is measured in-process by
# `dht_memory`.
# logfiles (put vs XADD, pipelined P=16): `loadgen --kind redis-xadd` (XADD to one stream) against
# Redis without persistence, `loadgen --kind logfiles` against a logfilesnode with
# `fsync = "none"` and with `fsync = "interval"` (the default), keys sequential; a fresh server
# in an empty directory per run. Both rows are compared with Redis without persistence, the
# target's baseline. (scripts/bench-logfiles.sh: also AOF Redis, fsync always, P=1 and scans.)
# queue (push/pop vs LPUSH/RPOP, pipelined P=16): `redis-benchmark -t lpush` / `-t rpop` against
# Redis, `queue_load --mode push` / `pop` against a queuenode, N requests each (--queue-count,
# default 400000 × S), after one unmeasured push/pop cycle on a fresh server; plus the node's
# Consume (one stream, batches acknowledged) for reference (scripts/bench-queue.sh, same cells).
#
# Options:
#   --records N      records for the memory row (default 1000000); --full = 10000000
#   --seconds S      length of each throughput run (default 5)
#   --repeat R       runs per throughput cell; the table shows the median by ops/s (default 1);
#                    the order of the servers alternates between runs
#   --rt             run servers and generators SCHED_FIFO (chrt -f 10), for a machine that other
#                    work shares: it keeps other processes from delaying their wake-ups. Applied
#                    to Redis and to our nodes alike. The kernel's RT throttling (95%) still gives
#                    other processes 50 ms per second, which shows up in max latency, not p99.
#   --keyspace K     keys of the dht throughput runs (default 1000000)
#   --queue-count N  requests per queue run (default 400000 × S)
#   --only LIST      comma-separated subset of dht, dht-log, logfiles, queue (default: all)
#   --out DIR        keep raw results (JSON, CSV) and table.md there (default: a temp directory)
#
# Installs redis-server/redis-tools (and jq) with apt-get when missing (needs root). Uses only
# 127.0.0.1, bounds every run with `timeout`, and kills what it started on exit.
set -euo pipefail

records=1000000
seconds=5
repeat=1
rt=0
keyspace=1000000
queue_count=""
only="dht,dht-log,logfiles,queue"
out=""
connections=50
value_size=100

usage() { sed -n '2,53p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --full) records=10000000 ;;
        --records) need_value "$1" $#; records="$2"; shift ;;
        --seconds) need_value "$1" $#; seconds="$2"; shift ;;
        --repeat) need_value "$1" $#; repeat="$2"; shift ;;
        --rt) rt=1 ;;
        --keyspace) need_value "$1" $#; keyspace="$2"; shift ;;
        --queue-count) need_value "$1" $#; queue_count="$2"; shift ;;
        --only) need_value "$1" $#; only="$2"; shift ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
[ -n "$queue_count" ] || queue_count=$((seconds * 400000))
positive_numbers "$records" "$seconds" "$repeat" "$keyspace" "$queue_count"
do_dht=0; do_dht_log=0; do_logfiles=0; do_queue=0
IFS=, read -r -a parts <<< "$only"
for part in "${parts[@]}"; do
    case "$part" in
        dht) do_dht=1 ;;
        dht-log) do_dht_log=1 ;;
        logfiles) do_logfiles=1 ;;
        queue) do_queue=1 ;;
        *) echo "--only: unknown part '$part' (dht, dht-log, logfiles, queue)" >&2; exit 2 ;;
    esac
done
cd "$root"
need_redis

log "building release binaries"
packages=(-p benches)
if [ "$do_dht" -eq 1 ] || [ "$do_dht_log" -eq 1 ]; then packages+=(-p dhtnode); fi
if [ "$do_logfiles" -eq 1 ]; then packages+=(-p logfilesnode); fi
if [ "$do_queue" -eq 1 ]; then packages+=(-p queuenode); fi
timeout 1800 cargo build --release -q "${packages[@]}"
dhtnode="$root/target/release/dhtnode"
logfilesnode="$root/target/release/logfilesnode"
queuenode="$root/target/release/queuenode"
loadgen="$root/target/release/loadgen"
queue_load="$root/target/release/queue_load"
dht_memory="$root/target/release/dht_memory"

bench_sched
bench_workdir bench-vs-redis
info_file="$out/machine.md"
machine_info > "$info_file"
cat "$info_file" >&2
rows_file="$out/rows.md"       # the table's rows, in order
cpu_file="$out/cpu-rows.md"    # the CPU and spread table's rows
: > "$rows_file"; : > "$cpu_file"

# ---- dht -------------------------------------------------------------------------------------

# start_dht [DURABILITY]: sets dht_pid and dht_port (durability "none" unless given). The node
# is killed with SIGKILL at the end, so it writes no shutdown dump of the benchmark data.
start_dht() {
    dht_port="$(free_port)"
    rm -rf "$tmp/dht"; mkdir -p "$tmp/dht/data" "$tmp/dht/log"
    printf '[dht]\ndurability = "%s"\n' "${1:-none}" > "$tmp/dht/dhtnode.toml"
    "${server_run[@]}" "$dhtnode" -c "$tmp/dht/dhtnode.toml" --listen "127.0.0.1:$dht_port" \
        --data-dir "$tmp/dht/data" --log-dir "$tmp/dht/log" &
    dht_pid=$!
    started_pids+=("$dht_pid")
    wait_listening "$dht_port" "$dht_pid"
}

# run_redis_benchmark PREFIX TEST P: appends "ops_per_s p99_us generator_cpu server_cpu".
run_redis_benchmark() {
    local file="$1" test="$2" p="$3" n rate before after wall user sys
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
        }' "$file.csv" >> "$file.runs"
}

# run_loadgen PREFIX KIND PORT PID OP P: appends "ops_per_s p99_us generator_cpu server_cpu".
run_loadgen() {
    local file="$1" kind="$2" port="$3" pid="$4" op="$5" p="$6" status=0
    timeout $((seconds * 4 + 120)) "${client_run[@]}" "$loadgen" --kind "$kind" \
        --addr "127.0.0.1:$port" -c "$connections" -P "$p" -d "$value_size" \
        --keys "uniform:$keyspace" --ops "$op" --warmup-s 0.5 --duration-s "$seconds" \
        --server-pid "$pid" --json "$file.json" > "$file.txt" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "loadgen failed ($status):" >&2; cat "$file.txt" >&2; return 1
    fi
    jq -r '"\(.ops_per_s|round) \(.latency_us.p99|round) \(.loadgen_cpu.utilisation*100|round/100) \(.server.utilisation*100|round/100)"' \
        "$file.json" >> "$file.runs"
}

bench_dht() {
    log "dht throughput: starting redis-server and dhtnode"
    start_redis none
    redis_pid=$srv_pid; redis_port=$srv_port
    start_dht
    log "prefilling both with $keyspace keys"
    timeout 900 "${client_run[@]}" "$loadgen" --kind redis --addr "127.0.0.1:$redis_port" \
        -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 > "$out/prefill-redis.txt"
    timeout 900 "${client_run[@]}" "$loadgen" --kind dht --addr "127.0.0.1:$dht_port" \
        -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 > "$out/prefill-dht.txt"

    local p op test cell r
    for p in 16 1; do
        for op in put get; do
            test=$([ "$op" = put ] && echo set || echo get)
            cell="$out/dht-p$p-$op"
            rm -f "$cell".*.runs
            for r in $(seq "$repeat"); do
                # Alternate the order, so that drift on a shared machine does not favour one side.
                if [ $((r % 2)) -eq 1 ]; then
                    log "dht P=$p $op: run $r of $repeat (redis-benchmark, loadgen on Redis, loadgen on dhtnode)"
                    run_redis_benchmark "$cell.rb" "$test" "$p"
                    run_loadgen "$cell.lgredis" redis "$redis_port" "$redis_pid" "$op" "$p"
                    run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" "$op" "$p"
                else
                    log "dht P=$p $op: run $r of $repeat (loadgen on dhtnode, loadgen on Redis, redis-benchmark)"
                    run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" "$op" "$p"
                    run_loadgen "$cell.lgredis" redis "$redis_port" "$redis_pid" "$op" "$p"
                    run_redis_benchmark "$cell.rb" "$test" "$p"
                fi
            done
            # p op | rb: ops p99 gen srv | lgredis: ops p99 gen srv | ours: ops p99 gen srv
            local rb lr ours
            rb="$(median "$cell.rb")"; lr="$(median "$cell.lgredis")"; ours="$(median "$cell.ours")"
            # shellcheck disable=SC2086
            set -- $rb $lr $ours
            awk -v p="$p" -v op="$op" -v c="$connections" -v rb="$1" -v rbp="$2" -v lr="$5" \
                -v lrp="$6" -v o="$9" -v op99="${10}" 'BEGIN {
                t = (p > 1) ? 1.5 : 1.2;
                mode = (p > 1) ? "pipelined P=" p : "unpipelined P=1";
                name = (op == "put") ? "dht put vs SET" : "dht get vs GET";
                r = o / rb; r2 = o / lr;
                printf "| %s, %s, %d conns | %d | %d | **%.2f×** %s | ≥ %s× | %d | %d | %s | redis-benchmark / loadgen | %d (%d), %.2f× |\n",
                    name, mode, c, rb, o, r, (r >= t ? "✓" : "✗"), t, rbp, op99,
                    (op99 <= rbp ? "✓" : "✗"), lr, lrp, r2
            }' >> "$rows_file"
            echo "| dht P=$p $op | redis-benchmark $3, Redis $4 | loadgen $7, Redis $8 | loadgen ${11}, dhtnode ${12} | $(spread "$cell.rb") / $(spread "$cell.lgredis") / $(spread "$cell.ours") |" >> "$cpu_file"
        done
    done
    stop_srv
    stop_pid "$dht_pid"

    log "dht memory: $records records of $value_size bytes"
    start_redis none
    local redis_used_before redis_rss_before redis_keys redis_used redis_rss
    redis_used_before="$(redis-cli -p "$srv_port" info memory | awk -F: '/^used_memory:/ {print $2+0}')"
    redis_rss_before="$(rss_bytes "$srv_pid")"
    timeout 900 redis-cli -p "$srv_port" debug populate "$records" key "$value_size" > /dev/null
    redis_keys="$(redis-cli -p "$srv_port" dbsize)"
    redis_used="$(redis-cli -p "$srv_port" info memory | awk -F: '/^used_memory:/ {print $2+0}')"
    redis_rss="$(rss_bytes "$srv_pid")"
    stop_srv
    [ "$redis_keys" -eq "$records" ] || { echo "Redis holds $redis_keys keys, not $records" >&2; exit 1; }

    start_dht
    local dht_rss_before dht_rss engine_rss_per engine_heap_per
    dht_rss_before="$(rss_bytes "$dht_pid")"
    timeout 1800 "${client_run[@]}" "$loadgen" --kind dht --addr "127.0.0.1:$dht_port" \
        -c "$connections" -d "$value_size" --prefill "$records" --count 0 \
        --json "$out/fill-dht.json" > "$out/fill-dht.txt"
    sleep 1
    dht_rss="$(rss_bytes "$dht_pid")"
    stop_pid "$dht_pid"
    rm -rf "$tmp/dht"

    timeout 1800 "$dht_memory" --records "$records" --value-size "$value_size" \
        --json "$out/dht-memory.json" > "$out/dht-memory.txt"
    engine_rss_per="$(jq '.rss_per_record' "$out/dht-memory.json")"
    engine_heap_per="$(jq '.heap_per_record' "$out/dht-memory.json")"
    awk -v n="$records" -v ru="$redis_used" -v rr="$redis_rss" -v rub="$redis_used_before" \
        -v rrb="$redis_rss_before" -v dr="$dht_rss" -v drb="$dht_rss_before" \
        -v er="$engine_rss_per" -v eh="$engine_heap_per" 'BEGIN {
        printf "| dht memory, %d × 100-byte records: bytes/record | used_memory %.1f, RSS %.1f | RSS %.1f | **%.3f×** RSS/RSS %s, %.3f× RSS/used_memory %s | ≤ 0.8× | | | | DEBUG POPULATE / loadgen --prefill | net of empty process: Redis used %.1f, RSS %.1f; ours RSS %.1f; engine alone in-process (dht_memory): RSS %.1f, heap %.1f |\n",
            n, ru / n, rr / n, dr / n, dr / rr, (dr / rr <= 0.8 ? "✓" : "✗"), dr / ru, (dr / ru <= 0.8 ? "✓" : "✗"),
            (ru - rub) / n, (rr - rrb) / n, (dr - drb) / n, er, eh
    }' >> "$rows_file"
}

# ---- dht with the change log ------------------------------------------------------------------

# bench_dht_log: dht put with durability interval / always against Redis AOF everysec / always.
bench_dht_log() {
    local pair ours theirs p r cell
    for pair in interval:everysec always:always; do
        ours=${pair%%:*}; theirs=${pair##*:}
        log "dht-log: redis-server (appendfsync $theirs) and dhtnode (durability $ours)"
        start_redis "$theirs"
        redis_pid=$srv_pid; redis_port=$srv_port
        start_dht "$ours"
        timeout 900 "${client_run[@]}" "$loadgen" --kind redis --addr "127.0.0.1:$redis_port" \
            -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 > "$out/prefill-redis-$theirs.txt"
        timeout 900 "${client_run[@]}" "$loadgen" --kind dht --addr "127.0.0.1:$dht_port" \
            -c "$connections" -d "$value_size" --prefill "$keyspace" --count 0 > "$out/prefill-dht-$ours.txt"
        for p in 16 1; do
            cell="$out/dhtlog-$ours-p$p"
            rm -f "$cell".*.runs
            for r in $(seq "$repeat"); do
                log "dht-log P=$p put: run $r of $repeat ($ours vs AOF $theirs)"
                if [ $((r % 2)) -eq 1 ]; then
                    run_loadgen "$cell.redis" redis "$redis_port" "$redis_pid" put "$p"
                    run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" put "$p"
                else
                    run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" put "$p"
                    run_loadgen "$cell.redis" redis "$redis_port" "$redis_pid" put "$p"
                fi
            done
            # shellcheck disable=SC2046
            set -- $(median "$cell.redis") $(median "$cell.ours")
            awk -v ours="$ours" -v theirs="$theirs" -v p="$p" -v c="$connections" -v rb="$1" \
                -v rbp="$2" -v o="$5" -v op99="$6" 'BEGIN {
                r = o / rb;
                mode = (p > 1) ? "pipelined P=" p : "unpipelined P=1";
                printf "| dht put (durability = %s) vs SET with AOF (appendfsync %s), %s, %d conns | %d | %d | **%.2f×** %s | ≥ 1.5× | %d | %d | %s | loadgen / loadgen | (same generator) |\n",
                    ours, theirs, mode, c, rb, o, r, (r >= 1.5 ? "✓" : "✗"), rbp, op99, (op99 <= rbp ? "✓" : "✗")
            }' >> "$rows_file"
            echo "| dht P=$p put, durability $ours / AOF $theirs | | loadgen $3, Redis $4 | loadgen $7, dhtnode $8 | – / $(spread "$cell.redis") / $(spread "$cell.ours") |" >> "$cpu_file"
        done
        stop_srv
        stop_pid "$dht_pid"
    done
}

# ---- logfiles --------------------------------------------------------------------------------

bench_logfiles() {
    local systems=(redis:none logfiles:none logfiles:interval) order r i system server durability
    for r in $(seq "$repeat"); do
        order=("${systems[@]}")
        if [ $((r % 2)) -eq 0 ]; then
            order=(); for ((i = ${#systems[@]} - 1; i >= 0; i--)); do order+=("${systems[$i]}"); done
        fi
        for system in "${order[@]}"; do
            IFS=: read -r server durability <<< "$system"
            log "logfiles P=16: $server ($durability), run $r of $repeat"
            if [ "$server" = redis ]; then
                start_redis none
                run_put "$out/logfiles-p16-redis-none" redis-xadd 16
            else
                start_logfiles "$durability" "$tmp/srv/data"
                run_put "$out/logfiles-p16-logfiles-$durability" logfiles 16
            fi
            stop_srv
        done
    done
    local base="$out/logfiles-p16-redis-none" cell
    for durability in none interval; do
        cell="$out/logfiles-p16-logfiles-$durability"
        # shellcheck disable=SC2046
        set -- $(median "$base") $(median "$cell")
        awk -v d="$durability" -v c="$connections" -v rb="$1" -v rbp="$2" -v o="$5" -v op99="$6" 'BEGIN {
            r = o / rb;
            printf "| logfiles put (fsync = %s) vs XADD without persistence, pipelined P=16, %d conns | %d | %d | **%.2f×** %s | ≥ 1.5× | %d | %d | %s | loadgen (XADD) / loadgen | (same generator) |\n",
                d, c, rb, o, r, (r >= 1.5 ? "✓" : "✗"), rbp, op99, (op99 <= rbp ? "✓" : "✗")
        }' >> "$rows_file"
        echo "| logfiles P=16 put, fsync $durability | | loadgen $3, Redis $4 | loadgen $7, logfilesnode $8 | – / $(spread "$base") / $(spread "$cell") |" >> "$cpu_file"
    done
}

# ---- queue -----------------------------------------------------------------------------------

bench_queue() {
    local r
    for r in $(seq "$repeat"); do
        if [ $((r % 2)) -eq 1 ]; then
            log "queue: run $r of $repeat: redis-server, then queuenode ($queue_count requests per run)"
            queue_cycle_redis "$r" "$queue_count"; queue_cycle_ours "$r" "$queue_count"
        else
            log "queue: run $r of $repeat: queuenode, then redis-server ($queue_count requests per run)"
            queue_cycle_ours "$r" "$queue_count"; queue_cycle_redis "$r" "$queue_count"
        fi
    done
    local q="$out/queue" pair op name
    for pair in "push:LPUSH" "pop:RPOP"; do
        op=${pair%%:*}; name=${pair##*:}
        # shellcheck disable=SC2046
        set -- $(median "$q/redis-$op") $(median "$q/queue-$op")
        awk -v op="$op" -v name="$name" -v c="$connections" -v rb="$1" -v rbp="$2" -v o="$4" \
            -v op99="$5" 'BEGIN {
            r = o / rb;
            printf "| queue %s vs %s, pipelined P=16, %d conns | %d | %d | **%.2f×** %s | ≥ 1.5× | %d | %d | %s | redis-benchmark / queue_load | |\n",
                op, name, c, rb, o, r, (r >= 1.5 ? "✓" : "✗"), rbp, op99, (op99 <= rbp ? "✓" : "✗")
        }' >> "$rows_file"
        echo "| queue P=16 $op | Redis $3 µs/op | | queuenode $6 µs/op | $(spread "$q/redis-$op") / – / $(spread "$q/queue-$op") |" >> "$cpu_file"
    done
    # shellcheck disable=SC2046
    set -- $(median "$q/queue-consume")
    echo "| queue consume, 1 stream, batches acknowledged (ours only, for reference) | | $1 records/s | | | | | | queue_load | |" >> "$rows_file"
    echo "| queue consume | | | queuenode $3 µs/record | – / – / $(spread "$q/queue-consume") |" >> "$cpu_file"
}

# (`if`, not `&&`: errexit must stay on inside the functions.)
if [ "$do_dht" -eq 1 ]; then bench_dht; fi
if [ "$do_dht_log" -eq 1 ]; then bench_dht_log; fi
if [ "$do_logfiles" -eq 1 ]; then bench_logfiles; fi
if [ "$do_queue" -eq 1 ]; then bench_queue; fi

# ---- the table -------------------------------------------------------------------------------
table="$out/table.md"
{
    echo "| operation (100-byte values) | Redis ops/s | ours ops/s | ratio | target | Redis p99 µs | our p99 µs | p99 ≤ Redis | generators: Redis / ours | same generator: Redis via loadgen ops/s (p99 µs), ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|:-:|---|---|"
    cat "$rows_file"
} > "$table"
{
    echo
    echo "### Where the CPU went (median runs) and the spread of the runs"
    echo
    echo "Shares of one core over the run (dht, logfiles) or server CPU µs per operation (queue)."
    echo
    echo "| run | redis-benchmark | loadgen on Redis | ours | ops/s min–max: redis-benchmark / loadgen on Redis / ours |"
    echo "|---|---|---|---|---|"
    cat "$cpu_file"
} > "$out/cpu.md"

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$info_file"
echo
cat "$info_file"
echo
echo "Command: scripts/bench-vs-redis.sh $([ "$records" -eq 10000000 ] && echo --full || echo "--records $records") --seconds $seconds --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt') --keyspace $keyspace --queue-count $queue_count --only $only"
echo
cat "$table"
cat "$out/cpu.md"
echo
echo "Ratios use the median run of $repeat by ops/s. dht: the 'same generator' column divides ours by"
echo "Redis driven by our loadgen. logfiles: loadgen drives both (XADD bench * key:N <value>)."
echo "Raw results: $out"
