#!/usr/bin/env bash
# Side-by-side benchmark of our three nodes against redis-server and memcached (DESIGN.md §6), on
# loopback: one table with every row of issues 9 and 22.
#
#   scripts/bench-vs-redis.sh [--full | --records N] [--seconds S] [--repeat R] [--rt]
#                             [--keyspace K] [--queue-count N]
#                             [--only dht,dht-log,dht-tls,dht-repl,logfiles,queue]
#                             [--no-memcached]
#                             [--out DIR] [--dry-run]
#
# Every server runs pinned to core 0 and every load generator to core 1 (`taskset`), with 50
# connections and 100-byte values.
#
# dht (put/get, pipeline depth 16 and 1): three servers hold the same data. Redis (SET/GET) is
# driven by redis-benchmark, memcached (one worker thread, `-t 1`; set/get, text protocol) and
# our dht node by benches' `loadgen`, all with the same key space (uniform over K keys, default
# 1M, `key:%012d` on the peers; every store is first filled with all K keys so gets hit and
# puts overwrite). Pipelined memcached gets are single-key gets sent back to back, as for Redis
# and ours; the pipelined get row has a second memcached row where each batch is one multi-get
# of P keys (`loadgen --multiget`), memcached's batch read. Cross-checks: the same `loadgen`
# also drives Redis (RESP), and memcached's own `memcslap` (libmemcached-tools: 50 threads with
# one blocking connection each, its own keys and values; `mget` for the pipelined get rows, none
# for the pipelined put row) drives memcached.
# The dht node of these rows runs with `durability = "none"` (no change log), against Redis
# without persistence.
# dht-log (the change log, issue #18; put P=16 and P=1): dhtnode with `durability = "interval"`
# against Redis `appendonly yes, appendfsync everysec`, and `durability = "always"` against
# `appendfsync always`, a fresh pair per policy, prefilled like the dht rows; loadgen drives
# both sides (RESP SET on Redis), on the same disk (the work directory).
# dht memory: a fresh Redis gets N records via DEBUG POPULATE (N x 100-byte values; keys
# key:0..), a fresh dhtnode and a fresh memcached N records via `loadgen --prefill N`; the rows
# compare the dht node's RSS with Redis's `used_memory` and RSS, and with memcached's RSS. The
# dht engine alone is measured in-process by `dht_memory`.
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
# On a busy machine: a port taken between the script's look and the server's bind is retried
# with another one, and a measurement that fails (a server that does not start, a generator
# that fails or times out) leaves its row saying FAILED with the reason while every other row is
# measured and printed; the script then exits 1 (scripts/lib/bench-common.sh).
#
# dht over TLS (part dht-tls of --only): put/get P=16 vs SET/GET with `redis-server --tls-port`
# driven by `redis-benchmark --tls`, one run each; one throwaway CA and certificate for 127.0.0.1
# (openssl, ECDSA P-256) that both servers serve; loadgen --tls-ca drives the dht node. Both are
# prefilled with the key space first (Redis over its plain port, the node over TLS).
#
# dht with replication (part dht-repl, issue #19): put P=16 to a replica set of two dhtnodes
# (same range, `durability = "none"`), `loadgen --replica` sending every Put to both as
# PutVersion and counting it when both answered (what the client does with write_quorum = all),
# against redis-benchmark SET on a Redis primary with one replica attached (`--replicaof`, both
# without persistence, the primary's output buffer for its replica unlimited so that it never
# drops the replica). Redis acknowledges before its replica has the write, so the row compares
# SETs on both copies per second: redis-benchmark's SETs over its run plus the wait until the
# replica's offset reaches the primary's (the primary's own rate is the cross-check column).
# The Redis pair is stopped before our pair runs. Servers on core 0; one run, not prefilled.
#
# Options:
#   --records N      records for the memory rows (default 1000000); --full = 10000000
#   --seconds S      length of each throughput run (default 5)
#   --repeat R       runs per throughput cell; the table shows the median by ops/s (default 1);
#                    the order of the servers alternates between runs
#   --rt             run servers and generators SCHED_FIFO (chrt -f 10), for a machine that other
#                    work shares: it keeps other processes from delaying their wake-ups. Applied
#                    to Redis, memcached and our nodes alike. The kernel's RT throttling (95%)
#                    still gives other processes 50 ms per second, which shows up in max latency,
#                    not p99.
#   --keyspace K     keys of the dht throughput runs (default 1000000)
#   --queue-count N  requests per queue run (default 400000 × S)
#   --only LIST      comma-separated subset of dht, dht-log, dht-tls, dht-repl, logfiles, queue
#                    (default: all)
#   --no-memcached   leave memcached out of the dht rows
#   --out DIR        keep raw results (JSON, CSV) and table.md there (default: a temp directory)
#   --bin-dir DIR    take our binaries (dhtnode, loadgen, ...: those the rows run) from DIR, copies
#                    of an earlier release build, instead of building target/release: alternated
#                    runs of two commits (A/B of one row against Redis each time)
#   --nodes DIR      run the node binaries (dhtnode, logfilesnode, queuenode) found in DIR, copies
#                    of another release build, instead of those of this tree or of --bin-dir (A/B
#                    runs of two node builds with the same generators); the Command line printed
#                    with the table names DIR
#   --dry-run        print the rows the run would measure and exit (builds and starts nothing)
#
# Installs redis-server/redis-tools, memcached/libmemcached-tools (and jq) with apt-get when
# missing (needs root). Uses only 127.0.0.1, bounds every run with `timeout`, and kills what it
# started on exit.
set -euo pipefail

records=1000000
seconds=5
repeat=1
rt=0
keyspace=1000000
queue_count=""
only="dht,dht-log,dht-tls,dht-repl,logfiles,queue"
memcached=1
out=""
bin_dir=""
nodes_dir=""
dry_run=0
connections=50
value_size=100

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
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
        --no-memcached) memcached=0 ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        # Absolute now: the rows run binaries from other working directories.
        --bin-dir) need_value "$1" $#; bin_dir=$(realpath -m -- "$2"); shift ;;
        --nodes) need_value "$1" $#; nodes_dir=$(realpath -m -- "$2"); shift ;;
        --dry-run) dry_run=1 ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
