#!/usr/bin/env bash
# Tests of the deployment: the benchmark scripts' options and their busy-machine helpers (no
# benchmark runs), the systemd units (systemd-analyze verify), scripts/install.sh (into a
# temporary prefix, twice: the second run must change nothing; then the tree it made, and every
# daemon started from it as its unit would), the logrotate files (a forced rotation on a copy),
# and scripts/cluster.sh end to end (3 dht nodes with their dhtdumps, 2 logfiles and 2 queue nodes
# on 127.0.0.1; traffic of every kind through swarmctl; a dht node killed with SIGKILL and
# restored from its dhtdump's files holds every record dumped before the kill, and meanwhile
# status and `swarmctl health` agree on the degraded cluster; logs moved away as logrotate does
# and reopened on SIGHUP; stop; restart; then `start --tls`: traffic, dhtdump and status over
# TLS, and no node answering a client in clear).
#
#   scripts/tests/test_scripts.sh [BIN_DIR]
#
# BIN_DIR (default: $BIN_DIR, else target/debug) holds the binaries (cargo build --bins). Needs
# no running systemd, but systemd-analyze and systemd-sysusers (Debian's systemd package),
# logrotate, openssl (cluster.sh --tls), and root (file ownership): a step that cannot run fails, unless
# SWARM_TEST_ALLOW_SKIP (a comma-separated list of mount, root, systemd, logrotate, or `all`;
# docs/testing.md) names what this machine lacks; then it prints "SKIP: ..." and the summary
# at the end lists it. Everything happens under one temporary directory, removed at the end, also on failure
# or interruption; every process started is stopped. Bounded: gives up after TEST_SCRIPTS_LIMIT_S
# seconds (default 50). Run by `cargo test` through client/tests/deploy_scripts.rs.
set -euo pipefail
shopt -s inherit_errexit nullglob

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${1:-${BIN_DIR:-$REPO/target/debug}}
LIMIT_S=${TEST_SCRIPTS_LIMIT_S:-50}
BINARIES=(dhtnode dhtdump dumptool logfilesnode logfiles_check queuenode swarmctl)
for bin in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$bin" ] || {
        echo "test_scripts.sh: no $BIN_DIR/$bin (cargo build --bins first, or pass BIN_DIR)" >&2
        exit 1
    }
done
BIN_DIR=$(cd "$BIN_DIR" && pwd -P)
SWARMCTL=("$BIN_DIR/swarmctl" --timeout-ms 5000)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/swarm-deploy-test.XXXXXX")
TMP=$(cd "$TMP" && pwd -P)
CLUSTER=$TMP/cluster
STARTED_AT=$SECONDS
PIDS=() # processes this script started itself, killed at the end if still there
CURRENT="setup"
SKIPPED=() # checks this machine could not run, allowed by the opt-out variable
ALLOW_SKIP_VAR=SWARM_TEST_ALLOW_SKIP

