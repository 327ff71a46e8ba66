# shellcheck shell=bash disable=SC2154
# Shared helpers of scripts/bench-vs-redis.sh, scripts/bench-logfiles.sh,
# scripts/bench-logfiles-scan.sh and scripts/bench-queue.sh. Source it; it defines functions only.
#
# The functions read these globals of the sourcing script:
#   rt                  1 = servers and generators run SCHED_FIFO (see bench_sched)
#   tmp, out            scratch directory of the run, and where results go (bench_workdir)
#   seconds             length of a timed loadgen run
#   connections         client connections (50)
#   value_size          value bytes (100)
#   loadgen, logfilesnode, queuenode, queue_load   paths of the release binaries
# and set: server_run / client_run (command prefixes: taskset, chrt), started_pids, keep_tmp,
# srv_pid / srv_addr / srv_port (the one server a single-server run talks to).
#
# Result lines: every runner appends one line "ops_per_s p99_us X Y" to PREFIX.runs;
# `median PREFIX` and `spread PREFIX` summarise them.

log() { printf '== %s\n' "$*" >&2; }

# positive_numbers N...: exits 2 unless every argument is a positive integer.
positive_numbers() {
    local n
    for n in "$@"; do
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: '$n'" >&2; exit 2; }
    done
}

# need_value OPTION ARGC: exits 2 when OPTION has no value after it.
need_value() { [ "$2" -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }; }

# need_redis: installs redis-server, redis-tools and jq with apt-get when missing (needs root),
# then checks the other tools every script uses and that there are two cores.
need_redis() {
    local missing=() tool
    command -v redis-server >/dev/null || missing+=(redis-server)
    if ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
        missing+=(redis-tools)
    fi
    command -v jq >/dev/null || missing+=(jq)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
        log "installing ${missing[*]}"
        timeout 600 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" \
            >/dev/null
    fi
    for tool in taskset timeout ss awk $([ "$rt" -eq 1 ] && echo chrt); do
        command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
    done
    [ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (server on 0, load on 1)" >&2; exit 1; }
}

# bench_sched: servers on core 0, generators on core 1; SCHED_FIFO 10 with --rt.
bench_sched() {
    server_run=(taskset -c 0)
    client_run=(taskset -c 1)
    if [ "$rt" -eq 1 ]; then
        server_run=(chrt -f 10 taskset -c 0)
        client_run=(chrt -f 10 taskset -c 1)
    fi
}

# bench_workdir NAME: makes tmp (/tmp/NAME.XXXXXX) and out (--out, or $tmp/results), and
# installs the exit trap that kills every started process and deletes the servers' data (the
# results stay).
bench_workdir() {
    tmp="$(mktemp -d "/tmp/$1.XXXXXX")"
    keep_tmp=0
    if [ -z "$out" ]; then out="$tmp/results"; keep_tmp=1; fi
    mkdir -p "$out"
    started_pids=()
    srv_pid=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$keep_tmp" -eq 1 ]; then
        find "$tmp" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} +
    else
        rm -rf "$tmp"
    fi
}

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htln "( sport = :$port )")" ]; then echo "$port"; return; fi
    done
}

