# shellcheck shell=bash disable=SC2154
# Shared helpers of the benchmark scripts (scripts/bench-vs-redis.sh, bench-scaling.sh,
# bench-logfiles.sh, bench-logfiles-scan.sh, bench-logfiles-ab.sh, bench-dht-ab.sh,
# bench-queue.sh, bench-metrics.sh, bench-tls-instructions.sh, bench-queue-instructions.sh,
# bench-tls-flood.sh, bench-shutdown.sh, bench-dump-latency.sh, bench-log-replay.sh,
# bench-queue-ab.sh). Source it; it defines functions and constants only (clk_tck,
# dht_node_env).
#
# The functions read these globals of the sourcing script:
#   rt                  1 = servers and generators run SCHED_FIFO (see bench_sched)
#   tmp, out            scratch directory of the run, and where results go (bench_workdir)
#   seconds             length of a timed loadgen run
#   connections         client connections (50)
#   value_size          value bytes (100)
#   loadgen, dhtnode, logfilesnode, queuenode, queue_load   paths of the release binaries
#   rows_file           the table's rows (run_row, failed_row)
# and set: server_run / client_run (command prefixes: taskset, chrt), keep_tmp,
# srv_pid / srv_addr / srv_port (the server that the last start_* started), failed_rows; and for
# the scripts of one node (scratch_dir, launch_node, release_bins): work, node_pid, node_addr,
# bin.
#
# Result lines: every runner appends one line "ops_per_s p99_us X Y" to PREFIX.runs;
# `median PREFIX` and `spread PREFIX` summarise them.
#
# Surviving a busy machine (issue 22):
#   - Ports. Our nodes listen on port 0 (the kernel picks a free port; the address is read from
#     their root.log), so they cannot collide. Redis and memcached get a port free_port picked;
#     one that another process takes before the server binds it is retried with another port
#     (start_on_free_port), and a port only counts once this very process listens on it.
#   - Failures. A measurement runs as a step (run_step: a subshell with errexit); when it fails,
#     its reason goes to PREFIX.failed, the processes it started are stopped, and the script
#     goes on. A row whose measurements have no runs says "FAILED: <reason>" (failed_row), and
#     the rows already measured stay in the table. The script exits 1 at the end if a row failed.

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

# need_packages COMMAND:PACKAGE...: installs (apt-get, needs root) the Debian package of every
# COMMAND that is missing.
need_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
    log "installing ${missing[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
}

# need_redis: installs redis-server, redis-tools and jq with apt-get when missing (needs root),
# then checks the other tools every script uses and that there are two cores.
need_redis() {
    need_packages redis-server:redis-server redis-benchmark:redis-tools redis-cli:redis-tools \
        jq:jq
    local tool
    for tool in taskset timeout ss awk $([ "$rt" -eq 1 ] && echo chrt); do
        command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
    done
    [ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (server on 0, load on 1)" >&2; exit 1; }
}

# need_memcached: memcached and memcslap (libmemcached-tools), installed when missing.
need_memcached() { need_packages memcached:memcached memcslap:libmemcached-tools; }

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
    : > "$tmp/pids"
    srv_pid=""
    failed_rows=0
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    kill_tracked
    if [ "$keep_tmp" -eq 1 ]; then
        find "$tmp" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} +
    else
        rm -rf "$tmp"
    fi
}

# ---- processes -------------------------------------------------------------------------------

# The start time of a process (clock ticks since boot, /proc/PID/stat field 22): with the pid,
# it names the process, so that a number reused by an unrelated process is never killed.
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
# alive PID: the process exists and is not a zombie.
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}')
    [ -n "$state" ] && [ "$state" != Z ]
}

# track_pid PID: remembers a process this run started ($tmp/pids: "PID START" lines), for
# kill_tracked and the exit trap. Steps run in subshells, so the list is a file.
track_pid() { echo "$1 $(proc_start "$1")" >> "$tmp/pids"; }