cleanup() {
    local rc=$? pid f
    trap - EXIT INT TERM
    kill "$WATCHDOG" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -f "$CLUSTER/cluster.env" ]; then
        "$REPO/scripts/cluster.sh" --dir "$CLUSTER" stop --timeout 10 >/dev/null 2>&1 || true
        # Whatever did not stop: SIGKILL, by its pid file, if it is still the process started in
        # that directory.
        for f in "$CLUSTER"/*/pid "$CLUSTER"/*/dump/pid; do
            pid=$(<"$f")
            if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(dirname "$f")" ]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    rm -rf "$TMP"
    if [ $rc -eq 0 ]; then
        echo "test_scripts.sh: all passed in $((SECONDS - STARTED_AT)) s"
        if [ ${#SKIPPED[@]} -gt 0 ]; then
            echo "test_scripts.sh: ${#SKIPPED[@]} checks SKIPPED ($ALLOW_SKIP_VAR=${SWARM_TEST_ALLOW_SKIP-}):"
            printf '   %s\n' "${SKIPPED[@]}"
        fi
    else
        echo "test_scripts.sh: FAILED in step '$CURRENT' (exit $rc) after $((SECONDS - STARTED_AT)) s" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'echo "test_scripts.sh: interrupted" >&2; exit 130' INT TERM

# The time limit: a watchdog that sends SIGTERM to this shell (whose trap then cleans up).
(
    for ((t = 0; t < LIMIT_S * 4; t++)); do sleep 0.25; done
    echo "test_scripts.sh: time limit of $LIMIT_S s reached" >&2
    kill -TERM $$
) </dev/null &
WATCHDOG=$!

step() {
    CURRENT=$1
    echo "== $1 (at $((SECONDS - STARTED_AT)) s)"
}
fail() {
    echo "test_scripts.sh: FAIL: $*" >&2
    exit 1
}
# skip_allowed CAPABILITY: whether $SWARM_TEST_ALLOW_SKIP names it (or `all`).
skip_allowed() {
    local word words
    IFS=, read -r -a words <<<"${SWARM_TEST_ALLOW_SKIP-}"
    for word in "${words[@]}"; do
        word=${word//[[:space:]]/}
        [ "$word" = all ] || [ "$word" = "$1" ] && return 0
    done
    return 1
}
# skip_or_fail CAPABILITY WHAT: the check WHAT needs CAPABILITY, which this machine lacks: fail,
# unless the opt-out variable allows the skip (then it is listed in the summary).
skip_or_fail() {
    if skip_allowed "$1"; then
        echo "   SKIP: $2 (needs $1)"
        SKIPPED+=("$2 (needs $1)")
    else
        fail "$2 cannot run on this machine; set $ALLOW_SKIP_VAR=$1 to skip it (docs/testing.md)"
    fi
}
# The opt-out variable: a comma-separated list of known words; a typo fails rather than skips.
IFS=, read -r -a allow_words <<<"${SWARM_TEST_ALLOW_SKIP-}"
for word in "${allow_words[@]}"; do
    case ${word//[[:space:]]/} in
    '' | all | mount | root | systemd | logrotate) ;;
    *) fail "$ALLOW_SKIP_VAR: unknown word '$word' (mount, root, systemd, logrotate or all)" ;;
    esac
done
# expect DESCRIPTION COMMAND...: runs the command, fails with its output if it fails.
expect() {
    local what=$1 out
    shift
    out=$("$@" 2>&1) || fail "$what: '$*' failed: $out"
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls the command until it succeeds.
wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "gave up waiting for $what"
        sleep 0.1
    done
}
# Hashes and attributes of every file and directory under a tree (mtimes excluded).
snapshot() {
    (
        cd "$1"
        find . -printf '%P %y %m %U:%G %s %l\n' | sort
        find . -type f -print0 | sort -z | xargs -0 md5sum
    )
}

# =============================================================================================
step "bench scripts: options, a taken port retried, failed rows kept"
# No benchmark runs here: the comparison scripts' option checks and --dry-run plans, and the
# helpers of scripts/lib/bench-common.sh that keep a comparison going on a busy machine.
# expect_exit CODE TEXT COMMAND...: the command exits CODE and says TEXT.
expect_exit() {
    local code=$1 text=$2 out rc=0
    shift 2
    out=$("$@" 2>&1) || rc=$?
    [ "$rc" -eq "$code" ] || fail "'$*' exited $rc, not $code: $out"
    grep -qF -- "$text" <<<"$out" || fail "'$*' does not say '$text': $out"
}
VS=$REPO/scripts/bench-vs-redis.sh
SCALING=$REPO/scripts/bench-scaling.sh
expect_exit 2 "--only: unknown part 'nope'" "$VS" --only dht,nope
expect_exit 2 "not a positive number: '0'" "$VS" --seconds 0
expect_exit 2 "--records needs a value" "$VS" --records
expect_exit 2 "unknown option --bogus" "$VS" --bogus
plan=$("$VS" --dry-run --only dht --repeat 3) || fail "bench-vs-redis.sh --dry-run: $plan"
[ "$(grep -c '^dht .* vs memcached' <<<"$plan")" -eq 6 ] && [ "$(grep -c '^dht .* vs Redis' <<<"$plan")" -eq 5 ] &&
    ! grep -q '^queue\|^logfiles' <<<"$plan" || fail "bench-vs-redis.sh --only dht plans: $plan"
plan=$("$VS" --dry-run --no-memcached) || fail "bench-vs-redis.sh --dry-run --no-memcached: $plan"
! grep -q memcached <<<"$plan" && grep -q '^queue' <<<"$plan" || fail "--no-memcached plans: $plan"
AB=$REPO/scripts/bench-dht-ab.sh
expect_exit 2 "no variant given" "$AB" --rounds 2
expect_exit 2 "--ops: put and/or get, not 'del'" "$AB" --ops "get del" a=.
expect_exit 2 "a variant is LABEL=BIN_DIR" "$AB" target/release
expect_exit 1 "no dhtnode and loadgen" "$AB" a=/nonexistent
QAB=$REPO/scripts/bench-queue-ab.sh
expect_exit 2 "no variant given" "$QAB" --rounds 2
expect_exit 2 "not a positive number: '0'" "$QAB" --count 0 a=.
expect_exit 2 "a variant is LABEL=BIN_DIR" "$QAB" target/release
expect_exit 1 "no queuenode and queue_load" "$QAB" a=/nonexistent
LAB=$REPO/scripts/bench-logfiles-ab.sh
expect_exit 2 "no variant given" "$LAB" --rounds 2
expect_exit 2 "--fsync: none, interval or always" "$LAB" --fsync sometimes a=.
expect_exit 2 "a variant is LABEL=BIN_DIR" "$LAB" target/release
expect_exit 1 "no logfilesnode and loadgen" "$LAB" a=/nonexistent
expect_exit 2 "--connections: not a positive number: 'x'" "$SCALING" --connections 10,x --dry-run
expect_exit 2 "--axes: unknown 'foo'" "$SCALING" --axes records,foo --dry-run
expect_exit 2 "--records: 2000000000 is above 1000000000" "$SCALING" --records 2000000000 --dry-run
expect_exit 2 "--ops: unknown 'del'" "$SCALING" --ops get,del --dry-run
expect_exit 2 "--replot needs --out DIR" "$SCALING" --replot
plan=$("$SCALING" --dry-run --quick --pipeline 1,16) || fail "bench-scaling.sh --dry-run --quick: $plan"
grep -q '^connections: 10 50 500 (' <<<"$plan" && grep -q '^records 100000 (' <<<"$plan" &&
    grep -q 'pipeline: 1 16;' <<<"$plan" || fail "bench-scaling.sh --quick --pipeline 1,16 plans: $plan"
# A point larger than the machine is refused before it starts (900M records need ~200 GiB).
plan=$("$SCALING" --dry-run --axes records --records 900000000) || fail "bench-scaling.sh --dry-run: $plan"
grep -q '^records 900000000: needs .* DOES NOT FIT' <<<"$plan" || fail "a 900M-record point fits? $plan"
(
    # shellcheck source=scripts/lib/bench-common.sh
    . "$REPO/scripts/lib/bench-common.sh"
    tmp=$TMP/bench
    mkdir -p "$tmp"
    : >"$tmp/pids"
    trap 'kill_tracked' EXIT
    server_run=()
    failed_rows=0
    out=$tmp
    rows_file=$tmp/rows.md
    : >"$rows_file"
    dhtnode=$BIN_DIR/dhtnode
    # A port another process holds (a dhtnode on a port the kernel chose); free_port hands it out
    # once, as if that process had bound it between free_port's look and the server's bind.
    start_dhtnode "$tmp/holder" 2>"$tmp/holder.err" || fail "dhtnode: $(cat "$tmp/holder.err")"
    taken=$srv_port
    holder=$srv_pid
    eval "real_free_port() $(declare -f free_port | tail -n +2)"
    free_port() {
        if [ -e "$tmp/handed" ]; then real_free_port; else touch "$tmp/handed" && echo "$taken"; fi
    }
    mkdir -p "$tmp/retry"
    start_on_free_port dhtnode "$tmp/retry" "$dhtnode" --listen '127.0.0.1:{port}' \
        --data-dir "$tmp/retry/data" --log-dir "$tmp/retry/log" 2>"$tmp/retry.err" ||
        fail "start_on_free_port gave up on a taken port: $(cat "$tmp/retry.err")"
    [ -e "$tmp/handed" ] || fail "start_on_free_port did not ask free_port"
    [ "$srv_port" != "$taken" ] || fail "start_on_free_port reports the server on the port another process holds"
    listens "$srv_port" "$srv_pid" || fail "the server started by start_on_free_port does not listen on $srv_port"
    grep -q "port $taken was taken" "$tmp/retry.err" || fail "no retry logged: $(cat "$tmp/retry.err")"
    alive "$holder" || fail "the process holding the port died"
    retry_pid=$srv_pid
    # A server that fails for another reason is not retried, and says why.
    mkdir -p "$tmp/bad"
    : >"$tmp/step.reason"
    ! start_on_free_port dhtnode "$tmp/bad" "$dhtnode" --no-such-option '{port}' 2>"$tmp/bad.err" ||
        fail "a server that cannot start was reported listening"
    ! grep -q "was taken" "$tmp/bad.err" && grep -q '^dhtnode does not listen on .*no-such-option' "$tmp/step.reason" ||
        fail "the failure of a server that cannot start: $(cat "$tmp/bad.err")"
    # Rows: a failed measurement stops what it started (and nothing started before it) and leaves
    # its row FAILED with the reason; the rows before and after it stay.
    good_row() { echo "| $1 | 1 |" >>"$rows_file"; }
    doomed() {
        stop_pid "$retry_pid"
        start_dhtnode "$tmp/doomed"
        echo "$srv_pid" >"$tmp/doomed.pid"
        row_error "the generator timed out"
        echo "not reached" >"$tmp/doomed.after"
    }
    unexpected() {
        local x=1
        false
        echo "not reached $x" >"$tmp/unexpected.after"
    }
    echo "1 2 3 4" >"$tmp/m1.runs"
    run_row "row one" "$tmp/m1" -- good_row "row one"
    run_step "$tmp/m2" doomed 2>/dev/null
    [ "$step_ok" -eq 0 ] && [ "$step_reason" = "the generator timed out" ] || fail "run_step of a failing step: ok $step_ok, reason '$step_reason'"
    [ ! -e "$tmp/doomed.after" ] || fail "a step went on after its error"
    ! alive "$(cat "$tmp/doomed.pid")" || fail "the server of a failed step is still running"
    alive "$holder" || fail "a failed step stopped a process started before it"
    run_row "row two" "$tmp/m2" -- good_row "row two"
    run_step - unexpected 2>/dev/null
    [ "$step_ok" -eq 0 ] && [ "$step_reason" = "'false' exited 1" ] && [ ! -e "$tmp/unexpected.after" ] ||
        fail "an unexpected failure in a step: ok $step_ok, reason '$step_reason'"
    echo "5 6 7 8" >"$tmp/m3.runs"
    run_row "row three" "$tmp/m3" -- good_row "row three"
    expected=$'| row one | 1 |\n| row two | FAILED: the generator timed out |\n| row three | 1 |'
    [ "$(cat "$rows_file")" = "$expected" ] || fail "the rows after a failure: $(cat "$rows_file")"
    [ "$failed_rows" -eq 1 ] || fail "failed_rows is $failed_rows, not 1"
    ! finish_rows 2>"$tmp/finish.err" || fail "finish_rows succeeds with a failed row"
    # launch_node: a node started again on the same logs is found at its new address (not at
    # the one its previous run logged), and one that cannot start says why.
    launch_node "$tmp/again" "" "$dhtnode" 2>"$tmp/again.err" || fail "launch_node: $(cat "$tmp/again.err")"
    stop_node TERM
    launch_node "$tmp/again" "" "$dhtnode" 2>"$tmp/again.err" || fail "launch_node again: $(cat "$tmp/again.err")"
    [ "$(grep -c 'listening on' "$tmp/again/log/root.log")" -eq 2 ] &&
        listens "${node_addr##*:}" "$node_pid" || fail "launch_node again: not listening on $node_addr"
    stop_node TERM
    ! launch_node "$tmp/broken" "[dht]
durability = \"sometimes\"" "$dhtnode" 2>"$tmp/broken.err" || fail "a node with a bad config was reported listening"
    grep -q '^dhtnode did not start: .*broken/node.toml' "$tmp/broken.err" || fail "launch_node's failure: $(cat "$tmp/broken.err")"
)
echo "   options checked, a taken port retried, a failed row kept among the others, a node started again found"

UNITS=(dhtnode dhtdump logfilesnode queuenode)
declare -A UNIT_DIR=(
    [dhtnode]=/srv/dhtnode/dhtnode-%i
    [dhtdump]=/srv/dhtnode/dhtnode-%i/dump
    [logfilesnode]=/srv/logfilesnode/logfilesnode-%i
    [queuenode]=/srv/queuenode/queuenode-%i
)
declare -A UNIT_USER=([dhtnode]=dhtnode [dhtdump]=dhtnode [logfilesnode]=logfilesnode [queuenode]=queuenode)

# =============================================================================================
step "units: required settings"
for unit in "${UNITS[@]}"; do
    file=$REPO/deploy/systemd/$unit@.service
    [ -f "$file" ] || fail "missing $file"
    for line in \
        "Restart=on-failure" \
        "ExecReload=/bin/kill -HUP \$MAINPID" \
        "ExecStart=/usr/local/bin/$unit -c ${UNIT_DIR[$unit]}/etc/config.toml" \
        "WorkingDirectory=${UNIT_DIR[$unit]}" \
        "User=${UNIT_USER[$unit]}" \
        "NoNewPrivileges=yes" \
        "ProtectSystem=strict" \
        "ReadWritePaths=${UNIT_DIR[$unit]}" \
        "PrivateTmp=yes" \
        "WantedBy=multi-user.target"; do
        grep -qxF -- "$line" "$file" || fail "$unit@.service lacks '$line'"
    done
    grep -qE '^TimeoutStopSec=' "$file" || fail "$unit@.service has no TimeoutStopSec"
    nofile=$(sed -n 's/^LimitNOFILE=//p' "$file")
    [ -n "$nofile" ] || fail "$unit@.service has no LimitNOFILE"
    if [ -f "$REPO/deploy/config/$unit.toml" ] && grep -q '^max_connections' "$REPO/deploy/config/$unit.toml"; then
        max=$(sed -n 's/^max_connections = //p' "$REPO/deploy/config/$unit.toml")
        [ "$nofile" -gt $((max + 100)) ] || fail "$unit@.service: LimitNOFILE=$nofile is not above max_connections ($max) + 100"
    fi
done
# The node's final dump needs time: at least 10 minutes for the in-memory nodes.
for unit in dhtnode queuenode; do
    grep -qE '^TimeoutStopSec=(infinity|[0-9]+h|[1-9][0-9]+min)$' "$REPO/deploy/systemd/$unit@.service" ||
        fail "$unit@.service: TimeoutStopSec too short for the final dump"
done
grep -qE '^After=.*dhtnode@%i\.service' "$REPO/deploy/systemd/dhtdump@.service" ||
    fail "dhtdump@.service is not ordered after its node"

# =============================================================================================
step "install.sh into a temporary prefix, twice"
# The binaries it installs: small wrappers that exec the real ones, so that the test copies a few
# bytes instead of hundreds of MB of debug binaries, and the installed "binaries" still run the
# real daemons.
STUBS=$TMP/bin
mkdir -p "$STUBS"
for bin in "${BINARIES[@]}"; do
    printf '#!/bin/sh\nexec %q "$@"\n' "$BIN_DIR/$bin" >"$STUBS/$bin"
    chmod 755 "$STUBS/$bin"
done
PREFIX=$TMP/prefix
expect "install.sh (first run)" "$REPO/scripts/install.sh" --prefix "$PREFIX" --bin-dir "$STUBS" --dht 2 --logfiles 1 --queue 1
snapshot "$PREFIX" >"$TMP/tree1"
second=$("$REPO/scripts/install.sh" --prefix "$PREFIX" --bin-dir "$STUBS" --dht 2 --logfiles 1 --queue 1 2>&1) ||
    fail "install.sh (second run) failed: $second"
snapshot "$PREFIX" >"$TMP/tree2"
diff -u "$TMP/tree1" "$TMP/tree2" >"$TMP/tree.diff" || fail "the second install changed the tree: $(cat "$TMP/tree.diff")"
grep -q 'everything already in place' <<<"$second" || fail "the second install reported changes: $second"

step "install.sh: the tree"
for bin in "${BINARIES[@]}"; do
    [ -x "$PREFIX/usr/local/bin/$bin" ] || fail "no /usr/local/bin/$bin"
    cmp -s "$STUBS/$bin" "$PREFIX/usr/local/bin/$bin" || fail "/usr/local/bin/$bin differs from the one installed"
done
for unit in "${UNITS[@]}"; do
    cmp -s "$REPO/deploy/systemd/$unit@.service" "$PREFIX/etc/systemd/system/$unit@.service" ||
        fail "/etc/systemd/system/$unit@.service missing or different"
done
for rotate in "$REPO"/deploy/logrotate/*; do
    cmp -s "$rotate" "$PREFIX/etc/logrotate.d/$(basename "$rotate")" || fail "/etc/logrotate.d/$(basename "$rotate") missing or different"
done
[ -f "$PREFIX/etc/sysusers.d/swarm.conf" ] || fail "no /etc/sysusers.d/swarm.conf"
[ -f "$PREFIX/usr/local/share/doc/swarm/operations.md" ] || fail "no operations.md"
for kind_dir in dhtnode/dhtnode-0 dhtnode/dhtnode-1 logfilesnode/logfilesnode-0 queuenode/queuenode-0 \
    dhtnode/dhtnode-0/dump dhtnode/dhtnode-1/dump; do
    dir=$PREFIX/srv/$kind_dir
    for sub in etc data log; do [ -d "$dir/$sub" ] || fail "no $dir/$sub"; done
    [ -f "$dir/etc/config.toml" ] || fail "no $dir/etc/config.toml"
    [ "$(stat -c %a "$dir/etc/config.toml")" = 640 ] || fail "$dir/etc/config.toml is not mode 640"
done
for dir in "$PREFIX"/srv/*/*-[0-9]; do
    [ "$(stat -c %a "$dir/etc/credentials")" = 640 ] || fail "$dir/etc/credentials is not mode 640"
done
[ -d "$PREFIX/srv/dhtnode/dhtnode-0/dump/backup-data" ] || fail "no dump/backup-data"
[ ! -e "$PREFIX/srv/dhtnode/dhtnode-2" ] && [ ! -e "$PREFIX/srv/logfilesnode/logfilesnode-1" ] || fail "more instances than asked for"
grep -qx 'listen = "127.0.0.1:10001"' "$PREFIX/srv/dhtnode/dhtnode-1/etc/config.toml" || fail "dhtnode-1 does not listen on port 10001"
grep -qx 'listen = "127.0.0.1:11000"' "$PREFIX/srv/logfilesnode/logfilesnode-0/etc/config.toml" || fail "logfilesnode-0 does not listen on 11000"
grep -qx 'listen = "127.0.0.1:12000"' "$PREFIX/srv/queuenode/queuenode-0/etc/config.toml" || fail "queuenode-0 does not listen on 12000"
grep -qx 'node = "127.0.0.1:10001"' "$PREFIX/srv/dhtnode/dhtnode-1/dump/etc/config.toml" || fail "dhtdump of dhtnode-1 does not dump it"
grep -qx 'range_max = "0x7fffffffffffffff"' "$PREFIX/srv/dhtnode/dhtnode-0/etc/config.toml" &&
    grep -qx 'range_min = "0x8000000000000000"' "$PREFIX/srv/dhtnode/dhtnode-1/etc/config.toml" ||
    fail "the two dht instances do not split the hash space"
if [ "$(id -u)" -ne 0 ]; then
    skip_or_fail root "ownership of the installed tree (install.sh runs as root)"
elif ! command -v systemd-sysusers >/dev/null; then
    skip_or_fail systemd "ownership of the installed tree (systemd-sysusers not found)"
else
    for user in dhtnode logfilesnode queuenode; do
        ids=$(awk -F: -v u="$user" '$1 == u { print $3 ":" $4 }' "$PREFIX/etc/passwd")
        [ -n "$ids" ] || fail "no user $user in the prefix's /etc/passwd"
        dir=$PREFIX/srv/$user/$user-0
        [ "$(stat -c %u:%g "$dir/data")" = "$ids" ] || fail "$dir/data is not owned by $user"
        [ "$(stat -c %u:%g "$dir/log")" = "$ids" ] || fail "$dir/log is not owned by $user"
        [ "$(stat -c %u "$dir/etc/config.toml")" = 0 ] || fail "$dir/etc/config.toml is not owned by root"
        [ "$(stat -c %g "$dir/etc/config.toml")" = "${ids#*:}" ] || fail "$dir/etc/config.toml is not in group $user"
    done
fi

# =============================================================================================
step "systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null; then
    skip_or_fail systemd "systemd-analyze verify of the units (systemd-analyze not found)"
else
    # A root holding the installed units and binaries, plus what they refer to on any system
    # (/bin/kill, the standard targets): verify checks that every command exists.
    VROOT=$TMP/verify-root
    mkdir -p "$VROOT/etc/systemd/system" "$VROOT/usr/local/bin" "$VROOT/usr/bin" "$VROOT/usr/lib/systemd"
    ln -s usr/bin "$VROOT/bin"
    cp "$PREFIX"/etc/systemd/system/*.service "$VROOT/etc/systemd/system/"
    for bin in "${BINARIES[@]}"; do ln "$PREFIX/usr/local/bin/$bin" "$VROOT/usr/local/bin/$bin"; done
    cp "$(type -P kill)" "$VROOT/usr/bin/kill"
    for dir in /usr/lib/systemd/system /lib/systemd/system; do
        if [ -d "$dir" ]; then
            cp -a "$dir" "$VROOT/usr/lib/systemd/"
            break
        fi
    done
    for unit in "${UNITS[@]}"; do
        out=$(systemd-analyze verify --root="$VROOT" --man=no "$unit@0.service" 2>&1) ||
            fail "systemd-analyze verify $unit@0.service: $out"
        [ -z "$out" ] || fail "systemd-analyze verify $unit@0.service warns: $out"
        echo "   $unit@.service: verified"
    done
    rm -rf "$VROOT"
fi

# =============================================================================================
step "install.sh: every daemon starts from its instance, as its unit runs it"
# unit_cmd UNIT KEY: the unit's KEY= value for instance 0, with paths moved into the prefix.
unit_value() {
    sed -n "s/^$2=//p" "$PREFIX/etc/systemd/system/$1@.service" |
        sed -e 's/%i/0/g' -e "s|/usr/local/bin/|$PREFIX/usr/local/bin/|" -e "s|/srv/|$PREFIX/srv/|g"
}
# started_addr DIR PID: waits for "listening on ADDR" in DIR/log/root.log and prints ADDR.
started_addr() {
    local deadline=$((SECONDS + 15)) addr
    while :; do
        addr=$(grep -o 'listening on [^ ]*' "$1/log/root.log" 2>/dev/null | tail -n 1 | cut -d' ' -f3 || true)
        [ -z "$addr" ] || { echo "$addr"; return 0; }
        kill -0 "$2" 2>/dev/null || { cat "$1/console.log" >&2; return 1; }
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}
for unit in dhtnode logfilesnode queuenode; do
    workdir=$(unit_value "$unit" WorkingDirectory)
    read -r -a cmd <<<"$(unit_value "$unit" ExecStart)"
    # Port 0 instead of the configured one: other things on this machine may use 10000.
    (cd "$workdir" && exec "${cmd[@]}" --listen 127.0.0.1:0 </dev/null >console.log 2>&1) &
    pid=$!
    PIDS+=("$pid")
    addr=$(started_addr "$workdir" "$pid") || fail "$unit-0 did not start from ${cmd[*]}"
    "${SWARMCTL[@]}" --node "$addr" ping | grep -q "kind=${unit%node}" || fail "$unit-0 at $addr does not answer ping"
    if [ "$unit" = dhtnode ]; then
        expect "put into the installed dhtnode-0" "${SWARMCTL[@]}" --node "$addr" dht --allow-incomplete-ranges put smoke 2 two
        dworkdir=$(unit_value dhtdump WorkingDirectory)
        read -r -a dcmd <<<"$(unit_value dhtdump ExecStart)"
        (cd "$dworkdir" && exec "${dcmd[@]}" --node "$addr" --oneshot </dev/null >console.log 2>&1) ||
            fail "the installed dhtdump failed: $(cat "$dworkdir/console.log")"
        [ -f "$dworkdir/data/smoke.dump" ] || fail "the installed dhtdump wrote no $dworkdir/data/smoke.dump"
    fi
    kill -TERM "$pid"
    wait "$pid" || fail "$unit-0 exited with $? on SIGTERM"
    grep -q 'shutdown complete' "$workdir/log/root.log" || fail "$unit-0 did not log its shutdown"
done
[ -f "$PREFIX/srv/dhtnode/dhtnode-0/data/smoke.dump" ] || fail "dhtnode-0 did not dump at shutdown"
PIDS=()

# =============================================================================================
step "logrotate: a forced rotation of a copy"
if ! command -v logrotate >/dev/null; then
    skip_or_fail logrotate "the forced rotation of the logrotate files (logrotate not found)"
else
    LR=$TMP/logrotate
    mkdir -p "$LR/conf"
    declare -A RELOADS=(
        [swarm-dhtnode]="dhtnode@*.service" [swarm-dhtdump]="dhtdump@*.service"
        [swarm-logfilesnode]="logfilesnode@*.service" [swarm-queuenode]="queuenode@*.service"
    )
    for name in "${!RELOADS[@]}"; do
        grep -qxF "        systemctl reload '${RELOADS[$name]}'" "$REPO/deploy/logrotate/$name" ||
            fail "$name does not reload ${RELOADS[$name]} after rotating"
    done
    for file in "$REPO"/deploy/logrotate/*; do
        # Paths into the copy, and the reload into a note of what would be reloaded.
        sed -e "s|/srv/|$LR/srv/|g" -e "s|systemctl reload '\\(.*\\)'|echo '\\1' >>$LR/reloads|" \
            "$file" >"$LR/conf/$(basename "$file")"
        chmod 644 "$LR/conf/$(basename "$file")"
    done
    for dir in dhtnode/dhtnode-0 dhtnode/dhtnode-0/dump logfilesnode/logfilesnode-0 queuenode/queuenode-0; do
        mkdir -p "$LR/srv/$dir/log"
        echo "a line" >"$LR/srv/$dir/log/root.log"
        echo "stats" >"$LR/srv/$dir/log/stats.log"
    done
    mkdir -p "$LR/srv/dhtnode/dhtnode-0/dump/data" "$LR/srv/dhtnode/dhtnode-0/dump/backup-data"
    echo "dump bytes" >"$LR/srv/dhtnode/dhtnode-0/dump/data/users.dump"
    out=$(logrotate -d -s "$LR/state" "$LR/conf" 2>&1) || fail "logrotate -d: $out"
    ! grep -qi '^error' <<<"$out" || fail "logrotate -d: $(grep -i '^error' <<<"$out")"
    out=$(logrotate -f -s "$LR/state" "$LR/conf" 2>&1) || fail "logrotate -f: $out"
    for dir in dhtnode/dhtnode-0 dhtnode/dhtnode-0/dump logfilesnode/logfilesnode-0 queuenode/queuenode-0; do
        [ -f "$LR/srv/$dir/log/root.log.1" ] || fail "$dir/log/root.log was not rotated: $out"
        [ ! -e "$LR/srv/$dir/log/root.log" ] || fail "$dir/log/root.log was recreated (the node does that on SIGHUP)"
    done
    for name in "${!RELOADS[@]}"; do
        grep -qxF "${RELOADS[$name]}" "$LR/reloads" || fail "no reload of ${RELOADS[$name]} after rotation"
    done
    [ "$(wc -l <"$LR/reloads")" -eq 4 ] || fail "expected one reload per kind: $(cat "$LR/reloads")"
    backups=("$LR"/srv/dhtnode/dhtnode-0/dump/backup-data/users.dump-*)
    [ ${#backups[@]} -eq 1 ] || fail "no dump backup in dump/backup-data"
    cmp -s "${backups[0]}" "$LR/srv/dhtnode/dhtnode-0/dump/data/users.dump" || fail "the dump backup differs from the dump"
    echo "   rotated every kind's logs (4 reloads) and backed up the dump"
fi

# =============================================================================================
step "cluster.sh start: 3 dht (+ dhtdump), 2 logfiles, 2 queue nodes"
CL=("$REPO/scripts/cluster.sh" --dir "$CLUSTER" --bin-dir "$BIN_DIR")
# `status` includes `swarmctl health`, whose disk check judges the disk this test runs on: off
# here, so that the verdicts below depend on the cluster only.
export SWARM_HEALTH_ARGS="--min-disk-free-percent 0"
expect "cluster.sh start" "${CL[@]}" start --dht 3 --logfiles 2 --queue 2 --dump-period 1
TOPO=$CLUSTER/topology.toml
[ -f "$TOPO" ] || fail "no topology file"
pidfiles=("$CLUSTER"/*/pid "$CLUSTER"/*/dump/pid)
[ ${#pidfiles[@]} -eq 10 ] || fail "expected 10 pid files, found ${#pidfiles[@]}"
for kind in dht logfiles queue; do
    grep -A1 -x "\\[$kind\\]" "$TOPO" | tail -n 1 | grep -q '^nodes = \[' || fail "topology has no [$kind] nodes"
done
[ "$(grep -o '"127\.0\.0\.1:[0-9]*"' "$TOPO" | wc -l)" -eq 7 ] || fail "topology does not list 7 nodes on 127.0.0.1: $(cat "$TOPO")"
ranges=$("${SWARMCTL[@]}" --nodes "$TOPO" dht ranges 2>&1) || fail "the dht ranges do not tile: $ranges"
[ "$(wc -l <<<"$ranges")" -eq 3 ] && ! grep -qE '^(gap|overlap)' <<<"$ranges" || fail "dht ranges: $ranges"

step "traffic through swarmctl"
pings=$("${SWARMCTL[@]}" --nodes "$TOPO" ping) || fail "ping failed"
[ "$(grep -c 'kind=dht' <<<"$pings")" -eq 3 ] && [ "$(grep -c 'kind=logfiles' <<<"$pings")" -eq 2 ] &&
    [ "$(grep -c 'kind=queue' <<<"$pings")" -eq 2 ] || fail "ping: $pings"
stats=$("${SWARMCTL[@]}" --nodes "$TOPO" stats) || fail "stats failed"
[ "$(grep -c '^# 127\.0\.0\.1:' <<<"$stats")" -eq 7 ] || fail "stats did not answer for 7 nodes"
for addr in $(grep -o '127\.0\.0\.1:[0-9]*' "$TOPO"); do
    expect "ping $addr" "${SWARMCTL[@]}" --node "$addr" ping
    expect "stats $addr" "${SWARMCTL[@]}" --node "$addr" stats
done
# A listener sees the changes made while it listens.
"${SWARMCTL[@]}" --nodes "$TOPO" dht listen users >"$TMP/listen.out" 2>&1 &
LISTENER=$!
PIDS+=("$LISTENER")
# listening: every dht node counts the listener (stats `listeners`).
listening() {
    "${SWARMCTL[@]}" --nodes "$TOPO" stats | awk '$1 == "listeners" { n += $2 } END { exit !(n >= 3) }'
}
wait_for 10 "the listener to register with the 3 dht nodes" listening
for k in $(seq 1 40); do
    "${SWARMCTL[@]}" --nodes "$TOPO" dht put users "$k" "value $k" || fail "put users $k"
done
for k in 0x10 0x20 0xdeadbeef 1000000 18446744073709551615; do
    "${SWARMCTL[@]}" --nodes "$TOPO" dht put events "$k" "event $k" || fail "put events $k"
done
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht get users 21)" = "value 21" ] || fail "get users 21"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht exists users 7)" = true ] || fail "exists users 7"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht remove users 40)" = removed ] || fail "remove users 40"
! "${SWARMCTL[@]}" --nodes "$TOPO" dht exists users 40 >/dev/null || fail "users 40 still exists"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht getall users | wc -l)" -eq 39 ] || fail "getall users: not 39 records"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht getall events --filter 'event 1' | wc -l)" -eq 2 ] || fail "getall --filter"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht channels | sort | paste -sd,)" = events,users ] || fail "channels"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht size users | cut -d' ' -f1,2)" = "records 39" ] || fail "size users"
wait_for 5 "the listener to see the puts" grep -q "^changed 0000000000000028	value 40" "$TMP/listen.out"
wait_for 5 "the listener to see the removal" grep -q "^removed 0000000000000028" "$TMP/listen.out"
kill "$LISTENER" 2>/dev/null || true
wait "$LISTENER" 2>/dev/null || true
PIDS=()

step "cluster.sh status"
status=$("${CL[@]}" status 2>&1) || fail "status failed: $status"
echo "$status" | sed 's/^/   /'
total=0
for i in 0 1 2; do
    line=$(grep "^dhtnode-$i " <<<"$status") || fail "status has no dhtnode-$i"
    read -r _ kind addr _ state range records conns channels <<<"$line"
    [ "$kind" = dht ] && [ "$state" = running ] || fail "status: dhtnode-$i: $line"
    grep -qx "\"$addr\"" < <(grep -o '"[^"]*"' "$TOPO") || fail "status: dhtnode-$i address $addr is not in the topology"
    cfg=$CLUSTER/dhtnode-$i/etc/config.toml
    want="$(sed -n 's/^range_min = "\(.*\)"/\1/p' "$cfg"):$(sed -n 's/^range_max = "\(.*\)"/\1/p' "$cfg")"
    [ "$range" = "$want" ] || fail "status: dhtnode-$i range $range, configured $want"
    [[ "$channels" == *users=* ]] || fail "status: dhtnode-$i channels: $channels"
    [[ "$conns" =~ ^[0-9]+$ ]] || fail "status: dhtnode-$i connections: $conns"
    total=$((total + records))
    grep -q "^  dhtdump-$i: running" <<<"$status" || fail "status: dhtdump-$i not running"
done
[ "$total" -eq 44 ] || fail "status: the dht nodes hold $total records, not 44"
for name in logfilesnode-0 logfilesnode-1 queuenode-0 queuenode-1; do
    line=$(grep "^$name " <<<"$status") || fail "status has no $name"
    read -r _ kind _ _ state _ <<<"$line"
    [ "$kind" = "${name%node-*}" ] && [ "$state" = running ] || fail "status: $line"
done
grep -q '^dht ranges: the 3 nodes tile the hash space' <<<"$status" || fail "status: ranges"

step "logs moved away as logrotate does (nocreate), then SIGHUP: each process makes new ones"
for dir in "$CLUSTER/dhtnode-0" "$CLUSTER/dhtnode-0/dump" "$CLUSTER/queuenode-0"; do
    mv "$dir/log/root.log" "$dir/log/root.log.1"
    mv "$dir/log/stats.log" "$dir/log/stats.log.1"
    kill -HUP "$(<"$dir/pid")"
    wait_for 5 "${dir#"$CLUSTER"/} to reopen its root.log" grep -q 'reopened' "$dir/log/root.log"
done

step "SIGKILL a dht node, restore it from its dhtdump's files"
NODE=$CLUSTER/dhtnode-1
addr=$(<"$NODE/addr")
node_stats=$("${SWARMCTL[@]}" --node "$addr" stats)
mapfile -t node_channels < <(awk '$1 ~ /^channel\/.*\/records$/ && $2 > 0 { split($1, p, "/"); print p[2] }' <<<"$node_stats")
[ ${#node_channels[@]} -gt 0 ] || fail "dhtnode-1 holds no records"
# dumped_all CH N: dhtdump's file of CH holds N records.
dumped_all() {
    [ -f "$NODE/dump/data/$1.dump" ] &&
        [ "$("$BIN_DIR/dumptool" export "$NODE/dump/data/$1.dump" | wc -l)" -eq "$2" ]
}
for ch in "${node_channels[@]}"; do
    n=$(awk -v n="channel/$ch/records" '$1 == n { print $2 }' <<<"$node_stats")
    wait_for 15 "dhtdump-1 to dump all $n records of $ch" dumped_all "$ch" "$n"
done
# What was dumped before the kill, as "hexkey<TAB>value" lines.
for ch in "${node_channels[@]}"; do
    "$BIN_DIR/dumptool" export "$NODE/dump/data/$ch.dump" | while IFS=: read -r key value; do
        printf '%s\t%s\n' "$key" "$(printf '%s' "$value" | base64 -d)"
    done | sort >"$TMP/dumped.$ch"
done
pid=$(<"$NODE/pid")
kill -KILL "$pid"
wait_for 5 "dhtnode-1 to die" bash -c "! kill -0 $pid 2>/dev/null || grep -q '^[0-9]* ([^)]*) Z' /proc/$pid/stat"
status=$("${CL[@]}" status 2>&1) && fail "status succeeds with a dead node"
grep -qE '^dhtnode-1 +- .* dead ' <<<"$status" || fail "status does not show dhtnode-1 dead: $status"
# swarmctl health agrees: degraded (exit 1), with the very nodes status finds not running.
rc=0
health=$("${SWARMCTL[@]}" --nodes "$TOPO" health $SWARM_HEALTH_ARGS 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "health exits $rc with a dead node: $health"
bad_status=$(awk '$1 ~ /node-[0-9]+$/ && $5 != "running" { print $3 }' <<<"$status" | sort)
bad_health=$(awk '$1 ~ /^[0-9.]+:[0-9]+$/ && $3 != "up" { print $1 }' <<<"$health" | sort)
[ -n "$bad_status" ] && [ "$bad_status" = "$bad_health" ] ||
    fail "status and health disagree: status finds [$bad_status] not running, health [$bad_health] not up"
grep -q "^health: DEGRADED" <<<"$status" && grep -qF "node $addr (dht): down" <<<"$status" ||
    fail "status does not show health's verdict: $status"
expect "cluster.sh restore dhtnode-1" "${CL[@]}" restore dhtnode-1
[ "$(<"$NODE/addr")" = "$addr" ] || fail "dhtnode-1 came back on another address"
for ch in "${node_channels[@]}"; do
    "${SWARMCTL[@]}" --nodes "$TOPO" dht getall "$ch" | sort >"$TMP/after.$ch" || fail "getall $ch after the restore"
    missing=$(comm -23 "$TMP/dumped.$ch" "$TMP/after.$ch")
    [ -z "$missing" ] || fail "records dumped before the kill are missing after the restore: $missing"
    echo "   $ch: all $(wc -l <"$TMP/dumped.$ch") records dhtdump-1 had dumped are back"
done
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht getall users | wc -l)" -eq 39 ] || fail "users: not 39 records after the restore"
expect "status after the restore" "${CL[@]}" status

step "cluster.sh stop, start again, stop"
out=$("${CL[@]}" stop 2>&1) || fail "stop failed: $out"
[ "$(grep -c '^cluster.sh: stopped ' <<<"$out")" -eq 10 ] || fail "stop did not report 10 processes: $out"
pidfiles=("$CLUSTER"/*/pid "$CLUSTER"/*/dump/pid)
[ ${#pidfiles[@]} -eq 0 ] || fail "pid files left: ${pidfiles[*]}"
for dir in "$CLUSTER"/*node-*; do
    tail -n 1 "$dir/log/root.log" | grep -q 'shutdown complete' || fail "${dir##*/} did not shut down cleanly"
done
status=$("${CL[@]}" status 2>&1) && fail "status succeeds with the cluster stopped"
[ "$(grep -cE '^[a-z]+node-[0-9] .* stopped ' <<<"$status")" -eq 7 ] || fail "status after stop: $status"
expect "cluster.sh start (again)" "${CL[@]}" start
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht getall users | wc -l)" -eq 39 ] || fail "the nodes lost records over a stop and start"
expect "cluster.sh stop (again)" "${CL[@]}" stop
expect "cluster.sh clean" "${CL[@]}" clean
[ ! -e "$CLUSTER" ] || fail "clean left $CLUSTER"

