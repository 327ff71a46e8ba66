#!/usr/bin/env bash
# A local swarm cluster on loopback: N dht nodes (each with its dhtdump), N logfiles nodes and
# N queue nodes, every process in its own directory under a work directory, with pid files, and
# the topology file that swarmctl and the client read.
#
#   scripts/cluster.sh start [--dht N] [--logfiles N] [--queue N] [--dump-period S] [--base-port P]
#                            [--tls]
#   scripts/cluster.sh status
#   scripts/cluster.sh stop [--timeout S] [NAME...]
#   scripts/cluster.sh restore dhtnode-I
#   scripts/cluster.sh clean
# Options of every command: --dir DIR (the work directory; default $SWARM_CLUSTER_DIR, else
# target/cluster), --bin-dir DIR (the binaries; default $BIN_DIR, else the one the cluster was
# created with, else target/release, built with `cargo build --release` if missing).
# A process that has not started within $CLUSTER_START_WAIT_S seconds (default 30; a dht node
# loading big dumps may need more) fails the command.
#
# start    Creates the cluster on first use (defaults: --dht 2 --logfiles 1 --queue 1), and starts
#          every process that is not running; its counts are fixed from then on (`clean` first to
#          change them). The dht nodes' hash ranges split the hash space evenly. Each node listens
#          on 127.0.0.1, on a port the kernel picks at its first start (or --base-port P: dht
#          nodes P+i, logfiles nodes P+100+i, queue nodes P+200+i) and keeps ever after, so a
#          restarted node is where the topology says. Each dhtdump dumps every --dump-period
#          seconds (default 60); the dht nodes themselves dump only when they stop. Writes
#          DIR/topology.toml:  swarmctl --nodes DIR/topology.toml ping
#          --tls (a new cluster only): every node serves TLS (docs/operations.md, "TLS"). A
#          throwaway CA (made with openssl, valid 30 days) signs one certificate for 127.0.0.1
#          that every node serves, and a client certificate; all in DIR/tls/. The configs, the
#          dhtdumps' and the topology get their [tls] sections.
# status   Each process: state and pid; for each node its kind, address, hash range, channels
#          with their records, records and open connections (not counting status's own), asked
#          through swarmctl; for each dhtdump the age of its newest dump. Then whether the dht
#          ranges tile the hash space, and `swarmctl health`'s verdict on the topology with its
#          problems ($SWARM_HEALTH_ARGS: more options for it, e.g. --min-disk-free-percent 5).
#          Exits 1 unless everything runs and answers and health says healthy.
# stop     SIGTERM to the dhtdumps, then to the nodes (which dump their channels), waiting for each
#          to exit (at most --timeout seconds, default 120), then reports how each ended. NAMEs
#          (dhtnode-0, dhtdump-0, queuenode-1, ...) stop only those. Never sends SIGKILL: a
#          process still running is reported (exit 1).
# restore  Restarts a stopped (or crashed) dht node from its dhtdump's files: its data directory
#          is moved aside to data.before-restore-<time>, the dhtdump's *.dump files are copied into
#          a new one, and the node and its dhtdump are started.
# clean    Removes the work directory (refused while anything in it runs).
#
# Layout of DIR: cluster.env (counts and settings), topology.toml, tls/ (with --tls), and per node
# <kind>-<i>/ with
# etc/config.toml, data/, log/ (root.log, stats.log), console.log (stdout and stderr), pid, addr;
# a dht node's dhtdump lives in dhtnode-<i>/dump/ with the same files except addr.
set -euo pipefail
shopt -s inherit_errexit nullglob

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KINDS=(dhtnode logfilesnode queuenode)
declare -A SECTION=([dhtnode]=dht [logfilesnode]=logfiles [queuenode]=queue)
declare -A PORT_OFFSET=([dhtnode]=0 [logfilesnode]=100 [queuenode]=200)
START_WAIT_S=${CLUSTER_START_WAIT_S:-30}

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}
say() { echo "cluster.sh: $*"; }