[ -n "$queue_count" ] || queue_count=$((seconds * 400000))
positive_numbers "$records" "$seconds" "$repeat" "$keyspace" "$queue_count"
do_dht=0; do_dht_log=0; do_dht_tls=0; do_dht_repl=0; do_logfiles=0; do_queue=0
IFS=, read -r -a parts <<< "$only"
for part in "${parts[@]}"; do
    case "$part" in
        dht) do_dht=1 ;;
        dht-log) do_dht_log=1 ;;
        dht-tls) do_dht_tls=1 ;;
        dht-repl) do_dht_repl=1 ;;
        logfiles) do_logfiles=1 ;;
        queue) do_queue=1 ;;
        *) echo "--only: unknown part '$part' (dht, dht-log, dht-tls, dht-repl, logfiles, queue)" >&2; exit 2 ;;
    esac
done
[ $((do_dht + do_dht_log + do_dht_tls + do_dht_repl + do_logfiles + do_queue)) -gt 0 ] || { echo "--only: no part given" >&2; exit 2; }

# The targets (DESIGN.md §6).
target_dht_p16=1.8
target_dht_p1=1.35
target_memory=0.8
target_logfiles=1.5
target_queue=1.8

# The rows, in table order, for --dry-run.
plan() {
    local p op peer
    if [ "$do_dht" -eq 1 ]; then
        for p in 16 1; do
            for op in put get; do
                for peer in Redis $([ "$memcached" -eq 1 ] && echo memcached); do
                    echo "dht $op vs $peer, P=$p, $connections conns: $repeat run(s) of ${seconds} s, keys uniform:$keyspace"
                    if [ "$peer" = memcached ] && [ "$p" -gt 1 ] && [ "$op" = get ]; then
                        echo "dht $op vs memcached multi-get of $p keys, P=$p, $connections conns: $repeat run(s) of ${seconds} s"
                    fi
                done
            done
        done
        echo "dht memory vs Redis, $records records"
        if [ "$memcached" -eq 1 ]; then echo "dht memory vs memcached, $records records"; fi
    fi
    if [ "$do_dht_log" -eq 1 ]; then
        echo "dht put (durability interval, always) vs SET with AOF (everysec, always), P=16 and P=1: $repeat run(s) of ${seconds} s each"
    fi
    if [ "$do_dht_tls" -eq 1 ]; then
        echo "dht put, get over TLS vs SET, GET with redis-server --tls-port, P=16: one run of ${seconds} s each"
    fi
    if [ "$do_dht_repl" -eq 1 ]; then
        echo "dht put to a replica set of 2 vs SET on Redis with one replica, P=16: one run of ${seconds} s"
    fi
    if [ "$do_logfiles" -eq 1 ]; then
        echo "logfiles put (fsync none, interval) vs XADD, P=16: $repeat run(s) of ${seconds} s each"
    fi
    if [ "$do_queue" -eq 1 ]; then
        echo "queue push, pop vs LPUSH, RPOP, P=16: $repeat run(s) of $queue_count requests; consume"
    fi
}
if [ "$dry_run" -eq 1 ]; then plan; exit 0; fi

cd "$root"
need_redis
if [ "$do_dht" -eq 1 ] && [ "$memcached" -eq 1 ]; then need_memcached; fi

[ -n "$bin_dir" ] || log "building release binaries"
packages=(-p benches)
if [ "$do_dht" -eq 1 ] || [ "$do_dht_log" -eq 1 ] || [ "$do_dht_tls" -eq 1 ] ||
    [ "$do_dht_repl" -eq 1 ]; then packages+=(-p dhtnode); fi
if [ "$do_logfiles" -eq 1 ]; then packages+=(-p logfilesnode); fi
if [ "$do_queue" -eq 1 ]; then packages+=(-p queuenode); fi
bin_given=$bin_dir
if [ -z "$bin_dir" ]; then
    timeout 1800 cargo build --release -q "${packages[@]}"
    bin_dir="$root/target/release"
fi
dhtnode="$bin_dir/dhtnode"
logfilesnode="$bin_dir/logfilesnode"
queuenode="$bin_dir/queuenode"
loadgen="$bin_dir/loadgen"
queue_load="$bin_dir/queue_load"
dht_memory="$bin_dir/dht_memory"
if [ -n "$nodes_dir" ]; then
    dhtnode="$nodes_dir/dhtnode"
    logfilesnode="$nodes_dir/logfilesnode"
    queuenode="$nodes_dir/queuenode"
fi
# Every binary the rows asked for must be there before the first row runs.
needed=()
if [ $((do_dht + do_dht_log + do_dht_tls + do_dht_repl + do_logfiles)) -gt 0 ]; then needed+=("$loadgen"); fi
if [ $((do_dht + do_dht_log + do_dht_tls + do_dht_repl)) -gt 0 ]; then needed+=("$dhtnode"); fi
if [ "$do_dht" -eq 1 ]; then needed+=("$dht_memory"); fi
if [ "$do_logfiles" -eq 1 ]; then needed+=("$logfilesnode"); fi
if [ "$do_queue" -eq 1 ]; then needed+=("$queuenode" "$queue_load"); fi
for binary in "${needed[@]}"; do
    [ -x "$binary" ] || { echo "no executable $binary (--bin-dir / --nodes, or the build)" >&2; exit 2; }
done

bench_sched
bench_workdir bench-vs-redis
info_file="$out/machine.md"
machine_info > "$info_file"
cat "$info_file" >&2
rows_file="$out/rows.md"       # the table's rows, in order
cpu_file="$out/cpu-rows.md"    # the CPU and spread table's rows
: > "$rows_file"; : > "$cpu_file"

# ---- dht: the three servers ------------------------------------------------------------------

# memcached's item memory for N records of $value_size bytes (-m, MB): item header, key and
# value in a slab chunk, with room to spare; at least 1 GB.
memcached_mb() { echo $(( ($1 * (value_size + 120) * 3 / 2) / 1048576 + 1024 )); }

# The dht rows compare the node without its change log with Redis without persistence.
no_change_log=$'[dht]\ndurability = "none"'

# prefill KIND ADDR N: `loadgen --prefill N` (keys 0..N-1) into a server.
prefill() { loadgen_prefill "$out/prefill-$1.txt" "$@"; }

