#!/usr/bin/env bash
# tenant-edge load test against pgbench: the one entry point (see BENCHMARKS.md).
#
#   bench/run.sh                                  # full run (~10 minutes)
#   BENCH_DURATION=5 BENCH_WARMUP=2 bench/run.sh  # quick run
#
# It builds the release binary, creates its own catalog and schools (names start with
# bench_<unique>_, all dropped at the end, also on Ctrl-C or failure), starts tenant-edge
# with RS256 tokens checked against tests/fixtures/jwks_a.json, and runs wrk against each
# endpoint at each connection count, with pgbench beside it on the fastest SQL for the same
# data. Then the many-schools scenario (BENCH_MANY_SCHOOLS schools, Zipf-spread tokens).
#
# Environment (all optional):
#   BENCH_DURATION=15        measured seconds per run (wrk and pgbench alike)
#   BENCH_SLICES=3           the measured seconds are cut into this many slices, wrk and pgbench
#                            alternating, so both see the same background load (a shared
#                            machine's speed drifts by 30% within a minute; see BENCHMARKS.md)
#   BENCH_WARMUP=5           wrk warm-up seconds before each measured run (not counted)
#   BENCH_CONNECTIONS="32 128"  client connections
#   BENCH_PGBENCH_MAX_CLIENTS=32  pgbench clients at most: 128 cannot connect (max_connections is 100,
#                            shared), and 64 backends on 2 cores are slower than 32, so 32 is
#                            the stricter ceiling; the table shows the count
#   BENCH_ENDPOINTS="list week public post"
#   BENCH_MANY_SCHOOLS=300   schools of the many-schools scenario; 0 skips it
#   BENCH_MANY_CONNECTIONS=32
#   BENCH_ZIPF_S=1.0         Zipf exponent of the many-schools scenario
#   BENCH_MANY_ENDPOINT=week  week: GET /api/lunch-week/:id with each school's token; public:
#                            GET /api/lunch-week-public/:slug/:weekOf by each school's slug
#                            (the published-menu cache; its hit ratio is reported)
#   BENCH_CACHE=1            [cache] enabled (1) or not (0)
#   BENCH_POOL_SIZE=8        [tenants] pool_max_size
#   BENCH_PIPELINE_DEPTH=16  [tenants] pipeline_depth (1: one request per connection)
#   BENCH_WORKERS=0          [server] worker_threads (0: one per core, the default)
#   BENCH_LOG_LEVEL=info     [log] level (info writes one access line per request, as in production)
#   BENCH_OUT=target/bench/latest.md  where the table is written too
#   BENCH_PERF=0             1: record a perf profile of tenant-edge during each measured run
#                            (BENCH_PERF_ARGS, default "-F 999 -g"; kept with BENCH_KEEP_WORK=1)
#   PGHOST/PGPORT/PGUSER     PostgreSQL (default 127.0.0.1, 5432, postgres)

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
cd "$ROOT"

DURATION="${BENCH_DURATION:-15}"
SLICES="${BENCH_SLICES:-3}"
WARMUP="${BENCH_WARMUP:-5}"
CONNECTIONS="${BENCH_CONNECTIONS:-32 128}"
PG_MAX_CLIENTS="${BENCH_PGBENCH_MAX_CLIENTS:-32}"
ENDPOINTS="${BENCH_ENDPOINTS-list week public post}"  # empty: only the many-schools scenario
MANY_SCHOOLS="${BENCH_MANY_SCHOOLS:-300}"
MANY_CONNECTIONS="${BENCH_MANY_CONNECTIONS:-32}"
ZIPF_S="${BENCH_ZIPF_S:-1.0}"
MANY_ENDPOINT="${BENCH_MANY_ENDPOINT:-week}"
CACHE="${BENCH_CACHE:-1}"
POOL_SIZE="${BENCH_POOL_SIZE:-8}"
PIPELINE_DEPTH="${BENCH_PIPELINE_DEPTH:-16}"
WORKERS="${BENCH_WORKERS:-0}"
LOG_LEVEL="${BENCH_LOG_LEVEL:-info}"
OUT="${BENCH_OUT:-$ROOT/target/bench/latest.md}"
PERF="${BENCH_PERF:-0}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
# pgbench (and psql) talk to PostgreSQL without TLS, as tenant-edge does.
export PGSSLMODE=disable

