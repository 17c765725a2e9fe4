# Helpers shared by bench/run.sh and bench/ab.sh (sourced; set BENCH_LOG_TAG first).

log() { printf '[%s %s] %s\n' "${BENCH_LOG_TAG:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# pgbench is often installed but not on PATH (Debian keeps it under /usr/lib/postgresql).
find_pgbench() {
    if ! command -v pgbench >/dev/null; then
        for dir in /usr/lib/postgresql/*/bin; do [[ -x "$dir/pgbench" ]] && PATH="$dir:$PATH"; done
    fi
    command -v pgbench >/dev/null || die "pgbench not found (install postgresql-contrib or the postgresql-client package)"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

# A number from bench/wrk/report.lua's RESULT line: field NAME LINE.
field() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" <<<"$2"; }