# setup_SERVER: starts it (core 0), fills it with $keyspace keys; sets SERVER_pid, SERVER_port
# (run_step hands step_vars over).
# shellcheck disable=SC2031
setup_redis() {
    start_redis none
    redis_pid=$srv_pid; redis_port=$srv_port
    prefill redis "$srv_addr" "$keyspace"
    step_vars+=(redis_pid redis_port)
}
setup_memcached() {
    start_memcached "$(memcached_mb "$keyspace")"
    memc_pid=$srv_pid; memc_port=$srv_port
    prefill memcached "$srv_addr" "$keyspace"
    step_vars+=(memc_pid memc_port)
}
setup_dht() {
    start_dhtnode "$tmp/dht" "$no_change_log"
    dht_pid=$srv_pid; dht_port=$srv_port
    prefill dht "$srv_addr" "$keyspace"
    step_vars+=(dht_pid dht_port)
}

# measure PREFIX SERVER CMD...: one run of CMD as a step, unless SERVER (redis, memc, dht) did not
# come up, whose reason then stands for the run's.
measure() {
    local prefix=$1 ok_var="$2_ok" reason_var="$2_reason"
    shift 2
    if [ "${!ok_var}" -ne 1 ]; then
        echo "${!reason_var}" >> "$prefix.failed"
        return 0
    fi
    run_step "$prefix" "$@"
}

# ---- dht: runners ----------------------------------------------------------------------------

# More arguments for redis-benchmark (the TLS rows set them).
rb_extra=()

# run_redis_benchmark PREFIX TEST P: appends "ops_per_s p99_us generator_cpu server_cpu".
run_redis_benchmark() {
    local file="$1" test="$2" p="$3" n rate before after wall user sys status=0
    rate=$([ "$p" -gt 1 ] && echo 700000 || echo 150000)
    n=$((seconds * rate))
    rb_requests=$n
    before="$(cpu_ticks "$redis_pid")"
    local TIMEFORMAT='%R %U %S'
    { time timeout $((seconds * 10 + 60)) "${client_run[@]}" redis-benchmark -h 127.0.0.1 \
        -p "$redis_port" -t "$test" -c "$connections" -P "$p" -d "$value_size" -r "$keyspace" \
        -n "$n" --csv "${rb_extra[@]}" > "$file.csv" 2> "$file.err"; } 2> "$file.time" || status=$?
    [ "$status" -eq 0 ] || row_error "redis-benchmark -t $test -P $p: exit $status: $(last_words "$file.err")"
    after="$(cpu_ticks "$redis_pid")"
    read -r wall user sys < <(tail -1 "$file.time")
    awk -F'","' -v wall="$wall" -v user="$user" -v sys="$sys" -v srv=$((after - before)) \
        -v hz="$clk_tck" 'NR == 2 {
            gsub(/"/, "", $0); split($0, f, ",");
            printf "%.0f %.0f %.2f %.2f\n", f[2], f[7] * 1000, (user + sys) / wall, srv / hz / wall
        }' "$file.csv" > "$file.line"
    [ -s "$file.line" ] || row_error "redis-benchmark -t $test -P $p printed no result"
    cat "$file.line" >> "$file.runs"
}

# run_loadgen PREFIX KIND PORT PID OP P [LOADGEN_OPTION...]: appends "ops_per_s p99_us
# generator_cpu server_cpu".
run_loadgen() {
    loadgen_run "$1" "$2" "127.0.0.1:$3" "$4" "$5" "$6" "uniform:$keyspace" "$connections" \
        "$value_size" "${@:7}"
}

# run_memcslap PREFIX TEST: one memcslap run (TEST set, get or mget) against memcached: 50
# threads with one blocking connection each (P=1), about S seconds of requests at 50k/s;
# appends "ops_per_s 0 generator_cpu server_cpu" (memcslap reports no latencies; for mget, keys/s).
run_memcslap() {
    local file="$1" test="$2" before after wall user sys status=0
    before="$(cpu_ticks "$memc_pid")"
    local TIMEFORMAT='%R %U %S'
    { time timeout $((seconds * 10 + 60)) "${client_run[@]}" memcslap \
        -s "127.0.0.1:$memc_port" -t "$test" -c "$connections" -e $((seconds * 1000)) \
        > "$file.txt" 2>&1; } 2> "$file.time" || status=$?
    [ "$status" -eq 0 ] || row_error "memcslap -t $test: exit $status: $(last_words "$file.txt")"
    after="$(cpu_ticks "$memc_pid")"
    read -r wall user sys < <(tail -1 "$file.time")
    # "Time to get     250000 keys by   50 threads:     3.141 seconds."
    awk -v wall="$wall" -v user="$user" -v sys="$sys" -v srv=$((after - before)) \
        -v hz="$clk_tck" '/^Time to [a-z]+ +[0-9]+ keys by/ { keys = $4; s = $(NF - 1) }
        END { if (s > 0) printf "%.0f 0 %.2f %.2f\n", keys / s, (user + sys) / wall, srv / hz / wall }' \
        "$file.txt" > "$file.line"
    [ -s "$file.line" ] || row_error "memcslap -t $test printed no timing: $(last_words "$file.txt")"
    cat "$file.line" >> "$file.runs"
}

# dht_runs P OP R: run R of the cell, every generator on every server; the order alternates
# between runs so that drift on a shared machine favours no one.
dht_runs() {
    local p=$1 op=$2 r=$3 cell="$out/dht-p$1-$2" test slap steps step
    test=$([ "$op" = put ] && echo set || echo get)
    slap=""
    if [ "$p" -eq 1 ]; then slap=$test; elif [ "$op" = get ]; then slap=mget; fi
    steps=(rb lgredis)
    if [ "$memcached" -eq 1 ]; then
        steps+=(memc)
        # Pipelined gets: also memcached's own batch read, one multi-get of P keys.
        if [ "$p" -gt 1 ] && [ "$op" = get ]; then steps+=(memcmg); fi
        if [ -n "$slap" ]; then steps+=(memcslap); fi
    fi
    steps+=(ours)
    if [ $((r % 2)) -eq 0 ]; then
        local reversed=()
        for ((step = ${#steps[@]} - 1; step >= 0; step--)); do reversed+=("${steps[$step]}"); done
        steps=("${reversed[@]}")
    fi
    log "dht P=$p $op: run $r of $repeat (${steps[*]})"
    for step in "${steps[@]}"; do
        case "$step" in
            rb) measure "$cell.rb" redis run_redis_benchmark "$cell.rb" "$test" "$p" ;;
            lgredis) measure "$cell.lgredis" redis \
                run_loadgen "$cell.lgredis" redis "$redis_port" "$redis_pid" "$op" "$p" ;;
            memc) measure "$cell.memc" memc \
                run_loadgen "$cell.memc" memcached "$memc_port" "$memc_pid" "$op" "$p" ;;
            memcmg) measure "$cell.memcmg" memc \
                run_loadgen "$cell.memcmg" memcached "$memc_port" "$memc_pid" "$op" "$p" --multiget ;;
            memcslap) measure "$cell.memcslap" memc run_memcslap "$cell.memcslap" "$slap" ;;
            ours) measure "$cell.ours" dht \
                run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" "$op" "$p" ;;
        esac
    done
}

