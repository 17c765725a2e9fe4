#!/usr/bin/env bash
# The control path at catalog scale (see BENCHMARKS.md, "Catalog at scale").
#
# Builds a catalog of CATSCALE_SCHOOLS rows that are active at the latest app_sql/ version
# (their databases are never opened: pools are lazy and nothing needs provisioning, so
# they need not exist), starts the release binary against it and measures:
#   - the time from start to /readyz 200;
#   - POST /admin/refresh (a full read), CATSCALE_REFRESHES times;
#   - onboarding: CATSCALE_NEW schools inserted in one statement as `provisioning`: the
#     tenant-edge CPU (utime + stime from /proc/PID/stat) per new school, the time until
#     all are served (snapshot gauge, then one request each), and the catalog reads by kind
#     (catalog_reads_total) it took.
# Prints a Markdown table. Every database it creates is named catscale_<time>_<pid>_* and
# dropped on exit, Ctrl-C or failure.
#
#   bench/catalog_scale.sh
#   CATSCALE_SCHOOLS=100000 bench/catalog_scale.sh
#
# Needs PostgreSQL on PGHOST:PGPORT as PGUSER (default 127.0.0.1, 5432, postgres), psql
# and curl.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SCHOOLS="${CATSCALE_SCHOOLS:-10000}"
NEW="${CATSCALE_NEW:-200}"
REFRESHES="${CATSCALE_REFRESHES:-5}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGSSLMODE=disable

RUN_ID="catscale_$(date +%s)_$$"
CATALOG="${RUN_ID}_catalog"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tenant-edge-catscale.XXXXXX")"
SERVER_PID=""
ADMIN_TOKEN="catscale-admin-token"

BENCH_LOG_TAG=catscale
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_server
    log "dropping the databases of this run (${RUN_ID}_*)"
    local databases
    databases="$(psql_q -d postgres -c "select datname from pg_database where datname like '${RUN_ID}\_%'" 2>/dev/null || true)"
    if [[ -n "$databases" ]]; then
        printf '%s\n' "$databases" | xargs -P 4 -I{} \
            psql -X -q -d postgres -c 'drop database if exists "{}" with (force)' >/dev/null 2>&1 || true
    fi
    local left
    left="$(psql_q -d postgres -c "select count(*) from pg_database where datname like '${RUN_ID}\_%'" 2>/dev/null || echo '?')"
    [[ "$left" == "0" ]] || log "warning: $left databases of ${RUN_ID} are left; drop them by hand"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

command -v psql >/dev/null || die "psql not found"
command -v curl >/dev/null || die "curl not found"
psql_q -d postgres -c 'select 1' >/dev/null || die "PostgreSQL is not answering on $PGHOST:$PGPORT as $PGUSER"
CLK_TCK="$(getconf CLK_TCK)"

log "building the release binary and the token helper"
cargo build --release --quiet --bin tenant-edge --example bench-tokens
BIN="$ROOT/target/release/tenant-edge"
TOKENS_BIN="$ROOT/target/release/examples/bench-tokens"
LATEST="$(find "$ROOT/app_sql" -name '[0-9]*_*.sql' -printf '%f\n' | sort | tail -1 | sed 's/_.*//; s/^0*//')"

PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"
CONFIG="$WORK/proxy.toml"
cat >"$CONFIG" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[catalog]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/$CATALOG"
# Long, so the reads counted below are the ones onboarding caused.
refresh_interval = "1h"

[tenants]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/postgres"

[auth]
algorithms = ["RS256"]
jwks_file = "$ROOT/tests/fixtures/jwks_a.json"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
token = "$ADMIN_TOKEN"

[log]
format = "json"
level = "warn"
EOF

cpu_ms() { # utime + stime of the server, in ms
    awk -v tck="$CLK_TCK" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / tck) }' "/proc/$SERVER_PID/stat"
}
now_ms() { date +%s%3N; }
metric() { # a sample's value from /metrics: metric 'NAME{labels}'
    curl -fsS "$ADMIN/metrics" | awk -v s="$1" 'index($0, s " ") == 1 { print $2 }'
}

