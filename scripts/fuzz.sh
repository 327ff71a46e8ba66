#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60).
#
#   scripts/fuzz.sh [SECONDS]
#
# The targets are the [[bin]] entries of fuzz/Cargo.toml (`cargo fuzz list`): the wire protocol
# (frame_decoder, batch_decoder, client_hello, and request_payloads: every request, reply, stream
# item and handshake body of every node kind), the dht dump readers (dht_dump_reader,
# tcm_reader), the logfiles bucket decoder and check (bucket_decoder) and bucket time index
# (bucket_index), the queue node's ring files and reference-node imports (queue_ring_file), the
# state files read back at start (state_files: the logfiles open-bucket journal and the dht range
# state), the credentials file (credentials_file) and every daemon's TOML config (config_files).
# Each target's invariants are in fuzz-checks/src/<target>.rs; `cargo test` replays every file of
# fuzz/seeds/<target>/ through them, so a crash input saved there as regression-<what> is checked
# from then on.
#
# Installs cargo-fuzz if it is missing. Uses the nightly toolchain when rustup has one, else the
# default toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly-only sanitizer flags).
# Corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>); a crashing input lands
# in fuzz/artifacts/<target>/. Exits non-zero if any target crashed (or failed to build/run);
# every target is run even after a failure, and a summary is printed at the end.
set -uo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS]   (a positive number of seconds per target; default 60)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz" || exit 2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz || { echo "cargo install cargo-fuzz failed" >&2; exit 2; }
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    echo "== no nightly toolchain; using RUSTC_BOOTSTRAP=1 with the default toolchain"
    export RUSTC_BOOTSTRAP=1
fi

targets=$(cargo "${toolchain[@]}" fuzz list) || { echo "cargo fuzz list failed" >&2; exit 2; }
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 2; }

failed=()
summary=()
for target in $targets; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    log="$(mktemp)"
    cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rm -f "$log"
    # Targets that need files (queue_ring_file, state_files) work in swarm-fuzz-<name>-<pid>
    # under /dev/shm or the temp directory; remove those of processes that have ended.
    for dir in /dev/shm/swarm-fuzz-* "${TMPDIR:-/tmp}"/swarm-fuzz-*; do
        [ -d "$dir" ] || continue
        kill -0 "${dir##*-}" 2>/dev/null || rm -rf "$dir"
    done
    if [ "$status" -eq 0 ]; then
        summary+=("$target: ok, ${execs:-?} execs, ${rate:-?} execs/s")
    else
        failed+=("$target")
        summary+=("$target: FAILED (exit $status); see fuzz/artifacts/$target/")
    fi
done

echo
echo "== summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashes or failures in: ${failed[*]}" >&2
    exit 1
fi