# stop_pid PID: SIGKILL, then waits (30 s at most) until the process is gone, so that its memory
# is free for the next server; forgets it.
stop_pid() {
    local _
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for _ in $(seq 300); do alive "$1" || break; sleep 0.1; done
    sed -i "/^$1 /d" "$tmp/pids"
}

# kill_tracked [KEEP...]: stops every tracked process but the pids KEEP that is still the
# process that was started.
kill_tracked() {
    local pid start
    while read -r pid start; do
        [[ " $* " != *" $pid "* ]] || continue
        if [ -n "$start" ] && [ "$(proc_start "$pid")" = "$start" ]; then stop_pid "$pid"; fi
    done < <(cat "$tmp/pids")
}

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htln "( sport = :$port )")" ]; then echo "$port"; return; fi
    done
}

# listens PORT PID: whether process PID itself listens on TCP port PORT.
listens() { ss -Htlnp "( sport = :$1 )" | grep -q "pid=$2,"; }

# wait_own_listen PORT PID: waits until process PID listens on PORT (listen_timeout_s, default
# 30 s); fails if it dies or the time runs out.
wait_own_listen() {
    local deadline=$((SECONDS + ${listen_timeout_s:-30}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        listens "$1" "$2" && return 0
        alive "$2" || return 1
        sleep 0.1
    done
    return 1
}

# last_words FILE...: what a server's logs say about a failure, on one line: their last lines
# that name an error, else their last lines.
last_words() {
    local words
    words=$(grep -hiE 'error|cannot|fail|denied|in use|refus|invalid' "$@" 2>/dev/null | tail -n 2 || true)
    [ -n "$words" ] || words=$(tail -q -n 3 "$@" 2>/dev/null || true)
    printf '%s' "$words" | tr '\n' ' ' | cut -c1-300
}

# start_on_free_port NAME DIR CMD...: starts CMD on core 0, every "{port}" in its arguments
# replaced by a port free_port picked, its output in DIR/NAME.console, and waits until this very
# process listens on 127.0.0.1:PORT. Between free_port's look and the server's bind another
# process may take the port: the server then exits with "Address already in use" (in its
# console or in a DIR/*.log it writes), and it is started again on another port, up to
# port_attempts times (default 5). Sets srv_pid, srv_port, srv_addr; anything else that keeps
# the server from listening fails the step with its last words.
start_on_free_port() {
    local name=$1 dir=$2 attempt port
    shift 2
    for attempt in $(seq "${port_attempts:-5}"); do
        port=$(free_port)
        rm -f "$dir/$name.console" "$dir"/*.log
        "${server_run[@]}" "${@//\{port\}/$port}" > "$dir/$name.console" 2>&1 &
        srv_pid=$!
        track_pid "$srv_pid"
        if wait_own_listen "$port" "$srv_pid"; then
            srv_port=$port
            srv_addr=127.0.0.1:$port
            return 0
        fi
        stop_pid "$srv_pid"
        if ! grep -qsi 'address already in use' "$dir/$name.console" "$dir"/*.log; then
            row_error "$name does not listen on 127.0.0.1:$port: $(last_words "$dir/$name.console" "$dir"/*.log)"
            return 1
        fi
        log "$name: port $port was taken before it could bind it (attempt $attempt), trying another"
    done
    row_error "$name: ${port_attempts:-5} ports in a row were taken"
}

# logged_addr LOG PID [SKIP]: waits (listen_timeout_s, default 30 s) for our node's "listening on
# ADDR" line in LOG after its first SKIP lines (default 0; a node started again on the same logs
# skips the lines of its previous run) and prints ADDR; fails if PID dies first.
logged_addr() {
    local addr deadline=$((SECONDS + ${listen_timeout_s:-30}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        addr=$(tail -n +"$((${3:-0} + 1))" "$1" 2>/dev/null | grep -o 'listening on [0-9.]*:[0-9]*' |
            head -1 | cut -d' ' -f3 || true)
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        alive "$2" || return 1
        sleep 0.05
    done
    return 1
}

# ---- scripts of one node (no rows, no steps) ---------------------------------------------------

# scratch_dir NAME: work=/tmp/NAME.XXXXXX, and an exit trap that kills the node launch_node
# started (node_pid) and deletes the directory, unless KEEP=1 (then it is kept, and named).
scratch_dir() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    node_pid=""
    trap scratch_cleanup EXIT
}
scratch_cleanup() {
    if [ -n "${node_pid:-}" ]; then
        kill -9 "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

# release_bins DIR CARGO_BUILD_ARGS...: bin=DIR when DIR is given (copies of an earlier build, to
# compare two commits without rebuilding either), else a release build of CARGO_BUILD_ARGS and
# bin=target/release (run from the repository's root).
# shellcheck disable=SC2034 # bin is the caller's
release_bins() {
    if [ -n "$1" ]; then bin=$1; return 0; fi
    shift
    cargo build --release -q "$@"
    bin=target/release
}

# seconds_since T: the seconds (3 decimals) from T (`date +%s.%N`) until now.
seconds_since() { awk -v t="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", now - t }'; }

# callgrind_summary FILE: the instruction count of a callgrind dump.
callgrind_summary() { awk '/^summary:/ { print $2 }' "$1"; }

# ---- A/B runs of builds of one node (bench-dht-ab.sh, bench-logfiles-ab.sh, bench-queue-ab.sh) ----

# ab_defaults: the settings every A/B script shares, at their defaults.
# shellcheck disable=SC2034 # the caller's
ab_defaults() {
    seconds=5
    rounds=3
    rt=0
    depths="1 16"
    out=""
    connections=50
    value_size=100
    variants=()
}

# ab_option ARGS...: takes the first of ARGS if it is an option every A/B script shares
# (--seconds S, --rounds R, --rt, --depths "P...", --out DIR, -h/--help) or a variant
# LABEL=BIN_DIR[,VAR=VALUE...]; sets ab_shift to the words it took (0: an option of the script's
# own, or an unknown one).
# shellcheck disable=SC2034 # the caller's
ab_option() {
    ab_shift=1
    case "$1" in
        --seconds) need_value "$1" $#; seconds="$2"; ab_shift=2 ;;
        --rounds) need_value "$1" $#; rounds="$2"; ab_shift=2 ;;
        --rt) rt=1 ;;
        --depths) need_value "$1" $#; depths="$2"; ab_shift=2 ;;
        --out) need_value "$1" $#; out="$2"; ab_shift=2 ;;
        -h|--help) usage ;;
        -*) ab_shift=0 ;;
        *=*) variants+=("$1") ;;
        *) echo "a variant is LABEL=BIN_DIR[,VAR=VALUE...]: '$1'" >&2; exit 2 ;;
    esac
}

# ab_parse ARGS...: reads the command line: the shared options and the variants (ab_option),
# the script's own options through its function `own_option OPTION [VALUE...]` (which sets one,
# taking OPTION and one value, or exits naming an unknown one); exits 2 unless the shared
# settings are sane and a variant was given.
ab_parse() {
    local p
    while [ $# -gt 0 ]; do
        ab_option "$@"
        if [ "$ab_shift" -eq 0 ]; then
            own_option "$@"
            ab_shift=2
        fi
        shift "$ab_shift"
    done
    positive_numbers "$seconds" "$rounds"
    [ ${#variants[@]} -ge 1 ] || { echo "no variant given" >&2; usage; }
    for p in $depths; do positive_numbers "$p"; done
}

# ab_variant SPEC: reads a variant LABEL=BIN_DIR[,VAR=VALUE...] (BIN_DIR `.` is target/release)
# into ab_label, ab_dir and ab_envs (the node's environment).
# shellcheck disable=SC2034 # the caller's
ab_variant() {
    ab_label=${1%%=*}
    local spec=${1#*=}
    ab_dir=${spec%%,*}
    [ "$ab_dir" = . ] && ab_dir="$root/target/release"
    ab_envs=()
    if [[ "$spec" == *,* ]]; then IFS=, read -r -a ab_envs <<< "${spec#*,}"; fi
}

# ab_check_variants BIN...: checks every variant of the array `variants` (its label, and that its
# BIN_DIR holds every BIN; exit 2 or 1 naming what is wrong); sets the array `labels`.
ab_check_variants() {
    local variant bin names
    names=$(printf '%s and ' "$@")
    labels=()
    for variant in "${variants[@]}"; do
        ab_variant "$variant"
        [[ "$ab_label" =~ ^[A-Za-z0-9_.+-]+$ ]] || { echo "label '$ab_label': letters, digits, _ . + - only" >&2; exit 2; }
        for bin in "$@"; do
            [ -x "$ab_dir/$bin" ] || { echo "$ab_dir: no ${names% and }" >&2; exit 1; }
        done
        labels+=("$ab_label")
    done
}

# ab_rounds ROUNDS FUNC: runs `FUNC VARIANT` for every variant, ROUNDS times, the order reversed
# every other round (A B, B A, ...), so that drift on a shared machine favours neither.
ab_rounds() {
    local round i order
    for ((round = 1; round <= $1; round++)); do
        order=("${variants[@]}")
        if [ $((round % 2)) -eq 0 ]; then
            order=()
            for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[$i]}"); done
        fi
        log "round $round of $1"
        for i in "${order[@]}"; do "$2" "$i"; done
    done
}

# ab_start COMMAND ARGS...: runs COMMAND (a start_* function) with the last ab_variant's
# environment (ab_envs) in front of the server's command only.
ab_start() {
    local base_run=("${server_run[@]}")
    server_run=(env "${ab_envs[@]}" "${base_run[@]}")
    "$@"
    server_run=("${base_run[@]}")
}

# ab_medians PREFIX: "median ops/s | median p99 µs" of PREFIX.runs.
ab_medians() {
    local med p99
    med=$(sort -n "$1.runs" | awk '{ops[NR] = $1} END {print ops[int((NR + 1) / 2)]}')
    p99=$(sort -n -k2 "$1.runs" | awk '{v[NR] = $2} END {print v[int((NR + 1) / 2)]}')
    echo "$med | $p99"
}

# ---- steps and rows that survive a failure ----------------------------------------------------

# row_error MESSAGE: the reason the current step fails (the first one given is kept); prints it
# and returns 1, which ends the step (errexit; functions that may run in a condition, where
# errexit is off, return after it themselves).
row_error() {
    echo "$*" >&2
    if [ -n "${tmp:-}" ] && [ ! -s "$tmp/step.reason" ]; then
        printf '%s\n' "$*" > "$tmp/step.reason"
    fi
    return 1
}

# The ERR trap of a step: the command that failed, unless row_error gave a reason. Only the
# step's own shell writes it (not command substitutions, whose failures may be handled).
step_trap_err() {
    [ "$BASHPID" = "$step_shell" ] || return 0
    [ ! -s "$tmp/step.reason" ] || return 0
    local what="'${2:0:160}'"
    case "$1" in
        124) echo "timed out: $what" ;;
        137) echo "killed: $what" ;;
        *) echo "$what exited $1" ;;
    esac > "$tmp/step.reason"
}

# run_step PREFIX CMD...: runs CMD in a subshell with errexit and goes on whatever happens.
# On success step_ok=1, and the variables CMD listed in step_vars (e.g. a server's pid and
# address) are set here too. On failure step_ok=0, step_reason says why (also appended to
# PREFIX.failed unless PREFIX is "-"), and the processes CMD started are stopped. An interrupt
# (status 130) ends the script. Never call it inside a condition (if, while, &&, ||): bash
# ignores errexit there, even in a subshell.
run_step() {
    local prefix=$1 status=0 pids_before
    shift
    pids_before=$(cut -d' ' -f1 "$tmp/pids" | tr '\n' ' ')
    : > "$tmp/step.reason"
    : > "$tmp/step.vars"
    set +e
    (
        set -eE
        step_shell=$BASHPID
        trap 'step_trap_err $? "$BASH_COMMAND"' ERR
        trap 'exit 130' INT TERM
        step_vars=()
        "$@"
        for var in "${step_vars[@]}"; do printf '%s=%q\n' "$var" "${!var}"; done > "$tmp/step.vars"
    )
    status=$?
    set -e
    [ "$status" -ne 130 ] || exit 130
    if [ "$status" -eq 0 ]; then
        step_ok=1
        step_reason=""
        # shellcheck disable=SC1091
        . "$tmp/step.vars"
        return 0
    fi
    step_ok=0
    step_reason=$(head -n 1 "$tmp/step.reason")
    [ -n "$step_reason" ] || step_reason="exit status $status"
    # shellcheck disable=SC2086
    kill_tracked $pids_before
    if [ "$prefix" != - ]; then echo "$step_reason" >> "$prefix.failed"; fi
    log "FAILED: $step_reason"
}

# have_runs PREFIX...: whether every PREFIX.runs holds a run; if not, missing_reason says why
# (the first failure recorded for it).
have_runs() {
    local prefix
    for prefix in "$@"; do
        [ -s "$prefix.runs" ] && continue
        missing_reason=$(head -n 1 "$prefix.failed" 2>/dev/null || true)
        [ -n "$missing_reason" ] || missing_reason="no run of ${prefix##*/}"
        return 1
    done
}

# failed_row DESCRIPTION REASON: a table row saying the row failed and why.
failed_row() {
    printf '| %s | FAILED: %s |\n' "$1" "$(printf '%s' "$2" | tr '|\n' '/ ')" >> "$rows_file"
    failed_rows=$((failed_rows + 1))
}

# run_row DESCRIPTION PREFIX... -- CMD...: when every PREFIX has runs, CMD (in a step) appends
# the row to rows_file; otherwise, or if CMD fails, the row says FAILED with the reason.
run_row() {
    local desc=$1 prefixes=()
    shift
    while [ "$1" != -- ]; do prefixes+=("$1"); shift; done
    shift
    if ! have_runs "${prefixes[@]}"; then
        failed_row "$desc" "$missing_reason"
        return 0
    fi
    run_step - "$@"
    if [ "$step_ok" -eq 0 ]; then failed_row "$desc" "$step_reason"; fi
}

# runs_note PREFIX R: " (N of R runs)" when a failure left fewer than R runs in PREFIX.runs.
runs_note() {
    local n
    n=$(wc -l < "$1.runs" 2>/dev/null || echo 0)
    if [ "$n" -lt "$2" ]; then echo " ($n of $2 runs)"; fi
}

# finish_rows: the closing word on failed rows; exit status 1 if any.
finish_rows() {
    if [ "$failed_rows" -gt 0 ]; then
        echo "$failed_rows row(s) FAILED (see the table; raw results in $out)" >&2
        return 1
    fi
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
# srv_pid, srv_port, srv_addr. Extra arguments go to redis-server (e.g. --maxclients 10000).
start_redis() {
    local persistence
    case "$1" in
        none) persistence=(--appendonly no) ;;
        *) persistence=(--appendonly yes --appendfsync "$1" --auto-aof-rewrite-percentage 0) ;;
    esac
    shift
    rm -rf "$tmp/srv"; mkdir -p "$tmp/srv"
    start_on_free_port redis-server "$tmp/srv" redis-server --port '{port}' --bind 127.0.0.1 \
        --save '' "${persistence[@]}" --enable-debug-command local --dir "$tmp/srv" \
        --logfile "$tmp/srv/redis.log" --daemonize no "$@"
}