# Unique per run, so two runs (or a crashed earlier one) never share a database.
RUN_ID="bench_$(date +%s)_$$"
CATALOG="${RUN_ID}_catalog"
SCHOOLS=("${RUN_ID}_s1" "${RUN_ID}_s2")
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tenant-edge-bench.XXXXXX")"
SERVER_PID=""
SAMPLER_PID=""

BENCH_LOG_TAG=bench
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
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    stop_server
    log "dropping the databases of this run (${RUN_ID}_*)"
    local databases
    databases="$(psql_q -d postgres -c "select datname from pg_database where datname like '${RUN_ID}\_%'" 2>/dev/null || true)"
    if [[ -n "$databases" ]]; then
        # Four at a time: dropping 300 databases one by one takes a while.
        printf '%s\n' "$databases" | xargs -P 4 -I{} \
            psql -X -q -d postgres -c 'drop database if exists "{}" with (force)' >/dev/null 2>&1 || true
    fi
    local left
    left="$(psql_q -d postgres -c "select count(*) from pg_database where datname like '${RUN_ID}\_%'" 2>/dev/null || echo '?')"
    [[ "$left" == "0" ]] || log "warning: $left databases of ${RUN_ID} are left; drop them by hand"
    if [[ "${BENCH_KEEP_WORK:-0}" == "1" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- tools

find_pgbench
command -v psql >/dev/null || die "psql not found"
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq wrk >/dev/null \
        || die "wrk is missing and apt-get install wrk failed"
fi
command -v curl >/dev/null || die "curl not found"
psql_q -d postgres -c 'select 1' >/dev/null || die "PostgreSQL is not answering on $PGHOST:$PGPORT as $PGUSER"
CLK_TCK="$(getconf CLK_TCK)"

log "building the release binary and the token helper"
cargo build --release --quiet --bin tenant-edge --example bench-tokens
BIN="$ROOT/target/release/tenant-edge"
TOKENS_BIN="$ROOT/target/release/examples/bench-tokens"

# ---------------------------------------------------------------- configuration

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
ADMIN_PORT="$(free_port)"
CONFIG="$WORK/proxy.toml"
cat >"$CONFIG" <<EOF
[server]
listen = "127.0.0.1:$PORT"
worker_threads = $WORKERS

[catalog]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/$CATALOG"

[tenants]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/postgres"
pool_max_size = $POOL_SIZE
pipeline_depth = $PIPELINE_DEPTH
max_total_connections = 80
provision_concurrency = 4

[auth]
algorithms = ["RS256"]
jwks_file = "$ROOT/tests/fixtures/jwks_a.json"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[cache]
enabled = $([[ "$CACHE" == 1 ]] && echo true || echo false)

[log]
format = "json"
level = "$LOG_LEVEL"
EOF

cache_counts() { # "hits misses" of the published-menu cache, from /metrics
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | awk '$1 == "menu_cache_hits_total" {h = $2} $1 == "menu_cache_misses_total" {m = $2} END {print h + 0, m + 0}'
}

add_schools() { # names...: catalog rows with only the original three columns, as the course did
    local values="" name
    for name in "$@"; do values+="${values:+,}('Bench ${name##*_}', '$name')"; done
    psql_q -d "$CATALOG" -c "insert into schools (school_name, school_database) values $values" >/dev/null
}

migrate() {
    "$BIN" --config "$CONFIG" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "tenant-edge migrate failed"; }
}

seed() { # databases...
    printf '%s\n' "$@" | xargs -P 4 -I{} psql -X -q -v ON_ERROR_STOP=1 -d {} -f "$BENCH_DIR/sql/seed.sql" >/dev/null
}

start_server() {
    # In a session of its own, as a service manager would start it: with the kernel's
    # autogroup scheduling, a server in wrk's session shares wrk's CPU share, and wrk's
    # threads then wait behind it (p99 of 85-1,000 ms measured by wrk while the server's
    # own histogram had 99.6% of requests under 10 ms; BENCHMARKS.md).
    setsid "$BIN" --config "$CONFIG" serve >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; die "tenant-edge exited"; }
        sleep 0.1
    done
    tail -20 "$WORK/server.log" >&2
    die "tenant-edge did not become ready"
}

log "run $RUN_ID: catalog and ${#SCHOOLS[@]} schools"
migrate # creates and migrates the catalog
add_schools "${SCHOOLS[@]}"
migrate # creates and migrates the schools' databases
seed "${SCHOOLS[@]}"

