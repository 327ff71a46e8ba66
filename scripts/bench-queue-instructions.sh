#!/usr/bin/env bash
# Instructions the queue node spends per Push or Pop, counted by valgrind's callgrind: a count
# that does not depend on what else the machine runs (unlike ops/s or CPU time on a shared
# machine), for before/after comparisons of the request path (issue 22).
#
# usage: scripts/bench-queue-instructions.sh push|pop [REQUESTS]   (default 200000)
#
# Starts queuenode under callgrind (one channel, a ring holding every record of the run), then
# with `queue_load -c 50 -P 16 -d 100` (the benchmark's shape):
# - push: zero the counters, push REQUESTS then 3 x REQUESTS, dumping the counters after each;
# - pop: push 4 x REQUESTS first (not counted), zero, pop REQUESTS then 3 x REQUESTS, dumping.
# The difference of the two dumps over 2 x REQUESTS is the node's instructions per request in
# the steady state (the 50 connections' set-up cancels out). The first dump's figure is printed
# as well. Syscalls and the kernel's work are not counted (callgrind sees user space only): use
# `perf stat` / `strace -c -f` on a native run for those.
#
# KEEP=1 keeps the dumps (the work directory is printed) for `callgrind_annotate`.
# BIN_DIR=DIR uses the queuenode and queue_load binaries in DIR instead of building them (a
# before/after comparison: copy the release binaries of the commit before aside first).
#
# Needs valgrind (Debian package). Loopback only; cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
requests=${2:-200000}
case "$mode" in
    push | pop) ;;
    *) echo "usage: $0 push|pop [REQUESTS]" >&2; exit 2 ;;
esac
[[ "$requests" =~ ^[1-9][0-9]*$ ]] || { echo "REQUESTS must be a positive integer" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. scripts/lib/bench-common.sh
release_bins "${BIN_DIR:-}" -p queuenode -p benches --bin queuenode --bin queue_load
scratch_dir bench-queue-instructions
# A node under valgrind takes long to start.
listen_timeout_s=60

# A ring for 4 x REQUESTS records of 100 bytes (120 ring bytes each), with room to spare.
ring_bytes=$(( (4 * requests * 120 * 2 / 4096 + 1) * 4096 ))
config=$(printf '[queue]\nchannel_size_bytes = %d\n[log]\nstats_interval_s = 3600' "$ring_bytes")
launch_node "$work" "$config" valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
    "$bin/queuenode" || exit 1
addr=$node_addr
load=("$bin/queue_load" --addr "$addr" -c 50 -P 16 -d 100 --timeout-s 3600)
if [ "$mode" = pop ]; then
    "${load[@]}" --mode push --count $((4 * requests)) > "$work/fill.txt"
fi
callgrind_control -z "$node_pid" > /dev/null 2>&1
"${load[@]}" --mode "$mode" --count "$requests" > "$work/run1.txt"
callgrind_control -d "$node_pid" > /dev/null 2>&1
"${load[@]}" --mode "$mode" --count $((3 * requests)) > "$work/run2.txt"
callgrind_control -d "$node_pid" > /dev/null 2>&1
stop_node TERM
first=$(callgrind_summary "$(ls "$work"/cg.*.1)")
second=$(callgrind_summary "$(ls "$work"/cg.*.2)")
echo "$mode: $((first / requests)) instructions per request over the first $requests" \
    "(50 connections' set-up included), $(((second - first) / (2 * requests))) in the steady state"