# start_memcached MEGABYTES: a fresh memcached on core 0 with one worker thread (-t 1), at most
# MEGABYTES of items, UDP off; sets srv_pid, srv_port, srv_addr.
start_memcached() {
    local user=()
    # memcached refuses to run as root unless told which user to be.
    if [ "$(id -u)" -eq 0 ]; then user=(-u root); fi
    rm -rf "$tmp/srv"; mkdir -p "$tmp/srv"
    start_on_free_port memcached "$tmp/srv" memcached "${user[@]}" -l 127.0.0.1 -p '{port}' \
        -U 0 -t 1 -m "$1"
}

# launch_node DIR CONFIG_TEXT CMD...: starts one of our nodes, CMD being its binary after any
# prefix (taskset, chrt, valgrind), with DIR/node.toml holding CONFIG_TEXT, its data in DIR/data
# and its logs in DIR/log (kept: a node may be started again on them), on a port the kernel
# picks; its output is appended to DIR/console.log. Sets node_pid (tracked, for the steps'
# cleanup, when the script keeps $tmp/pids), and node_addr from the first "listening on" line
# its root.log gained (logged_addr). On failure says why (row_error) and returns 1.
launch_node() {
    local dir=$1 config=$2 seen=0
    shift 2
    mkdir -p "$dir/data" "$dir/log"
    printf '%s\n' "$config" > "$dir/node.toml"
    if [ -f "$dir/log/root.log" ]; then seen=$(wc -l < "$dir/log/root.log"); fi
    "$@" -c "$dir/node.toml" --listen 127.0.0.1:0 --data-dir "$dir/data" --log-dir "$dir/log" \
        >> "$dir/console.log" 2>&1 &
    node_pid=$!
    if [ -n "${tmp:-}" ] && [ -e "$tmp/pids" ]; then track_pid "$node_pid"; fi
    if ! node_addr=$(logged_addr "$dir/log/root.log" "$node_pid" "$seen"); then
        row_error "$(basename "${*: -1}") did not start: $(last_words "$dir/console.log" "$dir/log/root.log")"
        return 1
    fi
}