# ---- dht: rows -------------------------------------------------------------------------------

# cross_check PREFIX OURS_OPS WHAT: "ops (p99 µs), ratio" of a cross-check generator's median run,
# or why it has none.
cross_check() {
    if ! have_runs "$1"; then echo "$3: FAILED: $missing_reason"; return 0; fi
    median "$1" | awk -v o="$2" -v what="$3" '{
        if ($2 > 0) printf "%s %d (%d), %.2f×\n", what, $1, $2, o / $1;
        else printf "%s %d, %.2f×\n", what, $1, o / $1 }'
}

# compare_row DESC TARGET PEER OURS GENERATORS CROSS: a row from the median runs of the peer's and
# our prefixes. TARGET 1 means "ahead" (ratio above 1).
compare_row() {
    local peer ours
    peer="$(median "$3")"; ours="$(median "$4")"
    # shellcheck disable=SC2086
    set -- "$1" "$2" "$5" "$6" $peer $ours
    awk -v desc="$1" -v t="$2" -v gens="$3" -v cross="$4" -v po="$5" -v pp="$6" -v o="$9" \
        -v op99="${10}" 'BEGIN {
        r = o / po;
        ok = (t == 1) ? (r > 1) : (r >= t);
        tt = (t == 1) ? "> 1× (ahead)" : "≥ " t "×";
        printf "| %s | %d | %d | **%.2f×** %s | %s | %d | %d | %s | %s | %s |\n",
            desc, po, o, r, (ok ? "✓" : "✗"), tt, pp, op99, (op99 <= pp ? "✓" : "✗"), gens, cross
    }' >> "$rows_file"
}

dht_cell_rows() {
    local p=$1 op=$2 cell="$out/dht-p$1-$2" mode t name desc ours_ops=0
    mode=$([ "$p" -gt 1 ] && echo "pipelined P=$p" || echo "unpipelined P=1")
    t=$([ "$p" -gt 1 ] && echo "$target_dht_p16" || echo "$target_dht_p1")
    name=$([ "$op" = put ] && echo "dht put vs Redis SET" || echo "dht get vs Redis GET")
    if have_runs "$cell.ours"; then ours_ops=$(median_field "$cell.ours" 1); fi
    desc="$name, $mode, $connections conns$(runs_note "$cell.ours" "$repeat")"
    run_row "$desc" "$cell.ours" "$cell.rb" -- compare_row "$desc" "$t" "$cell.rb" "$cell.ours" \
        "redis-benchmark / loadgen" "$(cross_check "$cell.lgredis" "$ours_ops" "loadgen on Redis:")"
    if [ "$memcached" -eq 1 ]; then
        name=$([ "$op" = put ] && echo "dht put vs memcached set" || echo "dht get vs memcached get")
        local slap="memcslap (thread per connection, own keys and values):"
        [ "$p" -eq 1 ] || slap="memcslap mget, keys/s:"
        local cross="–"
        if [ "$p" -eq 1 ] || [ "$op" = get ]; then cross="$(cross_check "$cell.memcslap" "$ours_ops" "$slap")"; fi
        run_row "$name, $mode, $connections conns" "$cell.ours" "$cell.memc" -- \
            compare_row "$name, $mode, $connections conns" 1 "$cell.memc" "$cell.ours" \
            "loadgen / loadgen" "$cross"
        if [ "$p" -gt 1 ] && [ "$op" = get ]; then
            desc="dht get vs memcached multi-get of $p keys, pipelined P=$p, $connections conns"
            run_row "$desc" "$cell.ours" "$cell.memcmg" -- compare_row "$desc" 1 "$cell.memcmg" \
                "$cell.ours" "loadgen --multiget / loadgen" "$cross"
        fi
    fi
    local fields=""
    for part in rb lgredis memc ours; do
        if have_runs "$cell.$part"; then
            fields+="$(median_field "$cell.$part" 3) / $(median_field "$cell.$part" 4) | "
        else
            fields+="– | "
        fi
    done
    echo "| dht P=$p $op | $fields$(spread_or_dash "$cell.rb") / $(spread_or_dash "$cell.lgredis") / $(spread_or_dash "$cell.memc") / $(spread_or_dash "$cell.ours") |" >> "$cpu_file"
}
spread_or_dash() { if [ -s "$1.runs" ]; then spread "$1"; else echo –; fi; }

# ---- dht memory ------------------------------------------------------------------------------

# memory_redis: "used_memory RSS used_memory_empty RSS_empty" after DEBUG POPULATE of $records.
memory_redis() {
    start_redis none
    local used_before rss_before keys
    used_before="$(redis-cli -p "$srv_port" info memory | awk -F: '/^used_memory:/ {print $2+0}')"
    rss_before="$(rss_bytes "$srv_pid")"
    timeout 900 redis-cli -p "$srv_port" debug populate "$records" key "$value_size" > /dev/null
    keys="$(redis-cli -p "$srv_port" dbsize)"
    [ "$keys" -eq "$records" ] || row_error "Redis holds $keys keys, not $records"
    echo "$(redis-cli -p "$srv_port" info memory | awk -F: '/^used_memory:/ {print $2+0}') $(rss_bytes "$srv_pid") $used_before $rss_before" \
        >> "$out/mem-redis.runs"
    stop_srv
}

# memory_memcached: "RSS RSS_empty" after `loadgen --prefill $records`.
memory_memcached() {
    start_memcached "$(memcached_mb "$records")"
    local rss_before
    rss_before="$(rss_bytes "$srv_pid")"
    prefill memcached "$srv_addr" "$records"
    sleep 1
    echo "$(rss_bytes "$srv_pid") $rss_before" >> "$out/mem-memc.runs"
    stop_srv
}