usage() {
    sed -n '/^#   scripts/,/^# Layout/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------------
# Arguments.

COMMAND=""
WORK=${SWARM_CLUSTER_DIR:-$REPO/target/cluster}
OPT_BIN_DIR=${BIN_DIR:-}
declare -A WANT=()
DUMP_PERIOD=""
BASE_PORT=""
TIMEOUT=120
TLS=""
NAMES=()
number() {
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1: '$2' is not a number"
    echo "$2"
}
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) need_value "$@"; WORK=$2; shift 2 ;;
    --bin-dir) need_value "$@"; OPT_BIN_DIR=$2; shift 2 ;;
    --dht) need_value "$@"; WANT[dhtnode]=$(number "$1" "$2"); shift 2 ;;
    --logfiles) need_value "$@"; WANT[logfilesnode]=$(number "$1" "$2"); shift 2 ;;
    --queue) need_value "$@"; WANT[queuenode]=$(number "$1" "$2"); shift 2 ;;
    --dump-period) need_value "$@"; DUMP_PERIOD=$(number "$1" "$2"); shift 2 ;;
    --base-port) need_value "$@"; BASE_PORT=$(number "$1" "$2"); shift 2 ;;
    --timeout) need_value "$@"; TIMEOUT=$(number "$1" "$2"); shift 2 ;;
    --tls) TLS=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option '$1' (--help lists them)" ;;
    *)
        if [ -z "$COMMAND" ]; then COMMAND=$1; else NAMES+=("$1"); fi
        shift
        ;;
    esac
done
case "$COMMAND" in
start | status | stop | restore | clean) ;;
"") usage >&2; exit 2 ;;
*) die "unknown command '$COMMAND' (start, status, stop, restore, clean)" ;;
esac
[ "$COMMAND" = stop ] || [ "$COMMAND" = restore ] || [ ${#NAMES[@]} -eq 0 ] ||
    die "$COMMAND takes no names"

# ---------------------------------------------------------------------------------------------
# The work directory and its settings.

ENV_FILE=""
declare -A COUNT=()
load_env() {
    [ -d "$WORK" ] || return 1
    WORK=$(cd "$WORK" && pwd -P)
    ENV_FILE=$WORK/cluster.env
    [ -f "$ENV_FILE" ] || return 1
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
        DHT) COUNT[dhtnode]=$value ;;
        LOGFILES) COUNT[logfilesnode]=$value ;;
        QUEUE) COUNT[queuenode]=$value ;;
        DUMP_PERIOD) SAVED_DUMP_PERIOD=$value ;;
        BASE_PORT) SAVED_BASE_PORT=$value ;;
        BIN_DIR) SAVED_BIN_DIR=$value ;;
        TLS) SAVED_TLS=$value ;;
        esac
    done <"$ENV_FILE"
}
SAVED_DUMP_PERIOD=60
SAVED_BASE_PORT=0
SAVED_BIN_DIR=""
SAVED_TLS=0

