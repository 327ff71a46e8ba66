#!/usr/bin/env bash
# How cost grows (DESIGN.md §6, issue 22): the dht node and redis-server side by side, on
# loopback, along three axes, each point ours and Redis's in one run:
#   connections  10, 50, 500, 5000 (1M records of 100 bytes)
#   records      1M, 10M, 50M (50 connections, 100-byte values), with the memory per record
#   value size   100 B, 1 KiB, 16 KiB, 256 KiB (50 connections; as many records as fit in
#                --value-budget-mb, at most 1M)
# At every point: get and put, pipeline depth 1 and 16, uniform keys over all the records (gets
# hit, puts overwrite), each run --seconds long after 0.5 s of warm-up: throughput, p99, and the
# CPU shares of the server and of the generator (which one saturates shows what bends a curve).
#
#   scripts/bench-scaling.sh [--quick] [--axes LIST] [--connections LIST] [--records LIST]
#                            [--value-sizes LIST] [--ops LIST] [--pipeline LIST] [--seconds S]
#                            [--value-budget-mb M] [--durability MODE] [--rt] [--out DIR]
#                            [--dry-run | --replot]
#
# Servers: a dhtnode (max_connections raised to 10100; `durability = "none"`, no change log, by
# default: --durability) and redis-server without persistence
# (maxclients 10100, tcp-backlog 4096), pinned to core 0; benches' `loadgen` (swarm protocol /
# RESP, the same keys and values) on core 1. The records axis starts one server at a time, fresh
# for every point (a 50M-record point needs about 13 GiB for Redis; the memory a point needs is
# checked against MemAvailable before it starts, and a point that does not fit is FAILED, not
# started); the connections and value axes keep both servers up, filled once per point.
#
# Output (in --out DIR, default a temporary directory): scaling.md (the tables), one PNG per axis
# (scaling-connections.png, scaling-records.png, scaling-values.png: throughput and p99 against
# the axis, log scales) and scaling-memory.png (bytes per record against records), points.tsv
# and memory.tsv (every measurement), raw/ (loadgen's JSON). A measurement that fails (a server
# that does not start or dies, a generator that times out) is a FAILED entry with its reason and
# the run goes on; the script exits 1 at the end if any did.
#
# Options:
#   --quick             a subset for a try-out (a few minutes): --seconds 2 --connections 10,50,500
#                       --records 100000,1000000 --value-sizes 100,16384 --pipeline 16; options
#                       after it override it
#   --axes LIST         comma-separated subset of connections, records, values (default: all)
#   --connections LIST  connection counts of the connections axis (default 10,50,500,5000)
#   --records LIST      record counts of the records axis (default 1000000,10000000,50000000)
#   --value-sizes LIST  value bytes of the value axis (default 100,1024,16384,262144)
#   --ops LIST          get, put or both (default get,put)
#   --pipeline LIST     pipeline depths (default 1,16)
#   --seconds S         length of each measured run (default 5)
#   --value-budget-mb M bytes of values per server on the value axis (default 2048): records =
#                       min(1000000, M MiB / value size)
#   --durability MODE   the dht node's change log: none (default; Redis runs without persistence,
#                       so both keep their data in memory only), interval or always (Redis stays
#                       without persistence: the cost of our log, not a like-for-like comparison)
#   --rt                servers and generators SCHED_FIFO (chrt -f 10), as bench-vs-redis.sh
#   --out DIR           where the results go (default: a temporary directory, printed at the end)
#   --dry-run           print the points, the memory each needs against MemAvailable and the
#                       runs, then exit (builds and starts nothing)
#   --replot            only rebuild scaling.md and the PNGs from --out DIR's points.tsv
#
# Installs redis-server/redis-tools, jq and gnuplot (gnuplot-nox) with apt-get when missing
# (needs root). Uses only 127.0.0.1, bounds every run with `timeout`, and kills what it started
# on exit.
set -euo pipefail

