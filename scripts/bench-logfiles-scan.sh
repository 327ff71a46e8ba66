#!/usr/bin/env bash
# logfiles reads (DESIGN.md §6): range scans and narrow queries in-process, GetRange over
# loopback, with every run's figures and whether each target holds in every run.
#
#   scripts/bench-logfiles-scan.sh [--records "N ..."] [--repeat R] [--rt] [--out DIR]
#                                  [--stream-window W]
#
# For each data set (--records, default "5000000 20000000": 0.58 GB in one bucket file, and
# 2.32 GB in three; 100-byte values, 2000 records per key), `logfiles_scan` (core 0) writes it
# once with BucketWriter (which saves each bucket's time index), then R runs (--repeat, default
# 3) of:
#   - local: `logfiles_scan --reuse` (core 0): cold, page cache, filtered, + LZ4 / uncompressed
#     batch passes over the whole range, then the one-key and 60-key queries (21 times each, the
#     median is the figure) against decoding just their records;
#   - network: a fresh `logfilesnode` (core 0, fsync none, defaults otherwise) serving the
#     directory, and `logfiles_scan --node` (core 1): GetRange over the whole range twice with
#     uncompressed batches, once with LZ4 ones, once filtered, while another connection sends
#     GetVersion every 10 ms.
# Targets, each judged on every run:
#   - a one-key query (2000 records) at most 2 ms in-process;
#   - a 60-key query (120 000 records) within 1.5× the time of decoding just those records;
#   - a whole-range GetRange (uncompressed batches) at least 1 GB/s of bucket-file bytes;
#   - GetVersion's maximum latency during that GetRange at most 20 ms.
#
# Options:
#   --records "N ..."   data set sizes (records)
#   --repeat R          runs per data set (default 3)
#   --rt                SCHED_FIFO for the node and the client (chrt -f 10), for a shared machine;
#                       beware: the kernel's RT throttling stops them for up to 50 ms once they
#                       have used 0.95 s of a second, which shows in GetVersion's maximum
#   --nice              nice -20 for the node and the client instead (no RT throttling; other
#                       work still gets slices of their cores)
#   --stream-window W   the client's stream window for GetRange (default: LogClient's, 64)
#   --out DIR           keep the raw JSON and tables there (default: a temp directory)
#
# Needs jq (apt-get installs it when missing, as root), taskset, timeout, and ~116 bytes per
# record free in /tmp. Uses only 127.0.0.1; kills what it started and deletes the data on exit.
set -euo pipefail

record_sets="5000000 20000000"
repeat=3
rt=0
nice_mode=0
out=""
window=""
value_size=100

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --records) need_value "$1" $#; record_sets="$2"; shift ;;
        --repeat) need_value "$1" $#; repeat="$2"; shift ;;
        --rt) rt=1 ;;
        --nice) nice_mode=1 ;;
        --stream-window) need_value "$1" $#; window="$2"; shift ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done
# shellcheck disable=SC2086
positive_numbers $record_sets "$repeat" ${window:+"$window"}
if ! command -v jq >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { echo "need jq (or root to apt-get install it)" >&2; exit 1; }
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq jq >/dev/null
fi
for tool in taskset timeout $([ "$rt" -eq 1 ] && echo chrt); do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 cores (node on 0, client on 1)" >&2; exit 1; }
cd "$root"

log "building release binaries"
timeout 1800 cargo build --release -q -p logfilesnode -p benches
logfilesnode="$root/target/release/logfilesnode"
logfiles_scan="$root/target/release/logfiles_scan"

bench_sched
if [ "$nice_mode" -eq 1 ]; then
    [ "$rt" -eq 0 ] || { echo "--rt and --nice exclude each other" >&2; exit 2; }
    server_run=(nice -n -20 taskset -c 0)
    client_run=(nice -n -20 taskset -c 1)
fi
bench_workdir bench-logfiles-scan
info_file="$out/machine.md"
machine_info > "$info_file"
[ "$nice_mode" -eq 0 ] || echo "- priority: nice -20 for the node and the client (--nice)" >> "$info_file"
cat "$info_file" >&2

# scan_local N RUN DIR: one in-process run (the first writes the data set).
scan_local() {
    local n=$1 run=$2 dir=$3 reuse=(--reuse) status=0
    [ "$run" -eq 1 ] && reuse=()
    timeout 3600 "${server_run[@]}" "$logfiles_scan" --dir "$dir" --records "$n" \
        --value-size "$value_size" "${reuse[@]}" --json "$out/local-$n-$run.json" \
        > "$out/local-$n-$run.txt" 2>&1 || status=$?
    [ "$status" -eq 0 ] || { echo "logfiles_scan failed ($status):" >&2; cat "$out/local-$n-$run.txt" >&2; exit 1; }
}

# scan_network N RUN DIR: one GetRange run against a fresh node serving DIR.
scan_network() {
    local n=$1 run=$2 dir=$3 status=0
    start_logfiles none "$dir"
    timeout 3600 "${client_run[@]}" "$logfiles_scan" --node --addr "$srv_addr" --records "$n" \
        --value-size "$value_size" --server-pid "$srv_pid" ${window:+--stream-window "$window"} \
        --json "$out/net-$n-$run.json" > "$out/net-$n-$run.txt" 2>&1 || status=$?
    stop_srv
    [ "$status" -eq 0 ] || { echo "logfiles_scan --node failed ($status):" >&2; cat "$out/net-$n-$run.txt" >&2; exit 1; }
}

