#!/usr/bin/env bash
# Runs the whole test suite twice: on SQLite, then on a throwaway PostgreSQL
# that this script starts (and stops at the end). The integration tests start
# the real server on 127.0.0.1 port 0 with a database of their own; the
# multi-replica tests run in the PostgreSQL pass.
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

exit "$status"