seconds=5
rt=0
out=""
connections=50
value_size=100
axes="connections,records,values"
connections_list="10,50,500,5000"
records_list="1000000,10000000,50000000"
values_list="100,1024,16384,262144"
ops_list="get,put"
pipeline_list="1,16"
value_budget_mb=2048
durability=none
mode=run
base_records=1000000
max_connections=10100

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/bench-common.sh
. "$root/scripts/lib/bench-common.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick)
            seconds=2; connections_list="10,50,500"; records_list="100000,1000000"
            values_list="100,16384"; pipeline_list="16" ;;
        --axes) need_value "$1" $#; axes="$2"; shift ;;
        --connections) need_value "$1" $#; connections_list="$2"; shift ;;
        --records) need_value "$1" $#; records_list="$2"; shift ;;
        --value-sizes) need_value "$1" $#; values_list="$2"; shift ;;
        --ops) need_value "$1" $#; ops_list="$2"; shift ;;
        --pipeline) need_value "$1" $#; pipeline_list="$2"; shift ;;
        --seconds) need_value "$1" $#; seconds="$2"; shift ;;
        --value-budget-mb) need_value "$1" $#; value_budget_mb="$2"; shift ;;
        --durability) need_value "$1" $#; durability="$2"; shift ;;
        --rt) rt=1 ;;
        --out) need_value "$1" $#; out="$2"; shift ;;
        --dry-run) mode=dry-run ;;
        --replot) mode=replot ;;
        -h|--help) usage ;;
        *) echo "unknown option $1" >&2; usage ;;
    esac
    shift
done

# number_list NAME LIST MAX: the comma-separated positive integers of LIST, each at most MAX,
# one per line; exits 2 naming the option otherwise.
number_list() {
    local n
    [ -n "$2" ] || { echo "--$1: empty list" >&2; exit 2; }
    IFS=, read -r -a _items <<< "$2"
    for n in "${_items[@]}"; do
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "--$1: not a positive number: '$n'" >&2; exit 2; }
        if [ "${#n}" -gt 12 ] || [ "$n" -gt "$3" ]; then echo "--$1: $n is above $3" >&2; exit 2; fi
        echo "$n"
    done
}
# word_list NAME LIST WORD...: the words of LIST, each one of WORD...; exits 2 otherwise.
word_list() {
    local name=$1 list=$2 w
    shift 2
    IFS=, read -r -a _items <<< "$list"
    [ ${#_items[@]} -gt 0 ] || { echo "--$name: empty list" >&2; exit 2; }
    for w in "${_items[@]}"; do
        [[ " $* " == *" $w "* ]] || { echo "--$name: unknown '$w' ($*)" >&2; exit 2; }
        echo "$w"
    done
}
positive_numbers "$seconds" "$value_budget_mb"
case "$durability" in none | interval | always) ;; *) echo "--durability: expected none, interval or always, got \"$durability\"" >&2; exit 2 ;; esac
# Checked here first (a failure exits), then read (mapfile cannot see a failed substitution).
word_list axes "$axes" connections records values > /dev/null
number_list connections "$connections_list" 10000 > /dev/null
number_list records "$records_list" 1000000000 > /dev/null
number_list value-sizes "$values_list" 1048576 > /dev/null
word_list ops "$ops_list" get put > /dev/null
number_list pipeline "$pipeline_list" 4096 > /dev/null
mapfile -t axis_names < <(word_list axes "$axes" connections records values)
mapfile -t conns_points < <(number_list connections "$connections_list" 10000)
mapfile -t records_points < <(number_list records "$records_list" 1000000000)
mapfile -t value_points < <(number_list value-sizes "$values_list" 1048576)
mapfile -t ops < <(word_list ops "$ops_list" get put)
mapfile -t pipelines < <(number_list pipeline "$pipeline_list" 4096)

# ---- memory ----------------------------------------------------------------------------------

# need_mb RECORDS VALUE: memory one server needs for RECORDS records of VALUE bytes, in MiB.
# Redis, the larger of the two, holds about 94 bytes per record beside the value (193.5 bytes
# per 100-byte record, docs/benchmarks.md); a quarter on top covers its hash table doubling and
# the allocator, plus 512 MiB for the process and the generator.
need_mb() { echo $(( $1 * ($2 + 100) * 5 / 4 / 1048576 + 512 )); }
available_mb() { awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo; }
values_records() { local n=$(( value_budget_mb * 1048576 / $1 )); echo $(( n < base_records ? n : base_records )); }

# ---- the plan --------------------------------------------------------------------------------