for n in $record_sets; do
    dir="$tmp/scan-$n"
    for run in $(seq "$repeat"); do
        log "$n records, run $run of $repeat: in-process (core 0)"
        scan_local "$n" "$run" "$dir"
        log "$n records, run $run of $repeat: GetRange over loopback (node on core 0, client on core 1)"
        scan_network "$n" "$run" "$dir"
    done
    rm -rf "$dir"
done

tables="$out/tables.md"
{
    for n in $record_sets; do
        first="$out/local-$n-1.json"
        jq -r '"Data set: \(.records) records of \(.value_size) B, \(.per_key) per key, \(.buckets) bucket files, \(.file_bytes / 1e9 * 100 | round / 100) GB; written at \(.write.records_per_s / 1e6 * 100 | round / 100) M records/s by one BucketWriter."' "$first"
        echo
        echo "| $n records: pass, run | GB/s (bucket-file bytes) | M records/s | s | notes |"
        echo "|---|---:|---:|---:|---|"
        for run in $(seq "$repeat"); do
            jq -r --arg run "$run" '.passes[] | "| \(.label), run \($run) | \(.gb_per_s * 100 | round / 100) | \(.records_per_s / 1e4 | round / 100) | \(.seconds * 1000 | round / 1000) | \(.note // "") |"' "$out/local-$n-$run.json"
        done
        echo
        echo "| $n records: query, run | records | ms (median of 21) | min–max ms | records decoded | decoding just those records, ms | ratio | target |"
        echo "|---|---:|---:|---:|---:|---:|---:|---|"
        for run in $(seq "$repeat"); do
            jq -r --arg run "$run" '.queries[] | "| \(.label), run \($run) | \(.records) | \(.median_ms * 1000 | round / 1000) | \(.min_ms * 1000 | round / 1000)–\(.max_ms * 1000 | round / 1000) | \(.records_decoded) | \(.decode_only_median_ms * 1000 | round / 1000) | \(.ratio * 100 | round / 100) | \(.verdict) |"' "$out/local-$n-$run.json"
        done
        echo
        echo "| $n records: GetRange over loopback, run | GB/s (bucket-file bytes) | M records/s | wire MB/s | node CPU | client CPU | GetVersion p50 / max ms | target |"
        echo "|---|---:|---:|---:|---:|---:|---:|---|"
        for run in $(seq "$repeat"); do
            jq -r --arg run "$run" '.passes[] | "| \(.label), run \($run) | \(.gb_per_s * 100 | round / 100) | \(.records_per_s / 1e4 | round / 100) | \(.wire_mb_per_s | round) | \(.server_cpu_share // 0 | . * 100 | round / 100) | \(.client_cpu_share // 0 | . * 100 | round / 100) | \(.probe.p50_ms * 10 | round / 10) / \(.probe.max_ms * 10 | round / 10) | \(if .target then ((if .gb_per_s >= 1 then "✓" else "✗" end) + " ≥ 1 GB/s, " + (if .probe.max_ms <= 20 then "✓" else "✗" end) + " ≤ 20 ms") else "" end) |"' "$out/net-$n-$run.json"
        done
        echo
    done
    # Every target, judged on every run.
    jq -s -r '
        [.[] | select(.mode == "local") | .queries[]] as $q
        | "- one-key query ≤ 2 ms in every run: \(if all($q[] | select(.label == "one key"); .median_ms <= 2) then "holds" else "FAILS" end) (medians \([$q[] | select(.label == "one key") | .median_ms * 1000 | round / 1000] | map(tostring) | join(", ")) ms)",
          "- 60-key query ≤ 1.5× decoding its records in every run: \(if all($q[] | select(.label != "one key"); .ratio <= 1.5) then "holds" else "FAILS" end) (ratios \([$q[] | select(.label != "one key") | .ratio * 100 | round / 100] | map(tostring) | join(", ")))"' \
        "$out"/local-*.json
    jq -s -r '
        [.[] | .passes[] | select(.target)] as $p
        | "- whole-range GetRange ≥ 1 GB/s in every run: \(if all($p[]; .gb_per_s >= 1) then "holds" else "FAILS" end) (\([$p[] | .gb_per_s * 100 | round / 100] | map(tostring) | join(", ")) GB/s)",
          "- GetVersion max ≤ 20 ms during it in every run: \(if all($p[]; .probe.max_ms <= 20) then "holds" else "FAILS" end) (\([$p[] | .probe.max_ms * 10 | round / 10] | map(tostring) | join(", ")) ms)"' \
        "$out"/net-*.json
} > "$tables"

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$info_file"
echo
cat "$info_file"
echo
echo "Command: scripts/bench-logfiles-scan.sh --records \"$record_sets\" --repeat $repeat$([ "$rt" -eq 1 ] && echo ' --rt')$([ "$nice_mode" -eq 1 ] && echo ' --nice')${window:+ --stream-window $window}"
echo
cat "$tables"
echo
echo "Raw results: $out"
