#!/usr/bin/env bash
# tenant-edge soak under faults (see BENCHMARKS.md, Reliability).
#
#   bench/soak.sh                    # 10 minutes
#   SOAK_SECONDS=120 bench/soak.sh   # a shorter run
#
# Steady mixed reads and writes over many schools (bench/soak_load.py, standard library
# Python, logging every acknowledged write), while a schedule repeated every 100 s:
#   +15 s  terminates one school's backends (pg_terminate_backend)
#   +35 s  restarts PostgreSQL (pg_ctlcluster --skip-systemctl-redirect 15 main restart)
#   +60 s  cuts the catalog off for 10 s: tenant-edge reaches its catalog through a TCP
#          forwarder (socat) that is stopped, its open connections with it, then restarted
#   +85 s  restarts tenant-edge with SIGTERM while writes are in flight
# and SIGHUP every 30 s (a reload: not a fault, so it must cost no request). RSS and open
# file descriptors of tenant-edge are sampled every 10 s.
#
# The report is one table: RSS and fds at start and end, requests and non-2xx answers per
# fault window and outside them (must be 0 outside), and acknowledged writes missing from
# their school's database at the end (must be 0). A request is inside a window when its
# time in flight overlaps it; a window lasts from the fault until the service is back,
# plus SOAK_SETTLE seconds.
#
# THE POSTGRESQL RESTART IS OF THE SHARED LOCAL SERVER: every other client of it (other
# tests, other benchmarks) loses its connections. Acceptable for a bench run on purpose;
# never run this in CI or beside a test suite. SOAK_PG_RESTART=0 leaves PostgreSQL alone.
#
# Environment (all optional):
#   SOAK_SECONDS=600     load duration
#   SOAK_SCHOOLS=20      schools
#   SOAK_RATE=40         requests per second in total
#   SOAK_WORKERS=8       client connections
#   SOAK_SETTLE=5        seconds each window extends past recovery
#   SOAK_PG_RESTART=1    0: skip the PostgreSQL restart
#   SOAK_PG_CLUSTER="15 main"
#   SOAK_PROFILE=release (or debug: no release build)
#   SOAK_OUT=target/bench/soak.md   where the table is written too
#   PGHOST/PGPORT/PGUSER  PostgreSQL (default 127.0.0.1, 5432, postgres)
#
# Databases are named soak_<unique>_*, and dropped at the end, also on failure or Ctrl-C.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
cd "$ROOT"

SECONDS_TOTAL="${SOAK_SECONDS:-600}"
SCHOOL_COUNT="${SOAK_SCHOOLS:-20}"
RATE="${SOAK_RATE:-40}"
WORKERS="${SOAK_WORKERS:-8}"
SETTLE="${SOAK_SETTLE:-5}"
PG_RESTART="${SOAK_PG_RESTART:-1}"
PG_CLUSTER="${SOAK_PG_CLUSTER:-15 main}"
PROFILE="${SOAK_PROFILE:-release}"
OUT="${SOAK_OUT:-$ROOT/target/bench/soak.md}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGSSLMODE=disable

RUN_ID="soak_$(date +%s)_$$"
CATALOG="${RUN_ID}_catalog"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tenant-edge-soak.XXXXXX")"
SERVER_PID=""
FORWARDER_PID=""
LOAD_PID=""
SAMPLER_PID=""

BENCH_LOG_TAG=soak
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

now() { date +%s.%N; }

