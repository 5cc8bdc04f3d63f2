# Starts a throwaway PostgreSQL for the test suite; sourced by tests/run.sh.
#
# The server refuses to run as root, so under root it runs as an unprivileged
# user (`postgres` if it exists, else a system user created for it). It
# listens on a free port of 127.0.0.1, keeps its socket and data in a private
# temporary directory, trusts local connections (nothing else can reach it)
# and skips fsync: it only lives for the tests. `start_postgres durable`
# keeps PostgreSQL's durable defaults instead, for benchmarks.

pg_run() {
    if [ -n "${TEST_POSTGRES_RUN_AS:-}" ]; then
        runuser -u "$TEST_POSTGRES_RUN_AS" -- "$@"
    else
        "$@"
    fi
}

start_postgres() {
    for tool in initdb pg_ctl postgres; do
        command -v "$tool" >/dev/null || { echo "tests/postgres.sh: $tool is not on PATH" >&2; return 1; }
    done
    TEST_POSTGRES_RUN_AS=""
    if [ "$(id -u)" = 0 ]; then
        if id postgres >/dev/null 2>&1; then
            TEST_POSTGRES_RUN_AS=postgres
        else
            id token_authority_pg >/dev/null 2>&1 || useradd --system --no-create-home token_authority_pg
            TEST_POSTGRES_RUN_AS=token_authority_pg
        fi
    fi
    export TEST_POSTGRES_RUN_AS
    # /tmp rather than $TMPDIR: the unprivileged user must reach it.
    PG_DIR=$(mktemp -d /tmp/token-authority-pg.XXXXXX)
    chmod 755 "$PG_DIR"
    [ -n "$TEST_POSTGRES_RUN_AS" ] && chown "$TEST_POSTGRES_RUN_AS" "$PG_DIR"
    PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pg_run initdb -D "$PG_DIR/data" -U token_authority --auth=trust -E UTF8 --no-locale >"$PG_DIR/initdb.log"
    local options="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=500"
    if [ "${1:-}" != durable ]; then
        options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    pg_run pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 -o "$options" start >/dev/null
    export TEST_POSTGRES_URL="postgres://token_authority@127.0.0.1:$PG_PORT/postgres"
    echo "PostgreSQL for the tests: $TEST_POSTGRES_URL (data in $PG_DIR)"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        pg_run pg_ctl -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}