"$TOKENS_BIN" --key "$ROOT/tests/fixtures/rsa_a.pem" --kid key-a "${SCHOOLS[@]}" >"$WORK/tokens"
TOKEN="$(head -1 "$WORK/tokens")"
SCHOOL="${SCHOOLS[0]}"
SLUG="${SCHOOL//_/-}"
WEEK_ID=1
WEEK_OF=2020-01-06

start_server
log "tenant-edge pid $SERVER_PID on $BASE"

# The requests, checked once before any load: each must answer 200 with the seeded data.
declare -A METHOD PATH_OF BODY SQL NAME
NAME[list]="GET /api/lunch-week";              METHOD[list]=GET;   PATH_OF[list]="/api/lunch-week";  SQL[list]=list.sql
NAME[week]="GET /api/lunch-week/:id";          METHOD[week]=GET;   PATH_OF[week]="/api/lunch-week/$WEEK_ID"; SQL[week]=week.sql
NAME[public]="GET public week";                METHOD[public]=GET; PATH_OF[public]="/api/lunch-week-public/$SLUG/$WEEK_OF"; SQL[public]=public.sql
NAME[post]="POST /api/lunch-week";             METHOD[post]=POST;  PATH_OF[post]="/api/lunch-week"; SQL[post]=post.sql
BODY[post]='{"weekOf":"2030-01-07","isPublished":false}'
for endpoint in $ENDPOINTS; do
    auth=(-H "Authorization: Bearer $TOKEN")
    [[ "$endpoint" == public ]] && auth=()
    data=()
    [[ -n "${BODY[$endpoint]:-}" ]] && data=(-H 'Content-Type: application/json' --data "${BODY[$endpoint]}")
    code="$(curl -s -o "$WORK/check.json" -w '%{http_code}' -X "${METHOD[$endpoint]}" "${auth[@]}" "${data[@]}" "$BASE${PATH_OF[$endpoint]}")"
    [[ "$code" == 200 ]] || { cat "$WORK/check.json" >&2; die "${NAME[$endpoint]} answered $code"; }
    log "check ${NAME[$endpoint]}: 200, $(wc -c <"$WORK/check.json") bytes"
done
psql_q -d "$SCHOOL" -f "$BENCH_DIR/sql/cleanup_posts.sql" >/dev/null