wait_pg() { # seconds: until PostgreSQL answers
    for _ in $(seq 1 $(($1 * 10))); do
        psql_q -d postgres -c 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

stop_pid() { # pid signal seconds
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$2" "$pid" 2>/dev/null || true
    for _ in $(seq 1 $(($3 * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    touch "$WORK/stop"
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    stop_pid "$LOAD_PID" TERM 10
    stop_pid "$SERVER_PID" TERM 25
    stop_forwarder
    wait_pg 30 || log "warning: PostgreSQL is not answering; the databases of $RUN_ID may be left"
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
    if [[ "${SOAK_KEEP_WORK:-0}" == "1" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- tools

command -v psql >/dev/null || die "psql not found"
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found"
if ! command -v socat >/dev/null; then
    log "installing socat"
    apt-get update -qq >/dev/null && apt-get install -y -qq socat >/dev/null || die "socat is missing"
fi
wait_pg 5 || die "PostgreSQL is not answering on $PGHOST:$PGPORT as $PGUSER"

log "building the $PROFILE binary and the token helper"
if [[ "$PROFILE" == "release" ]]; then
    cargo build --release --quiet --bin tenant-edge --example bench-tokens
else
    cargo build --quiet --bin tenant-edge --example bench-tokens
fi
BIN="$ROOT/target/$PROFILE/tenant-edge"
TOKENS_BIN="$ROOT/target/$PROFILE/examples/bench-tokens"

# ---------------------------------------------------------------- the catalog forwarder

FORWARD_PORT="$(free_port)"

start_forwarder() {
    # A session of its own, so stopping it ends every forked connection too.
    setsid socat "TCP-LISTEN:$FORWARD_PORT,bind=127.0.0.1,fork,reuseaddr" "TCP:$PGHOST:$PGPORT" \
        >>"$WORK/socat.log" 2>&1 &
    FORWARDER_PID=$!
    for _ in $(seq 1 50); do
        psql_q -h 127.0.0.1 -p "$FORWARD_PORT" -d postgres -c 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "the catalog forwarder did not start"
}

stop_forwarder() {
    [[ -n "$FORWARDER_PID" ]] || return 0
    kill -TERM -- "-$FORWARDER_PID" 2>/dev/null || true
    wait "$FORWARDER_PID" 2>/dev/null || true
    FORWARDER_PID=""
}

# ---------------------------------------------------------------- configuration

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
CONFIG="$WORK/proxy.toml"
cat >"$CONFIG" <<EOF
[server]
listen = "127.0.0.1:$PORT"
request_timeout = "5s"
shutdown_grace = "10s"

[catalog]
url = "postgres://$PGUSER@127.0.0.1:$FORWARD_PORT/$CATALOG"
refresh_interval = "10s"

[tenants]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/postgres"
pool_max_size = 4
max_total_connections = 60
acquire_timeout = "2s"
connect_timeout = "2s"

[auth]
algorithms = ["RS256"]
jwks_file = "$ROOT/tests/fixtures/jwks_a.json"

[log]
format = "json"
level = "info"
EOF

start_server() {
    setsid "$BIN" --config "$CONFIG" serve >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    echo "$SERVER_PID" >"$WORK/server.pid"
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; die "tenant-edge exited"; }
        sleep 0.1
    done
    tail -20 "$WORK/server.log" >&2
    die "tenant-edge did not become ready"
}

# Until every school answers an authenticated read: the service is back.
wait_serving() { # seconds
    local deadline=$(($(date +%s) + $1)) token
    while (($(date +%s) < deadline)); do
        local ok=1
        while read -r token; do
            curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$BASE/api/lunch-week" 2>/dev/null || { ok=0; break; }
        done <"$WORK/tokens"
        ((ok)) && return 0
        sleep 0.2
    done
    log "warning: not serving every school after $1 s"
    return 1
}

sample() { # every 10 s: time pid rss_kib fds
    while :; do
        local pid rss fds
        pid="$(cat "$WORK/server.pid" 2>/dev/null || true)"
        if [[ -n "$pid" && -r "/proc/$pid/status" ]]; then
            rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
            fds="$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)"
            echo "$(now) $pid $rss $fds" >>"$WORK/samples"
        fi
        sleep 10
    done
}

# ---------------------------------------------------------------- faults

window() { # name start: appends "name start end" once the service is back
    wait_serving 60 || true
    echo "$1 $2 $(awk -v t="$(now)" -v s="$SETTLE" 'BEGIN { printf "%.3f", t + s }')" >>"$WORK/windows"
}

fault_terminate_backends() {
    local start school
    start="$(now)"
    school="$(sed -n "$((RANDOM % SCHOOL_COUNT + 1))p" "$WORK/schools")"
    local killed
    killed="$(psql_q -d postgres -c "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$school'")"
    log "terminated $killed backends of $school"
    window terminate_backends "$start"
}

fault_pg_restart() {
    local start
    start="$(now)"
    # shellcheck disable=SC2086
    pg_ctlcluster --skip-systemctl-redirect $PG_CLUSTER restart
    wait_pg 60 || die "PostgreSQL did not come back"
    log "restarted PostgreSQL"
    window pg_restart "$start"
}

fault_catalog_cut() {
    local start
    start="$(now)"
    stop_forwarder
    log "catalog cut off"
    sleep 10
    start_forwarder
    log "catalog restored"
    window catalog_cut "$start"
}

fault_restart_server() {
    local start
    start="$(now)"
    stop_pid "$SERVER_PID" TERM 25
    start_server
    log "restarted tenant-edge (pid $SERVER_PID)"
    window restart_tenant_edge "$start"
}

# ---------------------------------------------------------------- setup

log "run $RUN_ID: catalog and $SCHOOL_COUNT schools"
start_forwarder
"$BIN" --config "$CONFIG" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migrate failed"; }
for i in $(seq 1 "$SCHOOL_COUNT"); do echo "${RUN_ID}_s$i"; done >"$WORK/schools"
values="$(awk '{printf "%s(\x27Soak %d\x27, \x27%s\x27)", (NR>1?",":""), NR, $1}' "$WORK/schools")"
psql_q -d "$CATALOG" -c "insert into schools (school_name, school_database) values $values" >/dev/null
"$BIN" --config "$CONFIG" migrate >>"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migrate failed"; }
# shellcheck disable=SC2046
"$TOKENS_BIN" --key "$ROOT/tests/fixtures/rsa_a.pem" --kid key-a $(cat "$WORK/schools") >"$WORK/tokens"
start_server
wait_serving 30 || die "the schools are not served"
log "tenant-edge pid $SERVER_PID on $BASE; catalog through 127.0.0.1:$FORWARD_PORT"
touch "$WORK/windows"

# ---------------------------------------------------------------- the run

sample &
SAMPLER_PID=$!
python3 "$BENCH_DIR/soak_load.py" --base "$BASE" --tokens "$WORK/tokens" --schools "$WORK/schools" \
    --seconds "$SECONDS_TOTAL" --rate "$RATE" --workers "$WORKERS" \
    --requests "$WORK/requests.jsonl" --writes "$WORK/writes.jsonl" --stop "$WORK/stop" &
LOAD_PID=$!
STARTED="$(date +%s)"
elapsed() { echo $(($(date +%s) - STARTED)); }

load_running() { kill -0 "$LOAD_PID" 2>/dev/null; }
next_hup=30
hup_when_due() {
    if (($(elapsed) >= next_hup)); then
        kill -HUP "$SERVER_PID" && log "SIGHUP"
        next_hup=$((next_hup + 30))
    fi
}
# The schedule: each cycle's faults at their offsets, while each has 20 s left to recover.
events=()
for ((cycle = 0; cycle * 100 < SECONDS_TOTAL; cycle++)); do
    for entry in 15:fault_terminate_backends 35:fault_pg_restart 60:fault_catalog_cut 85:fault_restart_server; do
        at=$((cycle * 100 + ${entry%%:*}))
        [[ "$entry" == *pg_restart && "$PG_RESTART" != "1" ]] && continue
        ((at + 20 < SECONDS_TOTAL)) && events+=("$at:${entry#*:}")
    done
done
for event in "${events[@]}"; do
    while (($(elapsed) < ${event%%:*})) && load_running; do hup_when_due; sleep 0.5; done
    load_running || break
    "${event#*:}"
done
while load_running; do hup_when_due; sleep 0.5; done
wait "$LOAD_PID" || die "the load generator failed"
LOAD_PID=""
sleep 1
kill "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
# The end sample: after the load, with the same process.
pid="$(cat "$WORK/server.pid")"
echo "$(now) $pid $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") $(ls "/proc/$pid/fd" | wc -l)" >>"$WORK/samples"

# ---------------------------------------------------------------- the writes, checked

log "checking every acknowledged write"
while read -r school; do
    psql_q -d "$school" -F ' ' -c "select lunch_week_id, week_of, is_published from lunch_week" \
        | sed "s/^/$school /" >>"$WORK/stored"
done <"$WORK/schools"

# ---------------------------------------------------------------- the report

mkdir -p "$(dirname "$OUT")"
python3 "$BENCH_DIR/soak_report.py" "$WORK" "$SECONDS_TOTAL" "$SCHOOL_COUNT" "$RATE" | tee "$OUT"
log "table written to $OUT"