# wait_listening PORT PID: waits until something listens on 127.0.0.1:PORT (10 s at most, or
# until PID dies).
wait_listening() {
    local _
    for _ in $(seq 100); do
        [ -n "$(ss -Htln "( sport = :$1 )")" ] && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

stop_pid() {
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# stop_srv: stops the single server and deletes its data ($tmp/srv; deleting unsynced files
# also drops their dirty pages, so one run's writeback does not slow the next).
stop_srv() {
    [ -n "$srv_pid" ] && stop_pid "$srv_pid"
    srv_pid=""
    rm -rf "$tmp/srv"
}

# CPU ticks (user + system) of a process, RSS in bytes.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_bytes() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
clk_tck="$(getconf CLK_TCK)"

# The median line of PREFIX.runs by ops/s; `median_field PREFIX N` its Nth field.
median() { sort -n -k1,1 "$1.runs" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
median_field() { median "$1" | awk -v f="$2" '{print $f}'; }
# "min–max" of ops/s over PREFIX.runs.
spread() { sort -n -k1,1 "$1.runs" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%d–%d", lo, hi }'; }

machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores ($(lscpu | awk -F: '/^Hypervisor vendor/ {gsub(/^ +/, "", $2); print $2 " guest"}'))"
    echo "- kernel: $(uname -r); memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; /tmp on $(df -T /tmp | awk 'NR == 2 {print $2 " (" $1 ")"}')"
    if command -v redis-server >/dev/null; then
        echo "- redis-server: $(redis-server --version | awk '{print $3}' | sed 's/v=//')"
    fi
    echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- scheduling: $([ "$rt" -eq 1 ] && echo 'SCHED_FIFO (--rt)' || echo 'normal'); servers on core 0, generators on core 1"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# ---- servers ---------------------------------------------------------------------------------

# start_redis none|everysec|always: a fresh redis-server on core 0 with its data in $tmp/srv
# (no RDB snapshots; AOF with that fsync policy unless none, automatic rewrites off); sets
# srv_pid, srv_port, srv_addr.
start_redis() {
    local persistence
    case "$1" in
        none) persistence=(--appendonly no) ;;
        *) persistence=(--appendonly yes --appendfsync "$1" --auto-aof-rewrite-percentage 0) ;;
    esac
    srv_port="$(free_port)"
    rm -rf "$tmp/srv"; mkdir -p "$tmp/srv"
    "${server_run[@]}" redis-server --port "$srv_port" --bind 127.0.0.1 --save '' \
        "${persistence[@]}" --enable-debug-command local --dir "$tmp/srv" \
        --logfile "$tmp/srv/redis.log" --daemonize no &
    srv_pid=$!
    started_pids+=("$srv_pid")
    srv_addr="127.0.0.1:$srv_port"
    wait_listening "$srv_port" "$srv_pid" || {
        echo "redis-server ($1) does not listen on $srv_addr:" >&2
        tail -5 "$tmp/srv/redis.log" >&2 || true
        return 1
    }
}

# start_logfiles none|interval|always DATA_DIR: a logfilesnode on core 0 with that fsync policy
# and every other key at its default; sets srv_pid, srv_addr (from root.log).
start_logfiles() {
    mkdir -p "$tmp/srv/log"
    printf '[logfiles]\nfsync = "%s"\n' "$1" > "$tmp/srv/logfilesnode.toml"
    "${server_run[@]}" "$logfilesnode" -c "$tmp/srv/logfilesnode.toml" --listen 127.0.0.1:0 \
        --data-dir "$2" --log-dir "$tmp/srv/log" &
    srv_pid=$!
    started_pids+=("$srv_pid")
    local _
    for _ in $(seq 100); do
        srv_addr="$(sed -n 's/.* listening on \([0-9.]*:[0-9]*\).*/\1/p' \
            "$tmp/srv/log/root.log" 2>/dev/null | head -1 || true)"
        [ -n "$srv_addr" ] && return 0
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "logfilesnode (fsync $1) did not start listening:" >&2
    tail -5 "$tmp/srv/log/root.log" >&2 || true
    return 1
}

# start_queuenode COUNT: a queuenode on core 0 (data and logs in $tmp/srv) whose rings hold
# every record of a run of COUNT pushes of $value_size bytes twice over; sets srv_pid, srv_addr.
start_queuenode() {
    local record=$(( (16 + value_size + 7) / 8 * 8 ))
    local ring_bytes=$(( ($1 * record * 2 / 4096 + 1) * 4096 ))
    mkdir -p "$tmp/srv"
    printf '[queue]\nchannel_size_bytes = %d\n[log]\nstats_interval_s = 3600\n' "$ring_bytes" \
        > "$tmp/srv/node.toml"
    (cd "$tmp/srv" && exec "${server_run[@]}" "$queuenode" -c node.toml --listen 127.0.0.1:0 \
        >/dev/null 2>&1) &
    srv_pid=$!
    started_pids+=("$srv_pid")
    local _
    for _ in $(seq 200); do
        srv_addr=$(grep -o 'listening on [0-9.:]*' "$tmp/srv/log/root.log" 2>/dev/null \
            | awk '{print $3}' | head -1 || true)
        [ -n "$srv_addr" ] && return 0
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "queuenode did not start" >&2
    return 1
}

# ---- runners ---------------------------------------------------------------------------------

# run_put PREFIX KIND P: one `loadgen --kind KIND` Put run (keys sequential from 0) of $seconds
# against srv_addr; appends "ops_per_s p99_us generator_cpu_share server_cpu_share".
run_put() {
    local file="$1" kind="$2" p="$3" status=0
    timeout $((seconds * 4 + 120)) "${client_run[@]}" "$loadgen" --kind "$kind" \
        --addr "$srv_addr" -c "$connections" -P "$p" -d "$value_size" --keys sequential \
        --ops put --warmup-s 0.5 --duration-s "$seconds" --server-pid "$srv_pid" \
        --json "$file.json" > "$file.txt" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "loadgen --kind $kind failed ($status):" >&2; cat "$file.txt" >&2; return 1
    fi
    jq -r '"\(.ops_per_s|round) \(.latency_us.p99|round) \(.loadgen_cpu.utilisation*100|round/100) \(.server.utilisation*100|round/100)"' \
        "$file.json" >> "$file.runs"
}

# redis_list_test TEST PREFIX COUNT: one `redis-benchmark -t TEST -P 16` run of COUNT requests
# against srv_addr; appends "ops_per_s p99_us server_cpu_us_per_op".
redis_list_test() {
    local test=$1 file=$2 count=$3 before after line
    before=$(cpu_ticks "$srv_pid")
    line=$(timeout 600 "${client_run[@]}" redis-benchmark -p "$srv_port" -t "$test" -P 16 \
        -c "$connections" -d "$value_size" -n "$count" --csv | tail -n 1)
    after=$(cpu_ticks "$srv_pid")
    echo "$line" | tr -d '"' | awk -F, -v n="$count" -v t="$((after - before))" -v hz="$clk_tck" \
        '{printf "%.0f %.0f %.3f\n", $2, $7 * 1000, t / hz * 1e6 / n}' >> "$file.runs"
}

# queue_load_test MODE PREFIX COUNT: one `queue_load --mode MODE -P 16` run of COUNT requests
# (or records, for consume) against srv_addr; appends "ops_per_s p99_us server_cpu_us_per_op".
queue_load_test() {
    local mode=$1 file=$2 count=$3
    timeout 600 "${client_run[@]}" "$queue_load" --addr "$srv_addr" --mode "$mode" \
        -c "$connections" -P 16 -d "$value_size" --count "$count" --server-pid "$srv_pid" \
        --json "$file.json" >&2
    jq -r --argjson n "$count" \
        '"\(.ops_per_s | floor) \(.p99_us // 0) \(.server_cpu * .seconds * 1e6 / $n)"' \
        "$file.json" | awk '{printf "%s %s %.3f\n", $1, $2, $3}' >> "$file.runs"
}

# queue_cycle_redis TAG COUNT / queue_cycle_ours TAG COUNT: a fresh server, one unmeasured
# push/pop cycle of COUNT (so both are measured with their memory already touched: our ring's
# pages, Redis's allocator arenas), then the measured runs into $out/queue/<name>.runs (runs
# carry TAG only in their JSON file names).
queue_cycle_redis() {
    mkdir -p "$out/queue"
    start_redis none
    redis_list_test lpush "$tmp/warm" "$2"; redis_list_test rpop "$tmp/warm" "$2"
    redis_list_test lpush "$out/queue/redis-push" "$2"
    redis_list_test rpop "$out/queue/redis-pop" "$2"
    stop_srv
}
queue_cycle_ours() {
    mkdir -p "$out/queue/raw"
    start_queuenode "$2"
    queue_load_test push "$tmp/warm" "$2"; queue_load_test pop "$tmp/warm" "$2"
    local name
    for name in push pop refill consume; do
        local mode=$name
        [ "$name" = refill ] && mode=push
        queue_load_test "$mode" "$out/queue/raw/queue-$name.$1" "$2"
        cat "$out/queue/raw/queue-$name.$1.runs" >> "$out/queue/queue-$name.runs"
    done
    stop_srv
}