plan() {
    local axis x runs=0 fills=0 avail
    avail=$(available_mb)
    local per_point=$(( ${#ops[@]} * ${#pipelines[@]} * 2 ))
    for axis in "${axis_names[@]}"; do
        case "$axis" in
            connections)
                echo "connections: ${conns_points[*]} (records $base_records, 100 B; both servers up: needs $(( 2 * $(need_mb "$base_records" 100) )) MiB of $avail MiB available)"
                runs=$(( runs + ${#conns_points[@]} * per_point )); fills=$(( fills + 2 * base_records )) ;;
            records)
                for x in "${records_points[@]}"; do
                    if [ "$(need_mb "$x" 100)" -le "$avail" ]; then
                        echo "records $x (50 conns, 100 B; one server at a time: needs $(need_mb "$x" 100) MiB of $avail MiB available)"
                        fills=$(( fills + 2 * x )); runs=$(( runs + per_point ))
                    else
                        echo "records $x: needs $(need_mb "$x" 100) MiB, $avail MiB available: DOES NOT FIT, will be FAILED"
                    fi
                done ;;
            values)
                for x in "${value_points[@]}"; do
                    echo "value size $x B ($(values_records "$x") records, 50 conns; both servers up: needs $(( 2 * $(need_mb "$(values_records "$x")" "$x") )) MiB of $avail MiB available)"
                    fills=$(( fills + 2 * $(values_records "$x") ))
                done
                runs=$(( runs + ${#value_points[@]} * per_point )) ;;
        esac
    done
    echo "ops: ${ops[*]}; pipeline: ${pipelines[*]}; $runs runs of ${seconds} s, $fills records to fill; about $(( (runs * (seconds + 2) + fills / 400000) / 60 + 1 )) min"
}

# ---- servers and runs ------------------------------------------------------------------------

kind_of() { if [ "$1" = ours ]; then echo dht; else echo redis; fi; }

# setup_side SIDE RECORDS VALUE PREFIX: starts SIDE (ours or redis), fills it with RECORDS keys
# of VALUE bytes; sets SIDE_pid and SIDE_addr (run_step hands them over) and writes
# "rss_empty rss used_memory" (bytes; used_memory 0 for ours) to PREFIX.mem.
# shellcheck disable=SC2031
setup_side() {
    local side=$1 n=$2 value=$3 prefix=$4 rss_empty used=0 need avail
    need=$(need_mb "$n" "$value"); avail=$(available_mb)
    [ "$need" -le "$avail" ] ||
        row_error "$side with $n records of $value B needs about $need MiB of memory, $avail MiB available"
    if [ "$side" = ours ]; then
        start_dhtnode "$tmp/ours" "$(printf '[server]\nmax_connections = %d\n[dht]\ndurability = "%s"' "$max_connections" "$durability")"
    else
        start_redis none --maxclients "$max_connections" --tcp-backlog 4096
    fi
    rss_empty=$(rss_bytes "$srv_pid")
    log "$side: filling $n records of $value B"
    loadgen_prefill "$prefix.prefill.txt" "$(kind_of "$side")" "$srv_addr" "$n" "$value"
    sleep 1
    if [ "$side" = redis ]; then
        used=$(redis-cli -p "$srv_port" info memory | awk -F: '/^used_memory:/ {print $2+0}')
    fi
    echo "$rss_empty $(rss_bytes "$srv_pid") $used" > "$prefix.mem"
    printf -v "${side}_pid" '%s' "$srv_pid"
    printf -v "${side}_addr" '%s' "$srv_addr"
    step_vars+=("${side}_pid" "${side}_addr")
}

# up SIDE RECORDS VALUE PREFIX: setup_side as a step; SIDE_ok and SIDE_reason tell the runs.
up() {
    run_step "$4" setup_side "$@"
    printf -v "$1_ok" '%s' "$step_ok"
    printf -v "$1_reason" '%s' "$1 did not come up: $step_reason"
}

# down SIDE: stops it (SIGKILL: no shutdown dump, no RDB) and waits until its memory is free.
down() {
    local pid_var="$1_pid" ok_var="$1_ok"
    if [ "${!ok_var:-0}" -eq 1 ]; then stop_pid "${!pid_var}"; fi
    printf -v "$1_ok" '%s' 0
    if [ "$1" = ours ]; then rm -rf "$tmp/ours"; else rm -rf "$tmp/srv"; fi
}

# point AXIS X SIDE OP P CONNS VALUE RECORDS: one measured run; its result, or FAILED and why,
# goes to points.tsv.
point() {
    local axis=$1 x=$2 side=$3 op=$4 p=$5 conns=$6 value=$7 n=$8
    local prefix="$out/raw/$axis-$x-$side-$op-p$p" ok_var="$3_ok" reason_var="$3_reason"
    local pid_var="$3_pid" addr_var="$3_addr"
    if [ "${!ok_var}" -ne 1 ]; then
        printf '%s\t%s\t%s\t%s\t%s\tFAILED\t%s\n' "$axis" "$x" "$side" "$op" "$p" "${!reason_var}" >> "$points"
        return 0
    fi
    log "$axis = $x: $side $op P=$p ($conns conns, $value B, $n records)"
    run_step "$prefix" loadgen_run "$prefix" "$(kind_of "$side")" "${!addr_var}" "${!pid_var}" \
        "$op" "$p" "uniform:$n" "$conns" "$value"
    if [ "$step_ok" -eq 1 ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$axis" "$x" "$side" "$op" "$p" \
            "$(tail -n 1 "$prefix.runs" | tr ' ' '\t')" >> "$points"
    else
        printf '%s\t%s\t%s\t%s\t%s\tFAILED\t%s\n' "$axis" "$x" "$side" "$op" "$p" "$step_reason" >> "$points"
    fi
}

# runs AXIS X INDEX CONNS VALUE RECORDS: every op and depth at one point, both sides; the side
# that goes first alternates with INDEX, so that drift favours neither.
runs() {
    local axis=$1 x=$2 conns=$4 value=$5 n=$6 op p side sides=(ours redis)
    if [ $(( $3 % 2 )) -eq 1 ]; then sides=(redis ours); fi
    for op in "${ops[@]}"; do
        for p in "${pipelines[@]}"; do
            for side in "${sides[@]}"; do point "$axis" "$x" "$side" "$op" "$p" "$conns" "$value" "$n"; done
        done
    done
}

axis_connections() {
    local i=0 c
    up ours "$base_records" 100 "$out/raw/connections-ours"
    up redis "$base_records" 100 "$out/raw/connections-redis"
    for c in "${conns_points[@]}"; do
        runs connections "$c" "$i" "$c" 100 "$base_records"
        i=$((i + 1))
    done
    down ours; down redis
}

axis_records() {
    local i=0 n side sides ok_var
    for n in "${records_points[@]}"; do
        sides=(ours redis)
        if [ $(( i % 2 )) -eq 1 ]; then sides=(redis ours); fi
        # One server at a time: a 50M-record point needs all the memory one of them takes.
        for side in "${sides[@]}"; do
            up "$side" "$n" 100 "$out/raw/records-$n-$side"
            ok_var="${side}_ok"
            if [ "${!ok_var}" -eq 1 ]; then
                printf '%s\t%s\t%s\n' "$n" "$side" \
                    "$(tr ' ' '\t' < "$out/raw/records-$n-$side.mem")" >> "$memory"
            fi
            runs_one_side records "$n" "$side" 50 100 "$n"
            down "$side"
        done
        i=$((i + 1))
    done
}

# runs_one_side AXIS X SIDE CONNS VALUE RECORDS: every op and depth at one point, one side.
runs_one_side() {
    local op p
    for op in "${ops[@]}"; do
        for p in "${pipelines[@]}"; do point "$1" "$2" "$3" "$op" "$p" "$4" "$5" "$6"; done
    done
}

axis_values() {
    local i=0 v n
    for v in "${value_points[@]}"; do
        n=$(values_records "$v")
        up ours "$n" "$v" "$out/raw/values-$v-ours"
        up redis "$n" "$v" "$out/raw/values-$v-redis"
        runs values "$v" "$i" 50 "$v" "$n"
        down ours; down redis
        i=$((i + 1))
    done
}

# ---- the report ------------------------------------------------------------------------------

# axis_table AXIS TITLE: the markdown table of one axis from points.tsv.
axis_table() {
    awk -F'\t' -v axis="$1" -v title="$2" '
    $1 == axis {
        key = $2 SUBSEP $4 SUBSEP $5
        if (!(key in seen)) { seen[key] = 1; keys[++n] = key }
        if ($6 == "FAILED") { failed[key, $3] = $7 } else {
            ops[key, $3] = $6; p99[key, $3] = $7; gen[key, $3] = $8; srv[key, $3] = $9
        }
    }
    function cell(key, side) {
        if ((key, side) in failed) return "FAILED: " failed[key, side]
        if (!((key, side) in ops)) return "–"
        return ops[key, side]
    }
    function num(v) { return (v == "" ? "–" : v) }
    END {
        if (n == 0) exit
        printf "| %s | op | P | ours ops/s | Redis ops/s | ours / Redis | ours p99 µs | Redis p99 µs | server CPU ours / Redis | loadgen CPU ours / Redis |\n", title
        print "|---:|---|---:|---:|---:|---:|---:|---:|---|---|"
        # Sort by x (numeric), then op, then P.
        for (i = 1; i <= n; i++) order[i] = i
        for (i = 2; i <= n; i++) for (j = i; j > 1; j--) {
            split(keys[order[j - 1]], a, SUBSEP); split(keys[order[j]], b, SUBSEP)
            if (a[1] + 0 > b[1] + 0 || (a[1] + 0 == b[1] + 0 && (a[2] > b[2] || (a[2] == b[2] && a[3] + 0 > b[3] + 0)))) {
                t = order[j]; order[j] = order[j - 1]; order[j - 1] = t
            } else break
        }
        for (i = 1; i <= n; i++) {
            key = keys[order[i]]; split(key, k, SUBSEP)
            o = ops[key, "ours"]; r = ops[key, "redis"]
            ratio = (o != "" && r != "" && r > 0) ? sprintf("**%.2f×**", o / r) : "–"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |\n", k[1], k[2], k[3],
                cell(key, "ours"), cell(key, "redis"), ratio, num(p99[key, "ours"]), num(p99[key, "redis"]),
                num(srv[key, "ours"]), num(srv[key, "redis"]), num(gen[key, "ours"]), num(gen[key, "redis"])
        }
    }' "$points"
}

memory_table() {
    [ -s "$memory" ] || return 0
    echo "| records | ours RSS bytes/record | Redis RSS bytes/record | Redis used_memory bytes/record | ours / Redis RSS | net of the empty process: ours / Redis RSS |"
    echo "|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '{ e[$1, $2] = $3; r[$1, $2] = $4; u[$1, $2] = $5; if (!($1 in seen)) { seen[$1] = 1; n[++c] = $1 } }
        END {
            for (i = 1; i <= c; i++) {
                x = n[i]; o = r[x, "ours"]; R = r[x, "redis"]
                printf "| %d | %s | %s | %s | %s | %s |\n", x,
                    (o != "" ? sprintf("%.1f", o / x) : "FAILED"), (R != "" ? sprintf("%.1f", R / x) : "FAILED"),
                    (R != "" ? sprintf("%.1f", u[x, "redis"] / x) : "–"),
                    (o != "" && R != "" ? sprintf("**%.3f×**", o / R) : "–"),
                    (o != "" && R != "" ? sprintf("%.1f / %.1f", (o - e[x, "ours"]) / x, (R - e[x, "redis"]) / x) : "–")
            }
        }' "$memory" | sort -t'|' -k2,2n
}

# plot_axis AXIS XLABEL [logy]: AXIS's PNG: throughput (left; log scale with logy) and p99 (right)
# against the axis, one line per side, op and depth.
plot_axis() {
    local axis=$1 xlabel=$2 dir="$out/plot-data" series=() side op p file ops_scale
    ops_scale=$([ "${3:-}" = logy ] && echo 'set logscale y' || echo 'set yrange [0:*]')
    mkdir -p "$dir"
    for side in ours redis; do
        for op in get put; do
            # shellcheck disable=SC2013
            for p in $(awk -F'\t' -v a="$axis" '$1 == a {print $5}' "$points" | sort -un); do
                file="$dir/$axis-$side-$op-p$p.dat"
                awk -F'\t' -v a="$axis" -v s="$side" -v o="$op" -v p="$p" \
                    '$1 == a && $3 == s && $4 == o && $5 == p && $6 != "FAILED" {print $2, $6, $7}' \
                    "$points" | sort -n > "$file"
                if [ -s "$file" ]; then series+=("$file|$side $op P=$p|$side|$op"); fi
            done
        done
    done
    [ ${#series[@]} -gt 0 ] || return 0
    local plot_ops="" plot_p99="" entry f title s o style
    for entry in "${series[@]}"; do
        IFS='|' read -r f title s o <<< "$entry"
        style="lc rgb '$([ "$s" = ours ] && echo '#1f5fbf' || echo '#c0392b')' dt $([ "$o" = get ] && echo 1 || echo 2)"
        plot_ops+="'$f' using 1:2 with linespoints $style title '$title', "
        plot_p99+="'$f' using 1:3 with linespoints $style title '$title', "
    done
    gnuplot <<EOF
set terminal pngcairo size 1400,560 font ",10" noenhanced
set output "$out/scaling-$axis.png"
set multiplot layout 1,2 title "dhtnode (blue) vs redis-server (red): $xlabel; solid get, dashed put"
set logscale x
set grid
set key outside bottom center horizontal
set xlabel "$xlabel"
set ylabel "ops/s"
$ops_scale
plot ${plot_ops%, }
set logscale y
set yrange [*:*]
set ylabel "p99 latency, µs"
plot ${plot_p99%, }
unset multiplot
EOF
}

plot_memory() {
    [ -s "$memory" ] || return 0
    local file="$out/plot-data/memory.dat"
    mkdir -p "$out/plot-data"
    awk -F'\t' '{ r[$1, $2] = $4 / $1; u[$1, $2] = $5 / $1; seen[$1] = 1 }
        END { for (x in seen) if ((x, "ours") in r && (x, "redis") in r)
            print x, r[x, "ours"], r[x, "redis"], u[x, "redis"] }' "$memory" | sort -n > "$file"
    [ -s "$file" ] || return 0
    gnuplot <<EOF
set terminal pngcairo size 800,520 font ",10" noenhanced
set output "$out/scaling-memory.png"
set title "Memory per record, 100-byte values"
set logscale x
set grid
set xlabel "records"
set ylabel "bytes per record"
set yrange [0:*]
set key bottom right
plot '$file' using 1:2 with linespoints lc rgb '#1f5fbf' title 'dhtnode RSS', \
     '$file' using 1:3 with linespoints lc rgb '#c0392b' title 'redis-server RSS', \
     '$file' using 1:4 with linespoints lc rgb '#c0392b' dt 2 title 'redis-server used_memory'
EOF
}

report() {
    local table="$out/scaling.md"
    {
        [ ! -f "$out/machine.md" ] || cat "$out/machine.md"
        echo
        echo "Command: scripts/bench-scaling.sh ${command_line:-(replotted)}"
        echo
        echo "### Connections (1M records of 100 bytes)"
        echo
        axis_table connections connections
        echo
        echo "### Records (50 connections, 100-byte values)"
        echo
        axis_table records records
        echo
        memory_table
        echo
        echo "### Value size (50 connections; records = min(1M, value budget / size))"
        echo
        axis_table values "value bytes"
        echo
        echo "Plots: scaling-connections.png, scaling-records.png, scaling-values.png, scaling-memory.png"
    } > "$table"
    local axis
    for axis in connections records values; do
        case "$axis" in
            connections) plot_axis connections "connections" ;;
            records) plot_axis records "records" ;;
            values) plot_axis values "value bytes" logy ;;
        esac
    done
    plot_memory
    cat "$table"
}

# ---- main ------------------------------------------------------------------------------------

if [ "$mode" = dry-run ]; then plan; exit 0; fi
if [ "$mode" = replot ]; then
    if [ -z "$out" ] || [ ! -s "$out/points.tsv" ]; then
        echo "--replot needs --out DIR with a points.tsv" >&2; exit 2
    fi
    need_packages gnuplot:gnuplot-nox
    points="$out/points.tsv"; memory="$out/memory.tsv"
    report
    exit 0
fi
command_line="--axes $(IFS=,; echo "${axis_names[*]}") --connections $(IFS=,; echo "${conns_points[*]}") --records $(IFS=,; echo "${records_points[*]}") --value-sizes $(IFS=,; echo "${value_points[*]}") --ops $(IFS=,; echo "${ops[*]}") --pipeline $(IFS=,; echo "${pipelines[*]}") --seconds $seconds --value-budget-mb $value_budget_mb --durability $durability"
if [ "$rt" -eq 1 ]; then command_line+=" --rt"; fi

cd "$root"
need_redis
need_packages gnuplot:gnuplot-nox
# 5000 connections: one descriptor each in the generator and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $(( max_connections + 100 )) ] ||
    { echo "open files limit $(ulimit -n) is below $((max_connections + 100)) (ulimit -n)" >&2; exit 1; }
plan >&2

log "building release binaries"
timeout 1800 cargo build --release -q -p dhtnode -p benches --bin dhtnode --bin loadgen
dhtnode="$root/target/release/dhtnode"
loadgen="$root/target/release/loadgen"

bench_sched
bench_workdir bench-scaling
mkdir -p "$out/raw"
rows_file="$out/rows.md"; : > "$rows_file"
points="$out/points.tsv"; : > "$points"
memory="$out/memory.tsv"; : > "$memory"
machine_info > "$out/machine.md"
cat "$out/machine.md" >&2
# Read through indirection (point, down).
# shellcheck disable=SC2034
ours_ok=0 redis_ok=0

for axis in "${axis_names[@]}"; do "axis_$axis"; done

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.md"
report
failed_rows=$(awk -F'\t' '$6 == "FAILED"' "$points" | wc -l)
echo "Results: $out"
finish_rows