# memory_ours: "RSS RSS_empty engine_RSS engine_heap" (per record for the engine, in-process).
memory_ours() {
    start_dhtnode "$tmp/dht" "$no_change_log"
    local rss_before rss
    rss_before="$(rss_bytes "$srv_pid")"
    prefill dht "$srv_addr" "$records"
    sleep 1
    rss="$(rss_bytes "$srv_pid")"
    stop_pid "$srv_pid"
    rm -rf "$tmp/dht"
    timeout 1800 "$dht_memory" --records "$records" --value-size "$value_size" \
        --json "$out/dht-memory.json" > "$out/dht-memory.txt"
    echo "$rss $rss_before $(jq '.rss_per_record' "$out/dht-memory.json") $(jq '.heap_per_record' "$out/dht-memory.json")" \
        >> "$out/mem-ours.runs"
}

memory_row_redis() {
    # shellcheck disable=SC2046
    set -- $(cat "$out/mem-redis.runs") $(cat "$out/mem-ours.runs")
    awk -v n="$records" -v ru="$1" -v rr="$2" -v rub="$3" -v rrb="$4" -v dr="$5" -v drb="$6" \
        -v er="$7" -v eh="$8" -v t="$target_memory" 'BEGIN {
        printf "| dht memory vs Redis, %d × 100-byte records: bytes/record | used_memory %.1f, RSS %.1f | RSS %.1f | **%.3f×** RSS/RSS %s, %.3f× RSS/used_memory %s | ≤ %s× | | | | DEBUG POPULATE / loadgen --prefill | net of empty process: Redis used %.1f, RSS %.1f; ours RSS %.1f; engine alone in-process (dht_memory): RSS %.1f, heap %.1f |\n",
            n, ru / n, rr / n, dr / n, dr / rr, (dr / rr <= t ? "✓" : "✗"), dr / ru, (dr / ru <= t ? "✓" : "✗"),
            t, (ru - rub) / n, (rr - rrb) / n, (dr - drb) / n, er, eh
    }' >> "$rows_file"
}

memory_row_memcached() {
    # shellcheck disable=SC2046
    set -- $(cat "$out/mem-memc.runs") $(cat "$out/mem-ours.runs")
    awk -v n="$records" -v mr="$1" -v mrb="$2" -v dr="$3" -v drb="$4" 'BEGIN {
        printf "| dht memory vs memcached, %d × 100-byte records: bytes/record | RSS %.1f | RSS %.1f | **%.3f×** RSS/RSS %s | < 1× (ahead) | | | | loadgen --prefill / loadgen --prefill | net of empty process: memcached RSS %.1f; ours RSS %.1f |\n",
            n, mr / n, dr / n, dr / mr, (dr / mr < 1 ? "✓" : "✗"), (mr - mrb) / n, (dr - drb) / n
    }' >> "$rows_file"
}

# SERVER_ok and SERVER_reason are read by `measure` through indirection.
# shellcheck disable=SC2034
bench_dht() {
    log "dht throughput: starting and filling redis-server, memcached and dhtnode with $keyspace keys"
    run_step "$out/setup-redis" setup_redis
    redis_ok=$step_ok; redis_reason="redis-server: $step_reason"
    memc_ok=0; memc_reason="memcached left out"
    if [ "$memcached" -eq 1 ]; then
        run_step "$out/setup-memc" setup_memcached
        memc_ok=$step_ok; memc_reason="memcached: $step_reason"
    fi
    run_step "$out/setup-dht" setup_dht
    dht_ok=$step_ok; dht_reason="dhtnode: $step_reason"

    local p op r
    for p in 16 1; do
        for op in put get; do
            rm -f "$out/dht-p$p-$op".*.runs "$out/dht-p$p-$op".*.failed
            for r in $(seq "$repeat"); do dht_runs "$p" "$op" "$r"; done
            dht_cell_rows "$p" "$op"
        done
    done
    for pid in ${redis_pid:-} ${memc_pid:-} ${dht_pid:-}; do stop_pid "$pid"; done

    log "dht memory: $records records of $value_size bytes"
    rm -f "$out"/mem-*.runs "$out"/mem-*.failed
    run_step "$out/mem-redis" memory_redis
    if [ "$memcached" -eq 1 ]; then run_step "$out/mem-memc" memory_memcached; fi
    run_step "$out/mem-ours" memory_ours
    run_row "dht memory vs Redis, $records records" "$out/mem-redis" "$out/mem-ours" -- memory_row_redis
    if [ "$memcached" -eq 1 ]; then
        run_row "dht memory vs memcached, $records records" "$out/mem-memc" "$out/mem-ours" -- \
            memory_row_memcached
    fi
}

# ---- dht with the change log -----------------------------------------------------------------

# setup_dht_log OURS THEIRS: redis-server with AOF (appendfsync THEIRS) and dhtnode with
# durability OURS, both filled with $keyspace keys; sets redis_pid/port and dht_pid/port.
setup_dht_log() {
    start_redis "$2"
    redis_pid=$srv_pid; redis_port=$srv_port
    loadgen_prefill "$out/prefill-redis-aof-$2.txt" redis "$srv_addr" "$keyspace"
    start_dhtnode "$tmp/dht-log" $'[dht]\ndurability = "'"$1"'"'
    dht_pid=$srv_pid; dht_port=$srv_port
    loadgen_prefill "$out/prefill-dht-$1.txt" dht "$srv_addr" "$keyspace"
    step_vars+=(redis_pid redis_port dht_pid dht_port)
}

# dht_log_row OURS THEIRS P: the row of one policy pair at depth P.
dht_log_row() {
    local ours=$1 theirs=$2 p=$3 cell="$out/dhtlog-$1-p$3"
    # shellcheck disable=SC2046
    set -- $(median "$cell.redis") $(median "$cell.ours")
    awk -v ours="$ours" -v theirs="$theirs" -v p="$p" -v c="$connections" -v rb="$1" \
        -v rbp="$2" -v o="$5" -v op99="$6" 'BEGIN {
        r = o / rb;
        mode = (p > 1) ? "pipelined P=" p : "unpipelined P=1";
        printf "| dht put (durability = %s) vs SET with AOF (appendfsync %s), %s, %d conns | %d | %d | **%.2f×** %s | ≥ 1.5× | %d | %d | %s | loadgen / loadgen | (same generator) |\n",
            ours, theirs, mode, c, rb, o, r, (r >= 1.5 ? "✓" : "✗"), rbp, op99, (op99 <= rbp ? "✓" : "✗")
    }' >> "$rows_file"
    echo "| dht P=$p put, durability $ours / AOF $theirs | | loadgen $3, Redis $4 | | loadgen $7, dhtnode $8 | – / $(spread "$cell.redis") / – / $(spread "$cell.ours") |" >> "$cpu_file"
}