log "run $RUN_ID: a catalog of $SCHOOLS active schools at version $LATEST"
"$BIN" --config "$CONFIG" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migrate failed"; }
psql_q -d "$CATALOG" -c "
    insert into schools (school_name, school_database, slug, status, db_version)
    select 'School ' || i, '${RUN_ID}_s' || i, replace('${RUN_ID}_s' || i, '_', '-'), 'active', $LATEST
      from generate_series(1, $SCHOOLS) as i" >/dev/null

started="$(now_ms)"
setsid "$BIN" --config "$CONFIG" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
until curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; die "tenant-edge exited"; }
    (( $(now_ms) - started < 120000 )) || die "not ready after 120 s"
    sleep 0.02
done
startup_ms=$(( $(now_ms) - started ))
log "ready after $startup_ms ms"

refresh_times=()
for _ in $(seq 1 "$REFRESHES"); do
    t="$(curl -fsS -o /dev/null -w '%{time_total}' -X POST -H "authorization: Bearer $ADMIN_TOKEN" "$ADMIN/admin/refresh")"
    refresh_times+=("$(awk -v t="$t" 'BEGIN { printf "%.0f", t * 1000 }')")
done

idle_cpu_before="$(cpu_ms)"
sleep 10
idle_cpu=$(( $(cpu_ms) - idle_cpu_before ))

full_before="$(metric 'catalog_reads_total{kind="full"}')"
incr_before="$(metric 'catalog_reads_total{kind="incremental"}')"
active_target=$(( SCHOOLS + NEW ))
log "onboarding $NEW schools"
cpu_before="$(cpu_ms)"
t0="$(now_ms)"
psql_q -d "$CATALOG" -c "
    insert into schools (school_name, school_database, status)
    select 'New ' || i, '${RUN_ID}_n' || i, 'provisioning' from generate_series(1, $NEW) as i" >/dev/null
# The catalog first (costs the server nothing), then the server's own gauge.
until [[ "$(psql_q -d "$CATALOG" -c "select count(*) from schools where status = 'active' and db_version = $LATEST and school_database like '${RUN_ID}\_n%'")" == "$NEW" ]]; do
    (( $(now_ms) - t0 < 600000 )) || die "onboarding not done after 600 s"
    sleep 0.1
done
until [[ "$(metric 'schools{status="active"}')" == "$active_target" ]]; do
    (( $(now_ms) - t0 < 600000 )) || die "the snapshot did not catch up"
    sleep 0.05
done
served_ms=$(( $(now_ms) - t0 ))
cpu=$(( $(cpu_ms) - cpu_before ))
full=$(( $(metric 'catalog_reads_total{kind="full"}') - full_before ))
incr=$(( $(metric 'catalog_reads_total{kind="incremental"}') - incr_before ))

# Every new school answers (after the measurement: these requests cost CPU too).
mapfile -t names < <(seq 1 "$NEW" | sed "s/^/${RUN_ID}_n/")
"$TOKENS_BIN" --key "$ROOT/tests/fixtures/rsa_a.pem" --kid key-a "${names[@]}" >"$WORK/tokens"
failed=0
while read -r token; do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$BASE/api/lunch-week")"
    [[ "$code" == 200 ]] || failed=$((failed + 1))
done <"$WORK/tokens"
(( failed == 0 )) || die "$failed new schools did not answer 200"

rss_kb="$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status")"
cat <<EOF

Catalog at scale: $SCHOOLS active schools, $NEW onboarded; commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(psql_q -d postgres -c 'show server_version' | cut -d' ' -f1)

| what | measured |
|---|---|
| start to /readyz 200 | $startup_ms ms |
| full refresh (POST /admin/refresh), $REFRESHES times | ${refresh_times[*]} ms |
| idle, 10 s | $idle_cpu ms of tenant-edge CPU |
| $NEW new schools inserted at once: all served after | $served_ms ms |
| tenant-edge CPU for them | $cpu ms, $(( cpu * 1000 / NEW )) µs per school |
| catalog reads for them | $full full, $incr incremental |
| tenant-edge RSS after | $(( rss_kb / 1024 )) MiB |
EOF
