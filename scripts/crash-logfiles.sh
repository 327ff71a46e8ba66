#!/usr/bin/env bash
# The logfiles SIGKILL crash test (logfilesnode/tests/crash.rs) with many rounds: the real node
# under fsync = always is killed at random moments while three writers pipeline Puts; after each
# restart every acknowledged Put must be there, intact, and the directory must check clean.
# Usage: scripts/crash-logfiles.sh [ROUNDS]   (default 100; the test suite runs 6)
set -euo pipefail
cd "$(dirname "$0")/.."
LOGFILES_CRASH_ROUNDS="${1:-100}" cargo test --release -p logfilesnode --test crash -- --nocapture