# bench_dht_log: dht put with durability interval / always against Redis AOF everysec / always.
bench_dht_log() {
    local pair ours theirs p r cell
    for pair in interval:everysec always:always; do
        ours=${pair%%:*}; theirs=${pair##*:}
        log "dht-log: redis-server (appendfsync $theirs) and dhtnode (durability $ours)"
        redis_pid=""; dht_pid=""
        run_step "$out/setup-dhtlog-$ours" setup_dht_log "$ours" "$theirs"
        redis_ok=$step_ok; redis_reason="setup: $step_reason"
        dht_ok=$step_ok; dht_reason="setup: $step_reason"
        for p in 16 1; do
            cell="$out/dhtlog-$ours-p$p"
            rm -f "$cell".*.runs "$cell".*.failed
            for r in $(seq "$repeat"); do
                log "dht-log P=$p put: run $r of $repeat ($ours vs AOF $theirs)"
                if [ $((r % 2)) -eq 1 ]; then
                    measure "$cell.redis" redis run_loadgen "$cell.redis" redis "$redis_port" "$redis_pid" put "$p"
                    measure "$cell.ours" dht run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" put "$p"
                else
                    measure "$cell.ours" dht run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" put "$p"
                    measure "$cell.redis" redis run_loadgen "$cell.redis" redis "$redis_port" "$redis_pid" put "$p"
                fi
            done
            run_row "dht put (durability $ours) vs SET with AOF ($theirs), P=$p" "$cell.redis" \
                "$cell.ours" -- dht_log_row "$ours" "$theirs" "$p"
        done
        for pid in ${redis_pid:-} ${dht_pid:-}; do stop_pid "$pid"; done
    done
}

# ---- dht over TLS ----------------------------------------------------------------------------

# setup_redis_tls: redis-server with a plain port (for the prefill) and a TLS port (measured).
# shellcheck disable=SC2031
setup_redis_tls() {
    local tls_port certs="$tmp/tls"
    tls_port=$(free_port)
    start_redis none --tls-port "$tls_port" --tls-cert-file "$certs/node.pem" \
        --tls-key-file "$certs/node-key.pem" --tls-ca-cert-file "$certs/ca.pem" \
        --tls-auth-clients no || return 1
    if ! wait_own_listen "$tls_port" "$srv_pid"; then
        row_error "redis-server does not listen with TLS on 127.0.0.1:$tls_port: $(last_words "$tmp/srv/redis.log")"
        return 1
    fi
    redis_pid=$srv_pid; redis_port=$tls_port
    prefill redis "$srv_addr" "$keyspace"
    step_vars+=(redis_pid redis_port)
}

# setup_dht_tls: dhtnode with [tls], filled over TLS.
# shellcheck disable=SC2031
setup_dht_tls() {
    local certs="$tmp/tls"
    start_dhtnode "$tmp/dht" "$(printf '[dht]\ndurability = "none"\n[tls]\ncert_file = "%s"\nkey_file = "%s"' \
        "$certs/node.pem" "$certs/node-key.pem")" || return 1
    dht_pid=$srv_pid; dht_port=$srv_port
    timeout 900 "${client_run[@]}" "$loadgen" --kind dht --addr "$srv_addr" \
        --tls-ca "$certs/ca.pem" -c "$connections" -d "$value_size" --prefill "$keyspace" \
        --count 0 > "$out/prefill-dht-tls.txt" 2>&1 ||
        row_error "prefill of dht over TLS failed: $(tail -n 1 "$out/prefill-dht-tls.txt")"
    step_vars+=(dht_pid dht_port)
}

# bench_dht_tls: dht put/get P=16 over TLS vs redis-server --tls-port (redis-benchmark --tls),
# one run each, both serving the same certificate.
bench_dht_tls() {
    command -v openssl >/dev/null || { echo "dht-tls needs openssl" >&2; exit 1; }
    make_tls_certs "$tmp/tls"
    log "dht over TLS: starting and filling redis-server (--tls-port) and dhtnode ([tls])"
    run_step "$out/setup-redis-tls" setup_redis_tls
    redis_ok=$step_ok; redis_reason="redis-server: $step_reason"
    run_step "$out/setup-dht-tls" setup_dht_tls
    dht_ok=$step_ok; dht_reason="dhtnode: $step_reason"
    local op test cell desc
    for op in put get; do
        test=$([ "$op" = put ] && echo set || echo get)
        cell="$out/dht-tls-p16-$op"
        rm -f "$cell".*.runs "$cell".*.failed
        log "dht over TLS P=16 $op: redis-benchmark --tls, then loadgen --tls-ca on dhtnode"
        rb_extra=(--tls --cacert "$tmp/tls/ca.pem")
        measure "$cell.rb" redis run_redis_benchmark "$cell.rb" "$test" 16
        rb_extra=()
        measure "$cell.ours" dht run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" "$op" 16 \
            --tls-ca "$tmp/tls/ca.pem"
        desc="$([ "$op" = put ] && echo "dht put vs Redis SET" || echo "dht get vs Redis GET") over TLS, pipelined P=16, $connections conns"
        run_row "$desc" "$cell.ours" "$cell.rb" -- compare_row "$desc" 1.5 "$cell.rb" "$cell.ours" \
            "redis-benchmark --tls / loadgen --tls-ca" "(one run)"
    done
    for pid in ${redis_pid:-} ${dht_pid:-}; do stop_pid "$pid"; done
}

# ---- dht with replication -------------------------------------------------------------------

# setup_redis_replicated: a Redis primary and a replica attached to it (`--replicaof`), both
# without persistence, the link up; sets redis_pid/redis_port (the primary, which is measured)
# and redis_replica_pid.
# shellcheck disable=SC2031
setup_redis_replicated() {
    # Without it the primary drops a replica whose output buffer passes 256 MB (Redis's default
    # for replicas): at this rate that happens within seconds, the rest of the run has no replica
    # and the full resync that follows runs during the next measurement.
    start_redis none --client-output-buffer-limit "replica 0 0 0" || return 1
    redis_pid=$srv_pid; redis_port=$srv_port
    rm -rf "$tmp/srv-replica"; mkdir -p "$tmp/srv-replica"
    start_on_free_port redis-replica "$tmp/srv-replica" redis-server --port '{port}' \
        --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp/srv-replica" \
        --logfile "$tmp/srv-replica/redis.log" --daemonize no \
        --replicaof 127.0.0.1 "$redis_port" || return 1
    redis_replica_pid=$srv_pid; redis_replica_port=$srv_port
    local deadline=$((SECONDS + 30))
    until redis-cli -p "$srv_port" info replication | grep -q 'master_link_status:up'; do
        [ "$SECONDS" -lt "$deadline" ] || { row_error "the Redis replica did not link to its primary"; return 1; }
        sleep 0.1
    done
    step_vars+=(redis_pid redis_port redis_replica_pid redis_replica_port)
}

# setup_dht_replicated: two dhtnodes with the same (whole) range, no change log; sets dht_pid and
# dht_port (the first, measured for CPU), dht_replica_pid and dht_replica_port.
# shellcheck disable=SC2031
setup_dht_replicated() {
    start_dhtnode "$tmp/dht-replica" "$no_change_log" || return 1
    dht_replica_pid=$srv_pid; dht_replica_port=$srv_port
    start_dhtnode "$tmp/dht" "$no_change_log" || return 1
    dht_pid=$srv_pid; dht_port=$srv_port
    step_vars+=(dht_pid dht_port dht_replica_pid dht_replica_port)
}

# bench_dht_repl: dht put P=16 to a replica set of two against SET on a Redis with one replica.
# shellcheck disable=SC2034
bench_dht_repl() {
    local ours_ops=0
    log "dht with replication: a Redis primary with one replica, and a replica set of two dhtnodes"
    redis_pid=""; redis_replica_pid=""; dht_pid=""; dht_replica_pid=""
    run_step "$out/setup-redis-repl" setup_redis_replicated
    redis_ok=$step_ok; redis_reason="redis-server with a replica: $step_reason"
    run_step "$out/setup-dht-repl" setup_dht_replicated
    dht_ok=$step_ok; dht_reason="dhtnode replica set: $step_reason"
    local cell="$out/dht-repl-p16-put" desc
    rm -f "$cell".*.runs "$cell".*.failed "$cell".*.waited
    log "dht with replication P=16 put: redis-benchmark on the primary, its replica's catch-up, then loadgen --replica"
    measure "$cell.rb" redis run_redis_replicated "$cell"
    # The Redis pair goes before ours runs: nothing of it may share core 0 with our members.
    for pid in ${redis_pid:-} ${redis_replica_pid:-}; do stop_pid "$pid"; done
    measure "$cell.ours" dht run_loadgen "$cell.ours" dht "$dht_port" "$dht_pid" put 16 \
        --replica "127.0.0.1:${dht_replica_port:-0}"
    if have_runs "$cell.ours"; then ours_ops=$(median_field "$cell.ours" 1); fi
    desc="dht put to a replica set of 2 (write_quorum 2) vs SET on Redis with one replica, on both copies, pipelined P=16, $connections conns"
    run_row "$desc" "$cell.ours" "$cell.rbboth" -- compare_row "$desc" 1.5 "$cell.rbboth" \
        "$cell.ours" "redis-benchmark + the replica's catch-up / loadgen --replica" \
        "$(cross_check "$cell.rb" "$ours_ops" "SET acknowledged by the primary (before its replica has it):")$(
            [ ! -s "$cell.rbboth.waited" ] || echo "; its replica held every SET $(tail -n 1 "$cell.rbboth.waited") s after the benchmark ended")"
    for pid in ${dht_pid:-} ${dht_replica_pid:-}; do stop_pid "$pid"; done
}