# ---------------------------------------------------------------- measuring

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_split() { awk '{print $14, $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

run_wrk() { # connections seconds endpoint -> RESULT line
    local connections=$1 seconds=$2 endpoint=$3 token="$TOKEN"
    [[ "$endpoint" == public ]] && token=""
    BENCH_DIR="$BENCH_DIR" BENCH_METHOD="${METHOD[$endpoint]}" BENCH_BODY="${BODY[$endpoint]:-}" BENCH_TOKEN="$token" \
        wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$BENCH_DIR/wrk/api.lua" "$BASE${PATH_OF[$endpoint]}" \
        | grep '^RESULT'
}

run_pgbench() { # clients seconds sqlfile -> tps
    local clients=$1 seconds=$2 file=$3
    pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$BENCH_DIR/sql/$file" "$SCHOOL" 2>"$WORK/pgbench.err" \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}

fmt_ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

ROWS=()
add_row() { ROWS+=("$1"); printf '%s\n' "$1" >&2; }
HEADER='| endpoint | conns | req/s | p50 ms | p99 ms | errors | pgbench TPS (clients) | ratio | CPU µs/req (user+sys) | peak RSS MiB |'
RULE='|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'

for connections in $CONNECTIONS; do
    pg_clients=$(( connections < PG_MAX_CLIENTS ? connections : PG_MAX_CLIENTS ))
    for endpoint in $ENDPOINTS; do
        log "${NAME[$endpoint]} at $connections connections: warm-up ${WARMUP}s"
        [[ "$WARMUP" -gt 0 ]] && run_wrk "$connections" "$WARMUP" "$endpoint" >/dev/null
        # wrk and pgbench alternate in slices; requests, errors and CPU add up over the wrk
        # slices, p50 is their mean and p99 their worst.
        slice_seconds=$(( DURATION / SLICES > 0 ? DURATION / SLICES : 1 ))
        perf_pid=""
        if [[ "$PERF" == 1 ]]; then
            perf record ${BENCH_PERF_ARGS:--F 999 -g} -p "$SERVER_PID" -o "$WORK/perf.$endpoint.$connections.data" -- sleep "$slice_seconds" >/dev/null 2>&1 &
            perf_pid=$!
        fi
        log "${NAME[$endpoint]} against pgbench ${SQL[$endpoint]} ($pg_clients clients): $SLICES x ${slice_seconds}s each"
        requests=0; duration=0; errors=0; p50_sum=0; p99=0; user=0; sys=0; tps_sum=0
        for slice in $(seq 1 "$SLICES"); do
            read -r user0 sys0 < <(cpu_split "$SERVER_PID")
            result="$(run_wrk "$connections" "$slice_seconds" "$endpoint")"
            read -r user1 sys1 < <(cpu_split "$SERVER_PID")
            [[ -n "$perf_pid" ]] && { wait "$perf_pid" || true; perf_pid=""; }
            user=$(( user + user1 - user0 )); sys=$(( sys + sys1 - sys0 ))
            requests=$(( requests + $(field requests "$result") ))
            duration=$(( duration + $(field duration_us "$result") ))
            errors=$(( errors + $(field status "$result") + $(field connect "$result") + $(field read "$result") + $(field write "$result") + $(field timeout "$result") ))
            p50_sum=$(( p50_sum + $(field p50_us "$result") ))
            p99=$(( p99 > $(field p99_us "$result") ? p99 : $(field p99_us "$result") ))
            tps="$(run_pgbench "$pg_clients" "$slice_seconds" "${SQL[$endpoint]}")"
            [[ -n "$tps" ]] || { cat "$WORK/pgbench.err" >&2; die "pgbench failed"; }
            tps_sum="$(awk -v a="$tps_sum" -v b="$tps" 'BEGIN { print a + b }')"
        done
        rss=$(peak_rss_kib "$SERVER_PID")
        tps="$(awk -v t="$tps_sum" -v n="$SLICES" 'BEGIN { print t / n }')"
        [[ "$endpoint" == post ]] && psql_q -d "$SCHOOL" -f "$BENCH_DIR/sql/cleanup_posts.sql" >/dev/null

        row="$(awk -v name="${NAME[$endpoint]}" -v c="$connections" -v n="$requests" -v d="$duration" \
            -v p50="$(( p50_sum / SLICES ))" -v p99="$p99" -v err="$errors" \
            -v tps="$tps" -v pgc="$pg_clients" -v u="$user" -v s="$sys" \
            -v hz="$CLK_TCK" -v rss="$rss" 'BEGIN {
                rps = n / (d / 1e6); us = 1e6 / hz;
                printf "| %s | %d | %.0f | %.2f | %.2f | %d | %.0f (%d) | %.2f | %.0f (%.0f+%.0f) | %.1f |",
                    name, c, rps, p50 / 1000, p99 / 1000, err, tps, pgc, rps / tps,
                    (u + s) * us / n, u * us / n, s * us / n, rss / 1024 }')"
        add_row "$row"
    done
done

# ---------------------------------------------------------------- many schools

MANY_LINES=()
if [[ "$MANY_SCHOOLS" -gt 0 ]]; then
    stop_server
    MANY=()
    for i in $(seq -w 1 "$MANY_SCHOOLS"); do MANY+=("${RUN_ID}_z$i"); done
    log "many schools: adding $MANY_SCHOOLS schools and migrating them (provision_concurrency 4)"
    started=$(date +%s)
    add_schools "${MANY[@]}"
    migrate
    seed "${MANY[@]}"
    log "many schools: created, migrated and seeded in $(( $(date +%s) - started ))s"
    "$TOKENS_BIN" --key "$ROOT/tests/fixtures/rsa_a.pem" --kid key-a "${MANY[@]}" >"$WORK/many_tokens"
    start_server

    # Our connections as PostgreSQL sees them (every database of this run), sampled
    # four times a second during the whole run (warm-up included).
    (
        while true; do
            psql_q -d postgres -c "select count(*) from pg_stat_activity where datname like '${RUN_ID}\_%'" 2>/dev/null || true
            sleep 0.25
        done
    ) >"$WORK/activity" &
    SAMPLER_PID=$!

    printf '%s\n' "${MANY[@]//_/-}" >"$WORK/many_slugs"
    if [[ "$MANY_ENDPOINT" == public ]]; then
        MANY_PATH="/api/lunch-week-public/{slug}/$WEEK_OF"; MANY_FILE="$WORK/many_slugs"
    else
        MANY_PATH="/api/lunch-week/$WEEK_ID"; MANY_FILE="$WORK/many_tokens"
    fi
    zipf() { # seconds
        BENCH_DIR="$BENCH_DIR" BENCH_TOKENS_FILE="$MANY_FILE" BENCH_ZIPF_S="$ZIPF_S" BENCH_PATH="$MANY_PATH" \
            wrk -t2 -c"$MANY_CONNECTIONS" -d"${1}s" --latency -s "$BENCH_DIR/wrk/zipf.lua" "$BASE/" | grep '^RESULT'
    }
    log "many schools: GET $MANY_PATH at $MANY_CONNECTIONS connections, Zipf s=$ZIPF_S: warm-up ${WARMUP}s"
    [[ "$WARMUP" -gt 0 ]] && zipf "$WARMUP" >/dev/null
    sessions_sql="select coalesce(sum(sessions), 0) from pg_stat_database where datname like '${RUN_ID}\\_z%'"
    sessions0="$(psql_q -d postgres -c "$sessions_sql")"
    read -r user0 sys0 < <(cpu_split "$SERVER_PID")
    read -r hits0 misses0 < <(cache_counts)
    result="$(zipf "$DURATION")"
    read -r hits1 misses1 < <(cache_counts)
    read -r user1 sys1 < <(cpu_split "$SERVER_PID")
    sessions1="$(psql_q -d postgres -c "$sessions_sql")"
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    peak_connections="$(sort -n "$WORK/activity" | tail -1)"
    rss=$(peak_rss_kib "$SERVER_PID")
    requests=$(field requests "$result"); duration=$(field duration_us "$result")
    MANY_LINES+=("| schools | conns | req/s | p50 ms | p99 ms | non-2xx | socket errors | peak PG connections (max_total_connections 80, max_connections $(psql_q -d postgres -c 'show max_connections')) | PG connections opened | CPU µs/req | peak RSS MiB | menu cache hit ratio |")
    MANY_LINES+=("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    MANY_LINES+=("$(awk -v m="$MANY_SCHOOLS" -v c="$MANY_CONNECTIONS" -v n="$requests" -v d="$duration" \
        -v p50="$(field p50_us "$result")" -v p99="$(field p99_us "$result")" -v st="$(field status "$result")" \
        -v so="$(( $(field connect "$result") + $(field read "$result") + $(field write "$result") + $(field timeout "$result") ))" \
        -v pc="$peak_connections" -v opened="$(( sessions1 - sessions0 ))" \
        -v t="$(( (user1 - user0) + (sys1 - sys0) ))" -v hz="$CLK_TCK" -v rss="$rss" \
        -v hits="$(( hits1 - hits0 ))" -v misses="$(( misses1 - misses0 ))" 'BEGIN {
            rps = n / (d / 1e6);
            ratio = (hits + misses > 0) ? sprintf("%.3f", hits / (hits + misses)) : "-";
            printf "| %d | %d | %.0f | %.2f | %.2f | %d | %d | %d | %d | %.0f | %.1f | %s |",
                m, c, rps, p50 / 1000, p99 / 1000, st, so, pc, opened, t * 1e6 / hz / n, rss / 1024, ratio }')")
    printf '%s\n' "${MANY_LINES[@]}" >&2
fi

# ---------------------------------------------------------------- the table

{
    echo "tenant-edge bench, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
    echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(psql_q -d postgres -c 'show server_version' | cut -d' ' -f1) PostgreSQL"
    echo "settings: [cache] enabled $CACHE, ${DURATION}s measured in $SLICES slices alternating with pgbench, after ${WARMUP}s warm-up, wrk -t2, pgbench -M prepared -j 2 (TLS off), worker_threads $WORKERS, pool_max_size $POOL_SIZE, pipeline_depth $PIPELINE_DEPTH, log level $LOG_LEVEL"
    echo
    echo "$HEADER"
    echo "$RULE"
    printf '%s\n' "${ROWS[@]}"
    if [[ ${#MANY_LINES[@]} -gt 0 ]]; then
        echo
        echo "Many schools (GET $MANY_PATH, Zipf s=$ZIPF_S over the schools), [cache] enabled = $CACHE:"
        echo
        printf '%s\n' "${MANY_LINES[@]}"
    fi
} | tee "$WORK/table.md"
mkdir -p "$(dirname "$OUT")"
cp "$WORK/table.md" "$OUT"
log "table written to $OUT"