write_env() {
    cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/cluster.sh start: the shape of this cluster, fixed at its creation.
DHT=${COUNT[dhtnode]}
LOGFILES=${COUNT[logfilesnode]}
QUEUE=${COUNT[queuenode]}
DUMP_PERIOD=$SAVED_DUMP_PERIOD
BASE_PORT=$SAVED_BASE_PORT
BIN_DIR=$BIN_DIR
TLS=$SAVED_TLS
EOF
    mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

# Sets BIN_DIR: --bin-dir/$BIN_DIR, else the cluster's, else target/release (built if missing).
BINARIES=(dhtnode dhtdump dumptool logfilesnode queuenode swarmctl)
pick_binaries() {
    local build=0 bin
    if [ -n "$OPT_BIN_DIR" ]; then
        BIN_DIR=$OPT_BIN_DIR
    elif [ -n "$SAVED_BIN_DIR" ]; then
        BIN_DIR=$SAVED_BIN_DIR
    else
        BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
        build=1
    fi
    for bin in "${BINARIES[@]}"; do
        [ -x "$BIN_DIR/$bin" ] && continue
        [ "$build" -eq 1 ] || die "no executable $BIN_DIR/$bin"
        say "building release binaries"
        (cd "$REPO" && cargo build --release -p dhtnode -p dhtdump -p logfilesnode -p queuenode -p client --bins)
        break
    done
    for bin in "${BINARIES[@]}"; do
        [ -x "$BIN_DIR/$bin" ] || die "no executable $BIN_DIR/$bin"
    done
    BIN_DIR=$(cd "$BIN_DIR" && pwd -P)
}

node_dir() { echo "$WORK/$1-$2"; }          # KIND I
dump_dir() { echo "$WORK/dhtnode-$1/dump"; } # I

# The process directories, dhtdumps first (the order stop uses): "NAME DIR" lines.
all_procs() {
    local kind i
    for ((i = 0; i < ${COUNT[dhtnode]:-0}; i++)); do echo "dhtdump-$i $(dump_dir "$i")"; done
    for kind in "${KINDS[@]}"; do
        for ((i = 0; i < ${COUNT[$kind]:-0}; i++)); do echo "$kind-$i $(node_dir "$kind" "$i")"; done
    done
}

# ---------------------------------------------------------------------------------------------
# Processes.

# alive PID: the process exists and is not a zombie.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# running_pid DIR: prints the pid of the process recorded in DIR/pid if it still runs, in DIR.
running_pid() {
    local dir=$1 pid cwd
    [ -f "$dir/pid" ] || return 1
    pid=$(<"$dir/pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    if [ -d "/proc/$pid" ]; then
        cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
        [ "$cwd" = "$dir" ] || return 1
    fi
    echo "$pid"
}

# launch DIR BINARY ARGS...: starts BINARY in DIR in the background, detached from this shell's
# stdin/stdout, and records its pid. Remembers where root.log ended, for wait_log.
declare -A LOG_OFFSET=()
launch() {
    local dir=$1
    shift
    mkdir -p "$dir/log"
    LOG_OFFSET[$dir]=$(stat -c %s "$dir/log/root.log" 2>/dev/null || echo 0)
    (cd "$dir" && exec "$@" </dev/null >>"$dir/console.log" 2>&1) &
    echo $! >"$dir/pid"
}

# wait_log DIR REGEX: waits until root.log has, since launch, a line matching REGEX, and prints
# the match; fails (showing the logs) if the process exits or START_WAIT_S pass first.
wait_log() {
    local dir=$1 regex=$2 pid deadline found
    pid=$(<"$dir/pid")
    deadline=$((SECONDS + START_WAIT_S))
    while :; do
        found=$(tail -c +"$((LOG_OFFSET[$dir] + 1))" "$dir/log/root.log" 2>/dev/null | grep -o -m1 -E "$regex" || true)
        if [ -n "$found" ]; then
            echo "$found"
            return 0
        fi
        if ! alive "$pid" || [ $SECONDS -ge $deadline ]; then
            echo "cluster.sh: ${dir#"$WORK"/} (pid $pid) did not start; console.log and root.log:" >&2
            tail -n 20 "$dir/console.log" >&2 2>/dev/null || true
            tail -c +"$((LOG_OFFSET[$dir] + 1))" "$dir/log/root.log" 2>/dev/null | tail -n 20 >&2 || true
            return 1
        fi
        sleep 0.05
    done
}

# dht_range I N -> "MIN MAX": the I-th of N hash ranges that tile the hash space evenly (split on
# the upper 32 bits, so bash's signed 64-bit arithmetic suffices).
dht_range() {
    local i=$1 n=$2 lo hi
    lo=$((i * 4294967296 / n))
    if [ $((i + 1)) -eq "$n" ]; then
        printf '0x%08x00000000 0xffffffffffffffff\n' "$lo"
    else
        hi=$(((i + 1) * 4294967296 / n - 1))
        printf '0x%08x00000000 0x%08xffffffff\n' "$lo" "$hi"
    fi
}

# make_pki: a throwaway CA, one node certificate for 127.0.0.1 (and localhost) that every node
# serves, and a client certificate, in $WORK/tls/ (ECDSA P-256, valid 30 days).
make_pki() {
    local tls=$WORK/tls
    command -v openssl >/dev/null || die "--tls needs openssl (apt-get install openssl)"
    mkdir -p "$tls"
    (
        cd "$tls"
        umask 077
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${ec[@]}" -keyout ca-key.pem -out ca.pem -days 30 \
            -subj "/CN=swarm local cluster CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        local name usage san
        for name in node client; do
            if [ "$name" = node ]; then
                usage=serverAuth,clientAuth san="subjectAltName=IP:127.0.0.1,DNS:localhost"
            else
                usage=clientAuth san="subjectAltName=DNS:swarm-client"
            fi
            openssl req "${ec[@]}" -keyout "$name-key.pem" -out "$name.csr" \
                -subj "/CN=swarm local cluster $name" 2>/dev/null
            printf '%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$san" "$usage" >"$name.ext"
            openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
                -days 30 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
            rm -f "$name.csr" "$name.ext"
        done
    ) || die "openssl could not make the certificates in $tls"
    say "TLS: a throwaway CA and certificates in $tls"
}

# tls_client_section: the [tls] section of a client (topology, dhtdump) of a --tls cluster.
tls_client_section() {
    [ "$SAVED_TLS" -eq 1 ] || return 0
    echo '[tls]'
    echo "ca_file = \"$WORK/tls/ca.pem\""
}

# node_config KIND I: writes the node's etc/config.toml (first start only; later starts keep it,
# with the port it was given). Every other key keeps its default (deploy/config/KIND.toml).
node_config() {
    local kind=$1 i=$2 dir port=0
    dir=$(node_dir "$kind" "$i")
    [ -f "$dir/etc/config.toml" ] && return 0
    mkdir -p "$dir/etc" "$dir/data" "$dir/log"
    [ "$SAVED_BASE_PORT" -eq 0 ] || port=$((SAVED_BASE_PORT + PORT_OFFSET[$kind] + i))
    {
        echo "# $kind-$i of the local cluster in $WORK, written by scripts/cluster.sh."
        echo "# Every key, its default and meaning: deploy/config/$kind.toml."
        echo 'data_dir = "data"'
        echo '[server]'
        echo "# Port 0 until the first start; then the port the node got, kept for every restart."
        echo "listen = \"127.0.0.1:$port\""
        echo '[log]'
        echo 'dir = "log"'
        if [ "$SAVED_TLS" -eq 1 ]; then
            echo '[tls]'
            echo "cert_file = \"$WORK/tls/node.pem\""
            echo "key_file = \"$WORK/tls/node-key.pem\""
            # A redistribution's connections to the other dht nodes go over TLS too.
            [ "$kind" != dhtnode ] || echo "peer_ca_file = \"$WORK/tls/ca.pem\""
        fi
        if [ "$kind" = dhtnode ]; then
            local bounds
            read -r -a bounds <<<"$(dht_range "$i" "${COUNT[dhtnode]}")"
            echo '[dht]'
            echo "range_min = \"${bounds[0]}\""
            echo "range_max = \"${bounds[1]}\""
            echo "# No periodic dumps: dhtdump makes them. The node still dumps when it stops."
            echo 'dump_period_s = 0'
        fi
    } >"$dir/etc/config.toml"
}

dump_config() { # I ADDR: the dhtdump's etc/config.toml (rewritten at every start)
    local dir period=$SAVED_DUMP_PERIOD retry
    dir=$(dump_dir "$1")
    mkdir -p "$dir/etc" "$dir/data" "$dir/log"
    retry=$((period < 30 ? period : 30))
    {
        echo "# dhtdump of dhtnode-$1 of the local cluster in $WORK, written by scripts/cluster.sh."
        echo "# Every key, its default and meaning: deploy/config/dhtdump.toml."
        echo "node = \"$2\""
        echo 'data_dir = "data"'
        echo "period_s = $period"
        echo "min_wait_s = $((period / 10))"
        echo "retry_wait_s = $((retry > 0 ? retry : 1))"
        tls_client_section
        echo '[log]'
        echo 'dir = "log"'
    } >"$dir/etc/config.toml.tmp"
    mv -f "$dir/etc/config.toml.tmp" "$dir/etc/config.toml"
}

write_topology() {
    local kind i first addr
    {
        echo "# The local cluster in $WORK, written by scripts/cluster.sh start."
        echo "# swarmctl --nodes $WORK/topology.toml ping"
        for kind in "${KINDS[@]}"; do
            echo "[${SECTION[$kind]}]"
            printf 'nodes = ['
            first=1
            for ((i = 0; i < ${COUNT[$kind]}; i++)); do
                addr=$(<"$(node_dir "$kind" "$i")/addr")
                [ $first -eq 1 ] || printf ', '
                printf '"%s"' "$addr"
                first=0
            done
            printf ']\n'
        done
        tls_client_section
    } >"$WORK/topology.toml.tmp"
    mv -f "$WORK/topology.toml.tmp" "$WORK/topology.toml"
}

# start_all: starts every process that is not running: nodes first (all at once, then waiting for
# each to listen), then the dhtdumps.
start_all() {
    local kind i dir addr started=() pid
    for kind in "${KINDS[@]}"; do
        for ((i = 0; i < ${COUNT[$kind]}; i++)); do
            dir=$(node_dir "$kind" "$i")
            if pid=$(running_pid "$dir"); then
                continue
            fi
            node_config "$kind" "$i"
            launch "$dir" "$BIN_DIR/$kind" -c etc/config.toml
            started+=("$kind-$i")
        done
    done
    for name in "${started[@]}"; do
        dir=$WORK/$name
        addr=$(wait_log "$dir" 'listening on [^ ]+') ||
            die "$name did not start (what did start keeps running: cluster.sh stop)"
        addr=${addr#listening on }
        echo "$addr" >"$dir/addr"
        # Keep the port the node got for every later start.
        sed -i "s|^listen = \"127\\.0\\.0\\.1:0\"\$|listen = \"$addr\"|" "$dir/etc/config.toml"
        say "started $name (pid $(<"$dir/pid")) on $addr"
    done
    started=()
    for ((i = 0; i < COUNT[dhtnode]; i++)); do
        dir=$(dump_dir "$i")
        running_pid "$dir" >/dev/null && continue
        dump_config "$i" "$(<"$(node_dir dhtnode "$i")/addr")"
        launch "$dir" "$BIN_DIR/dhtdump" -c etc/config.toml
        started+=("$i")
    done
    for i in "${started[@]}"; do
        dir=$(dump_dir "$i")
        wait_log "$dir" 'first dump cycle in [0-9.]+ s' >/dev/null ||
            die "dhtdump-$i did not start (what did start keeps running: cluster.sh stop)"
        say "started dhtdump-$i (pid $(<"$dir/pid")) for dhtnode-$i, every $SAVED_DUMP_PERIOD s"
    done
    write_topology
}

# ---------------------------------------------------------------------------------------------
# Commands.

cmd_start() {
    local kind fresh=0
    if load_env; then
        for kind in "${KINDS[@]}"; do
            if [ -n "${WANT[$kind]:-}" ] && [ "${WANT[$kind]}" != "${COUNT[$kind]}" ]; then
                die "the cluster in $WORK has ${COUNT[$kind]} ${SECTION[$kind]} nodes, not ${WANT[$kind]}: stop and clean it first, or use another --dir"
            fi
        done
        [ -z "$DUMP_PERIOD" ] || [ "$DUMP_PERIOD" = "$SAVED_DUMP_PERIOD" ] ||
            die "the cluster in $WORK dumps every $SAVED_DUMP_PERIOD s; --dump-period applies to a new cluster"
        [ -z "$TLS" ] || [ "$SAVED_TLS" -eq 1 ] ||
            die "the cluster in $WORK was made without --tls; --tls applies to a new cluster"
    else
        fresh=1
        mkdir -p "$WORK"
        WORK=$(cd "$WORK" && pwd -P)
        ENV_FILE=$WORK/cluster.env
        COUNT[dhtnode]=${WANT[dhtnode]:-2}
        COUNT[logfilesnode]=${WANT[logfilesnode]:-1}
        COUNT[queuenode]=${WANT[queuenode]:-1}
        SAVED_DUMP_PERIOD=${DUMP_PERIOD:-60}
        SAVED_BASE_PORT=${BASE_PORT:-0}
        SAVED_TLS=${TLS:-0}
        [ "$SAVED_DUMP_PERIOD" -ge 1 ] || die "--dump-period must be at least 1"
        [ "$SAVED_TLS" -eq 0 ] || make_pki
    fi
    pick_binaries
    write_env
    [ $fresh -eq 0 ] || say "new cluster in $WORK: ${COUNT[dhtnode]} dht, ${COUNT[logfilesnode]} logfiles, ${COUNT[queuenode]} queue nodes"
    start_all
    say "topology: $WORK/topology.toml"
}

cmd_stop() {
    load_env || die "no cluster in $WORK"
    local name dir pid procs=() line
    declare -A selected=()
    for name in "${NAMES[@]}"; do selected[$name]=1; done
    while read -r name dir; do
        if [ ${#NAMES[@]} -gt 0 ]; then
            [ -n "${selected[$name]:-}" ] || continue
            unset "selected[$name]"
        fi
        procs+=("$name $dir")
    done < <(all_procs)
    [ ${#selected[@]} -eq 0 ] || die "no such process: ${!selected[*]}"
    local failed=0
    # Two waves: the dhtdumps, then the nodes.
    for wave in dhtdump node; do
        declare -A pids=() since=() offset=()
        for line in "${procs[@]}"; do
            name=${line%% *}
            dir=${line#* }
            case "$name" in dhtdump-*) [ $wave = dhtdump ] || continue ;; *) [ $wave = node ] || continue ;; esac
            if pid=$(running_pid "$dir"); then
                offset[$name]=$(stat -c %s "$dir/log/root.log" 2>/dev/null || echo 0)
                kill -TERM "$pid"
                pids[$name]=$pid
                since[$name]=$dir
            else
                [ ! -f "$dir/pid" ] || { rm -f "$dir/pid"; say "$name had already exited (pid file removed)"; }
            fi
        done
        local start=${EPOCHREALTIME/./}
        while :; do
            for name in "${!pids[@]}"; do
                if ! alive "${pids[$name]}"; then
                    dir=${since[$name]}
                    rm -f "$dir/pid"
                    local last
                    # How it ended, as its root.log says since the SIGTERM.
                    last=$(tail -c +"$((offset[$name] + 1))" "$dir/log/root.log" 2>/dev/null |
                        grep -E 'shutdown complete|dump done|dhtdump stopped| ERROR ' | tail -n 2 |
                        sed -E 's/^[^ ]+ +[A-Z]+ +[^ ]+: //' | awk 'NR > 1 { printf "; " } { printf "%s", $0 }' || true)
                    say "stopped $name (pid ${pids[$name]}) after $(elapsed "$start") s${last:+: $last}"
                    unset "pids[$name]"
                fi
            done
            [ ${#pids[@]} -gt 0 ] || break
            if [ $((${EPOCHREALTIME/./} - start)) -ge $((TIMEOUT * 1000000)) ]; then
                for name in "${!pids[@]}"; do
                    echo "cluster.sh: $name (pid ${pids[$name]}) still running after $TIMEOUT s; not killed (kill -9 ${pids[$name]} to force)" >&2
                done
                failed=1
                break
            fi
            sleep 0.1
        done
        unset pids since offset
    done
    return $failed
}

# elapsed START: seconds since START (microseconds since the epoch), with one decimal.
elapsed() {
    local us=$((${EPOCHREALTIME/./} - $1))
    printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10))
}

# field NAME < stats: the value of one `name value` line.
field() { awk -v n="$1" '$1 == n { print $2; exit }'; }

cmd_status() {
    load_env || die "no cluster in $WORK"
    pick_binaries
    local ctl=("$BIN_DIR/swarmctl" --timeout-ms 3000) ok=0 line name dir pid addr
    [ "$SAVED_TLS" -eq 0 ] || ctl+=(--tls-ca "$WORK/tls/ca.pem")
    # Every dht node's range at once (and whether they tile); a node this misses is asked alone.
    local all_ranges="" ranges_ok=1
    if [ "${COUNT[dhtnode]}" -gt 0 ]; then
        all_ranges=$("${ctl[@]}" --nodes "$WORK/topology.toml" dht ranges 2>&1) || ranges_ok=0
    fi
    printf '%-16s %-9s %-22s %-8s %-8s %-37s %8s %6s  %s\n' NODE KIND ADDR PID STATE RANGE RECORDS CONNS CHANNELS
    while read -r name dir; do
        case "$name" in dhtdump-*) continue ;; esac
        addr=$(cat "$dir/addr" 2>/dev/null || echo -)
        local kind=- range=- records=- conns=- channels=- state
        if ! pid=$(running_pid "$dir"); then
            if [ -f "$dir/pid" ]; then state=dead; else state=stopped; fi
            pid=-
            ok=1
        else
            state=running
            local ping="" stats=""
            if ping=$("${ctl[@]}" --node "$addr" ping 2>&1) && stats=$("${ctl[@]}" --node "$addr" stats 2>&1); then
                kind=$(sed -n 's/.* kind=\([^ ]*\).*/\1/p' <<<"$ping")
                local open
                open=$(field connections_open <<<"$stats")
                conns=$((${open:-1} - 1))
                records=$(field total_records <<<"$stats")
                records=${records:--}
                channels=$(awk '$1 ~ /^channel\/.*\/records$/ { split($1, p, "/"); printf "%s%s=%s", sep, p[2], $2; sep = "," }' <<<"$stats")
                channels=${channels:--}
                if [ "$kind" = dht ]; then
                    range=$(awk -v a="$addr" '$1 == a { print $2 }' <<<"$all_ranges")
                    [ -n "$range" ] || range=$("${ctl[@]}" --node "$addr" dht ranges 2>/dev/null | awk -v a="$addr" '$1 == a { print $2 }' || true)
                    range=${range:-?}
                fi
            else
                state=silent
                ok=1
                echo "  $name: $(tail -n 1 <<<"$ping${stats:+$'\n'$stats}")" >&2
            fi
        fi
        printf '%-16s %-9s %-22s %-8s %-8s %-37s %8s %6s  %s\n' "$name" "$kind" "$addr" "$pid" "$state" "$range" "$records" "$conns" "$channels"
        if [[ "$name" == dhtnode-* ]]; then
            local i=${name#dhtnode-} ddir newest age="no dump yet" dstate
            ddir=$(dump_dir "$i")
            if pid=$(running_pid "$ddir"); then dstate="running (pid $pid)"; else dstate=stopped; ok=1; fi
            local dumps=("$ddir"/data/*.dump)
            if [ ${#dumps[@]} -gt 0 ]; then
                newest=$(stat -c %Y "${dumps[@]}" | sort -n | tail -n 1)
                age="newest dump $(($(date +%s) - newest)) s old"
            fi
            echo "  dhtdump-$i: $dstate, $age (period $SAVED_DUMP_PERIOD s)"
        fi
    done < <(all_procs)
    if [ "${COUNT[dhtnode]}" -gt 0 ]; then
        if [ $ranges_ok -eq 1 ]; then
            echo "dht ranges: the ${COUNT[dhtnode]} nodes tile the hash space (no gaps, no overlaps)"
        else
            echo "dht ranges: NOT OK"
            grep -E '^(gap|overlap) |swarmctl:' <<<"$all_ranges" | sed 's/^/  /'
            ok=1
        fi
    fi
    # The same verdict as `swarmctl health` on the topology: every node a problem there is one
    # here too.
    local health extra=()
    read -r -a extra <<<"${SWARM_HEALTH_ARGS:-}"
    if health=$("${ctl[@]}" --nodes "$WORK/topology.toml" health "${extra[@]}" 2>&1); then
        echo "health: healthy"
    else
        echo "health: DEGRADED"
        sed -n '/^verdict: /,$p' <<<"$health" | tail -n +2 | sed 's/^ */  /'
        grep '^swarmctl:' <<<"$health" | sed 's/^/  /' || true
        ok=1
    fi
    return $ok
}

cmd_restore() {
    load_env || die "no cluster in $WORK"
    pick_binaries
    [ ${#NAMES[@]} -eq 1 ] || die "restore takes one name, e.g. dhtnode-0"
    local name=${NAMES[0]} i dir ddir dumps stamp
    [[ "$name" =~ ^dhtnode-([0-9]+)$ ]] || die "restore: '$name' is not a dht node (dhtnode-I)"
    i=${BASH_REMATCH[1]}
    [ "$i" -lt "${COUNT[dhtnode]}" ] || die "restore: there is no $name"
    dir=$(node_dir dhtnode "$i")
    ddir=$(dump_dir "$i")
    if pid=$(running_pid "$dir"); then die "$name is running (pid $pid): stop it first (cluster.sh stop $name)"; fi
    dumps=("$ddir"/data/*.dump)
    [ ${#dumps[@]} -gt 0 ] || die "no dump files in $ddir/data"
    if [ -d "$dir/data" ] && [ -n "$(ls -A "$dir/data")" ]; then
        stamp=$(date +%Y%m%d-%H%M%S)
        mv "$dir/data" "$dir/data.before-restore-$stamp"
        say "moved $name's data to data.before-restore-$stamp"
    fi
    mkdir -p "$dir/data"
    cp -p "${dumps[@]}" "$dir/data/"
    say "copied ${#dumps[@]} dump files from dhtdump-$i into $name/data"
    start_all
    grep -o 'loaded .* channels from data.*' "$dir/log/root.log" | tail -n 1 | sed "s/^/cluster.sh: $name: /"
}

cmd_clean() {
    load_env || { [ ! -d "$WORK" ] || die "$WORK is not a cluster work directory"; return 0; }
    local name dir
    while read -r name dir; do
        if pid=$(running_pid "$dir"); then die "$name is still running (pid $pid): stop the cluster first"; fi
    done < <(all_procs)
    rm -rf "$WORK"
    say "removed $WORK"
}

"cmd_$COMMAND"