# redis_offset PORT FIELD: FIELD (master_repl_offset or slave_repl_offset) of `info replication`.
redis_offset() {
    redis-cli -p "$1" info replication | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

# run_redis_replicated CELL: redis-benchmark SET P=16 on the primary (CELL.rb.runs: what its
# clients saw), then the wait until the replica holds every SET; appends to CELL.rbboth.runs the
# rate at which SETs reached both copies: the SETs over the benchmark's time plus that wait (the
# primary's p99 and CPU shares as measured; the wait in CELL.rbboth.waited, seconds). Fails if
# the primary dropped its replica.
run_redis_replicated() {
    local cell=$1 primary replica started waited
    run_redis_benchmark "$cell.rb" set 16
    started=$(date +%s.%N)
    primary=$(redis_offset "$redis_port" master_repl_offset)
    for _ in $(seq 1200); do
        replica=$(redis_offset "$redis_replica_port" slave_repl_offset)
        [ "${replica:-0}" -lt "$primary" ] || break
        sleep 0.05
    done
    [ "${replica:-0}" -ge "$primary" ] ||
        row_error "the Redis replica is at offset ${replica:-?} of $primary after 60 s"
    waited=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
    if grep -q 'overcoming of output buffer limits\|Connection with replica .* lost' "$tmp/srv/redis.log"; then
        row_error "the Redis primary dropped its replica during the run: $(last_words "$tmp/srv/redis.log")"
    fi
    echo "$waited" >> "$cell.rbboth.waited"
    awk -v sets="$rb_requests" -v waited="$waited" '{
        printf "%.0f %s %s %s\n", sets / (sets / $1 + waited), $2, $3, $4 }' \
        "$cell.rb.line" >> "$cell.rbboth.runs"
}

# ---- logfiles --------------------------------------------------------------------------------

# logfiles_run PREFIX SERVER DURABILITY: one P=16 Put run against a fresh server.
logfiles_run() {
    if [ "$2" = redis ]; then
        start_redis none
        run_put "$1" redis-xadd 16
    else
        start_logfiles "$3" "$tmp/srv/data"
        run_put "$1" logfiles 16
    fi
    stop_srv
}

logfiles_row() {
    local durability=$1 base="$out/logfiles-p16-redis-none" cell="$out/logfiles-p16-logfiles-$1"
    # shellcheck disable=SC2046
    set -- $(median "$base") $(median "$cell")
    awk -v d="$durability" -v c="$connections" -v rb="$1" -v rbp="$2" -v o="$5" -v op99="$6" \
        -v t="$target_logfiles" 'BEGIN {
        r = o / rb;
        printf "| logfiles put (fsync = %s) vs XADD without persistence, pipelined P=16, %d conns | %d | %d | **%.2f×** %s | ≥ %s× | %d | %d | %s | loadgen (XADD) / loadgen | (same generator) |\n",
            d, c, rb, o, r, (r >= t ? "✓" : "✗"), t, rbp, op99, (op99 <= rbp ? "✓" : "✗")
    }' >> "$rows_file"
    echo "| logfiles P=16 put, fsync $durability | | loadgen $3, Redis $4 | | loadgen $7, logfilesnode $8 | – / $(spread "$base") / – / $(spread "$cell") |" >> "$cpu_file"
}