step "cluster.sh start --tls: every node and dhtdump over TLS"
expect "cluster.sh start --tls" "${CL[@]}" start --tls --dht 1 --logfiles 1 --queue 1 --dump-period 1
grep -qx '\[tls\]' "$TOPO" && grep -q '^ca_file = ' "$TOPO" || fail "no [tls] in the topology: $(cat "$TOPO")"
expect "put over TLS" "${SWARMCTL[@]}" --nodes "$TOPO" dht put secrets 1 hidden
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" dht get secrets 1)" = hidden ] || fail "get over TLS"
[ "$("${SWARMCTL[@]}" --nodes "$TOPO" ping | grep -c ' kind=')" -eq 3 ] || fail "ping over TLS"
for name in dhtnode-0 logfilesnode-0 queuenode-0; do
    grep -q 'tls on' "$CLUSTER/$name/log/root.log" || fail "$name does not say tls on"
    ! "${SWARMCTL[@]}" --timeout-ms 2000 --node "$(<"$CLUSTER/$name/addr")" ping >/dev/null 2>&1 ||
        fail "$name answered a client in clear"
done
wait_for 10 "dhtdump-0 to dump over TLS" test -f "$CLUSTER/dhtnode-0/dump/data/secrets.dump"
status=$("${CL[@]}" status 2>&1) || fail "status of the TLS cluster failed: $status"
expect "cluster.sh stop (TLS)" "${CL[@]}" stop
expect "cluster.sh clean (TLS)" "${CL[@]}" clean