# stop_node [SIGNAL]: sends the node launch_node started SIGNAL (default TERM) and waits until
# it is gone.
stop_node() {
    kill "-${1:-TERM}" "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=""
}

# dht_node_env: the environment deploy/systemd/dhtnode@.service gives the node: glibc's malloc
# with its heap in transparent huge pages (docs/operations.md, "Memory: the huge-page heap").
# Benchmarks measure the node as it is deployed; a variant's own environment (bench-dht-ab.sh's
# LABEL=DIR,GLIBC_TUNABLES=) comes later on the command line and wins.
dht_node_env=(env GLIBC_TUNABLES=glibc.malloc.hugetlb=1)

# start_dhtnode DIR [CONFIG_TEXT]: a fresh dhtnode on core 0 (config, data and logs in DIR) on a
# port the kernel picks, in dht_node_env; sets srv_pid, srv_addr, srv_port.
start_dhtnode() {
    rm -rf "$1"
    launch_node "$1" "${2:-}" "${dht_node_env[@]}" "${server_run[@]}" "$dhtnode" || return 1
    srv_pid=$node_pid
    srv_addr=$node_addr
    srv_port=${srv_addr##*:}
}

# start_logfiles none|interval|always DATA_DIR: a logfilesnode on core 0 with that fsync policy
# and every other key at its default; sets srv_pid, srv_addr (from root.log).
start_logfiles() {
    mkdir -p "$tmp/srv/log"
    printf '[logfiles]\nfsync = "%s"\n' "$1" > "$tmp/srv/logfilesnode.toml"
    "${server_run[@]}" "$logfilesnode" -c "$tmp/srv/logfilesnode.toml" --listen 127.0.0.1:0 \
        --data-dir "$2" --log-dir "$tmp/srv/log" > "$tmp/srv/console.log" 2>&1 &
    srv_pid=$!
    track_pid "$srv_pid"
    srv_addr=$(logged_addr "$tmp/srv/log/root.log" "$srv_pid") ||
        row_error "logfilesnode (fsync $1) did not start: $(last_words "$tmp/srv/console.log" "$tmp/srv/log/root.log")"
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
        >console.log 2>&1) &
    srv_pid=$!
    track_pid "$srv_pid"
    srv_addr=$(logged_addr "$tmp/srv/log/root.log" "$srv_pid") ||
        row_error "queuenode did not start: $(last_words "$tmp/srv/console.log" "$tmp/srv/log/root.log")"
}