bench_logfiles() {
    local systems=(redis:none logfiles:none logfiles:interval) order r i system server durability
    rm -f "$out"/logfiles-p16-*.runs "$out"/logfiles-p16-*.failed
    for r in $(seq "$repeat"); do
        order=("${systems[@]}")
        if [ $((r % 2)) -eq 0 ]; then
            order=(); for ((i = ${#systems[@]} - 1; i >= 0; i--)); do order+=("${systems[$i]}"); done
        fi
        for system in "${order[@]}"; do
            IFS=: read -r server durability <<< "$system"
            log "logfiles P=16: $server ($durability), run $r of $repeat"
            run_step "$out/logfiles-p16-$server-$durability" \
                logfiles_run "$out/logfiles-p16-$server-$durability" "$server" "$durability"
        done
    done
    for durability in none interval; do
        run_row "logfiles put (fsync = $durability) vs XADD, pipelined P=16" \
            "$out/logfiles-p16-redis-none" "$out/logfiles-p16-logfiles-$durability" -- \
            logfiles_row "$durability"
    done
}

# ---- queue -----------------------------------------------------------------------------------

queue_row() {
    local q="$out/queue" op=$1 name=$2
    # shellcheck disable=SC2046
    set -- $(median "$q/redis-$op") $(median "$q/queue-$op")
    awk -v op="$op" -v name="$name" -v c="$connections" -v rb="$1" -v rbp="$2" -v o="$4" \
        -v op99="$5" -v t="$target_queue" 'BEGIN {
        r = o / rb;
        printf "| queue %s vs %s, pipelined P=16, %d conns | %d | %d | **%.2f×** %s | ≥ %s× | %d | %d | %s | redis-benchmark / queue_load | |\n",
            op, name, c, rb, o, r, (r >= t ? "✓" : "✗"), t, rbp, op99, (op99 <= rbp ? "✓" : "✗")
    }' >> "$rows_file"
    echo "| queue P=16 $op | Redis $3 µs/op | | | queuenode $6 µs/op | $(spread "$q/redis-$op") / – / – / $(spread "$q/queue-$op") |" >> "$cpu_file"
}

queue_consume_row() {
    # shellcheck disable=SC2046
    set -- $(median "$out/queue/queue-consume")
    echo "| queue consume, 1 stream, batches acknowledged (ours only, for reference) | | $1 records/s | | | | | | queue_load | |" >> "$rows_file"
    echo "| queue consume | | | | queuenode $3 µs/record | – / – / – / $(spread "$out/queue/queue-consume") |" >> "$cpu_file"
}

# queue_cycle SIDE R: one cycle (queue_cycle_redis or queue_cycle_ours) as a step; a failure is
# recorded for every row of that side.
queue_cycle() {
    local q="$out/queue" name
    mkdir -p "$q"
    run_step - "queue_cycle_$1" "$2" "$queue_count"
    if [ "$step_ok" -eq 0 ]; then
        for name in push pop consume; do echo "$1 run $2: $step_reason" >> "$q/${1/ours/queue}-$name.failed"; done
    fi
}

bench_queue() {
    local r
    rm -rf "$out/queue"
    for r in $(seq "$repeat"); do
        if [ $((r % 2)) -eq 1 ]; then
            log "queue: run $r of $repeat: redis-server, then queuenode ($queue_count requests per run)"
            queue_cycle redis "$r"; queue_cycle ours "$r"
        else
            log "queue: run $r of $repeat: queuenode, then redis-server ($queue_count requests per run)"
            queue_cycle ours "$r"; queue_cycle redis "$r"
        fi
    done
    local q="$out/queue"
    run_row "queue push vs LPUSH, pipelined P=16" "$q/redis-push" "$q/queue-push" -- queue_row push LPUSH
    run_row "queue pop vs RPOP, pipelined P=16" "$q/redis-pop" "$q/queue-pop" -- queue_row pop RPOP
    run_row "queue consume (ours only)" "$q/queue-consume" -- queue_consume_row
}

# (`if`, not `&&`: a function called in a condition would run without errexit.)
if [ "$do_dht" -eq 1 ]; then bench_dht; fi
if [ "$do_dht_log" -eq 1 ]; then bench_dht_log; fi
if [ "$do_dht_tls" -eq 1 ]; then bench_dht_tls; fi
if [ "$do_dht_repl" -eq 1 ]; then bench_dht_repl; fi
if [ "$do_logfiles" -eq 1 ]; then bench_logfiles; fi
if [ "$do_queue" -eq 1 ]; then bench_queue; fi

# ---- the table -------------------------------------------------------------------------------
table="$out/table.md"
{
    echo "| operation (100-byte values) | peer ops/s | ours ops/s | ratio | target | peer p99 µs | our p99 µs | p99 ≤ peer | generators: peer / ours | cross-check: the peer by another generator, ops/s (p99 µs), ours / it |"
    echo "|---|---:|---:|---:|---:|---:|---:|:-:|---|---|"
    cat "$rows_file"
} > "$table"
{
    echo
    echo "### Where the CPU went (median runs) and the spread of the runs"
    echo
    echo "Shares of one core over the run, generator / server (dht, logfiles), or server CPU µs per operation (queue)."
    echo
    echo "| run | redis-benchmark on Redis | loadgen on Redis | loadgen on memcached | loadgen on ours | ops/s min–max: redis-benchmark / loadgen on Redis / on memcached / on ours |"
    echo "|---|---|---|---|---|---|"
    cat "$cpu_file"
} > "$out/cpu.md"

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$info_file"
echo
cat "$info_file"
echo
echo "Command: scripts/bench-vs-redis.sh $([ "$records" -eq 10000000 ] && echo --full || echo "--records $records") --seconds $seconds --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt') --keyspace $keyspace --queue-count $queue_count --only $only$([ "$memcached" -eq 0 ] && echo ' --no-memcached')${bin_given:+ --bin-dir $bin_given}$([ -n "$nodes_dir" ] && echo " --nodes $nodes_dir")"
echo
cat "$table"
cat "$out/cpu.md"
echo
echo "Ratios use the median run of $repeat by ops/s. dht: the cross-check column divides ours by"
echo "Redis driven by our loadgen, and by memcached driven by memcslap. logfiles: loadgen drives"
echo "both (XADD bench * key:N <value>)."
echo "Raw results: $out"
finish_rows
