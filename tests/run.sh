#!/usr/bin/env bash
# Runs the whole test suite twice: on SQLite, then on a throwaway PostgreSQL
# that this script starts (and stops at the end). The integration tests start
# the real server on 127.0.0.1 port 0 with a database of their own; the
# multi-replica tests run in the PostgreSQL pass.
#
# Then it runs the load benchmark in its short mode (seconds, small seeds),
# to keep the harness working; its figures are not judged there.
#
# This is the README's test command; .ci/run calls exactly this. Plain
# `cargo test` runs the SQLite pass alone.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/postgres.sh

run_suite() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi
}

status=0

echo "== test suite on SQLite"
(unset TEST_POSTGRES_URL; run_suite) || status=1

echo "== test suite on PostgreSQL"
trap stop_postgres EXIT
start_postgres
run_suite || status=1
stop_postgres

echo "== load benchmark, short mode"
# h2load drives the cheapest calls when installed; without it the harness
# falls back to its own client.
if ! command -v h2load >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq nghttp2-client >/dev/null 2>&1 || echo "h2load could not be installed; continuing without it"
fi
cargo bench --bench load -- --short --output target/bench-results-short || status=1

exit "$status"