# ---- runners ---------------------------------------------------------------------------------

# loadgen_run PREFIX KIND ADDR PID OPS P KEYS [CONNS [VALUE [LOADGEN_OPTION...]]]: one timed
# `loadgen` run of $seconds (after 0.5 s of warm-up) from core 1, CONNS connections (default
# $connections) of pipeline depth P, VALUE-byte values (default $value_size); appends
# "ops_per_s p99_us generator_cpu_share server_cpu_share" to PREFIX.runs.
loadgen_run() {
    local file=$1 kind=$2 addr=$3 pid=$4 ops=$5 p=$6 keys=$7 conns=${8:-$connections}
    local value=${9:-$value_size} status=0
    shift $(($# < 9 ? $# : 9))
    timeout $((seconds * 4 + 120)) "${client_run[@]}" "$loadgen" --kind "$kind" --addr "$addr" \
        -c "$conns" -P "$p" -d "$value" --keys "$keys" --ops "$ops" --warmup-s 0.5 \
        --duration-s "$seconds" --server-pid "$pid" --json "$file.json" "$@" > "$file.txt" 2>&1 ||
        status=$?
    if [ "$status" -ne 0 ]; then
        cat "$file.txt" >&2
        row_error "loadgen --kind $kind --ops $ops -P $p -c $conns: exit $status: $(grep -v '^ ' "$file.txt" | tail -n 1)"
    fi
    jq -r '"\(.ops_per_s|round) \(.latency_us.p99|round) \(.loadgen_cpu.utilisation*100|round/100) \(.server.utilisation*100|round/100)"' \
        "$file.json" >> "$file.runs"
}

# loadgen_prefill FILE KIND ADDR N [VALUE]: puts keys 0..N-1 (VALUE bytes, default $value_size)
# into a server with `loadgen --prefill` from core 1, its report in FILE.
loadgen_prefill() {
    local limit_s=$(( $4 / 20000 + 900 ))
    timeout "$limit_s" "${client_run[@]}" "$loadgen" --kind "$2" --addr "$3" -c "$connections" \
        -d "${5:-$value_size}" --prefill "$4" --count 0 --timeout-s "$limit_s" > "$1" 2>&1 ||
        row_error "prefill of $2 with $4 records failed: $(tail -n 1 "$1")"
}

# run_put PREFIX KIND P: one `loadgen --kind KIND` Put run (keys sequential from 0) of $seconds
# against srv_addr; appends "ops_per_s p99_us generator_cpu_share server_cpu_share".
run_put() { loadgen_run "$1" "$2" "$srv_addr" "$srv_pid" put "$3" sequential; }

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

# make_tls_certs DIR: a throwaway CA and a certificate for 127.0.0.1 signed by it (openssl).
make_tls_certs() {
    local dir="$1" ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    mkdir -p "$dir"
    openssl req -x509 "${ec[@]}" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days 2 \
        -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req "${ec[@]}" -keyout "$dir/node-key.pem" -out "$dir/node.csr" -subj "/CN=bench" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
        > "$dir/node.ext"
    openssl x509 -req -in "$dir/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$dir/node.ext" -out "$dir/node.pem" 2>/dev/null
}
