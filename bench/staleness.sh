#!/usr/bin/env bash
# Staleness of the published-menu cache across two replicas (BENCHMARKS.md, "Published-menu
# cache"): two tenant-edge processes on one catalog and one school, 100 writes through
# replica A, each timed until replica B's public week shows it (bench/staleness.py).
#
#   bench/staleness.sh            # 100 writes
#   BENCH_WRITES=500 bench/staleness.sh
#
# Databases are named bench_<unique>_* and dropped at the end. PGHOST/PGPORT/PGUSER as in
# bench/run.sh.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
cd "$ROOT"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGSSLMODE=disable
WRITES="${BENCH_WRITES:-100}"
RUN_ID="bench_$(date +%s)_$$"
CATALOG="${RUN_ID}_catalog"
SCHOOL="${RUN_ID}_s1"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tenant-edge-staleness.XXXXXX")"
PIDS=()

BENCH_LOG_TAG=staleness
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "$SCHOOL" "$CATALOG"; do
        psql -X -q -d postgres -c "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --release --quiet --bin tenant-edge --example bench-tokens
BIN="$ROOT/target/release/tenant-edge"

config() { # port file
    cat >"$2" <<EOF
[server]
listen = "127.0.0.1:$1"

[catalog]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/$CATALOG"

[tenants]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/postgres"

[auth]
algorithms = ["RS256"]
jwks_file = "$ROOT/tests/fixtures/jwks_a.json"

[log]
level = "warn"
EOF
}

PORT_A="$(free_port)"; PORT_B="$(free_port)"
config "$PORT_A" "$WORK/a.toml"; config "$PORT_B" "$WORK/b.toml"
"$BIN" --config "$WORK/a.toml" migrate >/dev/null 2>&1
psql_q -d "$CATALOG" -c "insert into schools (school_name, school_database) values ('Bench', '$SCHOOL')" >/dev/null
"$BIN" --config "$WORK/a.toml" migrate >/dev/null 2>&1
psql -X -q -v ON_ERROR_STOP=1 -d "$SCHOOL" -f "$BENCH_DIR/sql/seed.sql" >/dev/null
TOKEN="$("$ROOT/target/release/examples/bench-tokens" --key "$ROOT/tests/fixtures/rsa_a.pem" --kid key-a "$SCHOOL")"

for name in a b; do
    setsid "$BIN" --config "$WORK/$name.toml" serve >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
done
for port in "$PORT_A" "$PORT_B"; do
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
        sleep 0.1
    done
done
log "replicas on :$PORT_A and :$PORT_B; $WRITES writes through A, read through B"
python3 "$BENCH_DIR/staleness.py" "http://127.0.0.1:$PORT_A" "http://127.0.0.1:$PORT_B" "$TOKEN" "${SCHOOL//_/-}" "$WRITES"
