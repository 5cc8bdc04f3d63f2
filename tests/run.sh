#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which
# start the real server on 127.0.0.1 port 0 with a fresh database each.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
