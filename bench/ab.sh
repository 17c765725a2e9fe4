#!/usr/bin/env bash
# A/B: two tenant-edge servers side by side, measured in alternating wrk slices with a
# pgbench slice between each pair, so all three see the same background load (this
# machine's speed drifts by 30% within a minute; see BENCHMARKS.md, "Noise"). Even so,
# the same binary on both sides has differed by up to 12% in req/s over 4 rounds: trust
# differences beyond that, or repeat with the sides swapped.
#
#   bench/ab.sh                                        # the current build against itself
#   AB_BIN_B=/tmp/old/tenant-edge bench/ab.sh          # a change against an older binary
#   AB_TENANTS_A='pipeline_depth = 1' bench/ab.sh      # a setting against the default
#
# Each server has its own catalog and school (same seed data as bench/run.sh), so the
# PostgreSQL backends serving each can be told apart: the table shows, per request, the
# CPU of tenant-edge and of the PostgreSQL backends that served it, and the machine's
# total (/proc/stat), beside req/s and p99. Everything is named ab_<unique>_* and
# dropped at the end.
#
# Environment (all optional):
#   AB_BIN_A, AB_BIN_B       binaries (default: target/release/tenant-edge, built first)
#   AB_TENANTS_A, AB_TENANTS_B  extra lines for [tenants] of each server
#   AB_SERVER_A, AB_SERVER_B    extra lines for [server] of each server
#   AB_ENV_A, AB_ENV_B       extra environment for each server ("K=V K2=V2")
#   AB_LOG_LEVEL_A, AB_LOG_LEVEL_B  [log] level of each server (default info: an access line
#                            per request, as in production)
#   AB_ENDPOINT=list         list | week | public | post
#   AB_CONNECTIONS=32        wrk connections
#   AB_PGBENCH_MAX_CLIENTS=32  pgbench clients at most (as in bench/run.sh: 128 cannot connect
#                            with max_connections 100)
#   AB_ROUNDS=4              rounds of (A slice, B slice, pgbench slice)
#   AB_SECONDS=4             seconds per slice
#   AB_WARMUP=3              warm-up seconds per server
#   AB_HOLD=""               a file: after the warm-up, write the servers' pids, ports and token
#                            files there and wait until it is deleted (to attach strace by hand)
#   AB_PERF=""               a file: record a perf profile of server A during its slices there
#                            (AB_PERF_ARGS, default "-F 1999 -g")

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
cd "$ROOT"

ENDPOINT="${AB_ENDPOINT:-list}"
CONNECTIONS="${AB_CONNECTIONS:-32}"
PGBENCH_MAX_CLIENTS="${AB_PGBENCH_MAX_CLIENTS:-32}"
PGBENCH_CLIENTS=$(( CONNECTIONS < PGBENCH_MAX_CLIENTS ? CONNECTIONS : PGBENCH_MAX_CLIENTS ))
ROUNDS="${AB_ROUNDS:-4}"
SECONDS_PER_SLICE="${AB_SECONDS:-4}"
WARMUP="${AB_WARMUP:-3}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGSSLMODE=disable

RUN_ID="ab_$(date +%s)_$$"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tenant-edge-ab.XXXXXX")"
declare -A PID PORT

BENCH_LOG_TAG=ab
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for side in A B; do
        if [[ -n "${PID[$side]:-}" ]]; then
            kill -TERM "${PID[$side]}" 2>/dev/null || true
            wait "${PID[$side]}" 2>/dev/null || true
        fi
    done
    psql_q -d postgres -c "select datname from pg_database where datname like '${RUN_ID}\_%'" 2>/dev/null \
        | xargs -r -I{} psql -X -q -d postgres -c 'drop database if exists "{}" with (force)' >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

find_pgbench
command -v wrk >/dev/null || die "wrk not found (bench/run.sh installs it)"

cargo build --release --quiet --bin tenant-edge --example bench-tokens
declare -A BIN=([A]="${AB_BIN_A:-$ROOT/target/release/tenant-edge}" [B]="${AB_BIN_B:-$ROOT/target/release/tenant-edge}")
declare -A TENANTS=([A]="${AB_TENANTS_A:-}" [B]="${AB_TENANTS_B:-}")
declare -A SERVER=([A]="${AB_SERVER_A:-}" [B]="${AB_SERVER_B:-}")
declare -A ENVS=([A]="${AB_ENV_A:-}" [B]="${AB_ENV_B:-}")
declare -A LOG_LEVEL=([A]="${AB_LOG_LEVEL_A:-info}" [B]="${AB_LOG_LEVEL_B:-info}")
TOKENS_BIN="$ROOT/target/release/examples/bench-tokens"

for side in A B; do
    lower="${side,,}"
    catalog="${RUN_ID}_${lower}_catalog"
    school="${RUN_ID}_${lower}_s1"
    PORT[$side]="$(free_port)"
    config="$WORK/$side.toml"
    cat >"$config" <<EOF
[server]
listen = "127.0.0.1:${PORT[$side]}"
${SERVER[$side]}

[catalog]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/$catalog"

[tenants]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/postgres"
max_total_connections = 40
${TENANTS[$side]}

[auth]
algorithms = ["RS256"]
jwks_file = "$ROOT/tests/fixtures/jwks_a.json"

[log]
format = "json"
level = "${LOG_LEVEL[$side]}"
EOF
    "${BIN[$side]}" --config "$config" migrate >/dev/null
    psql_q -d "$catalog" -c "insert into schools (school_name, school_database) values ('AB $side', '$school')" >/dev/null
    "${BIN[$side]}" --config "$config" migrate >/dev/null
    psql_q -d "$school" -f "$BENCH_DIR/sql/seed.sql" >/dev/null
    "$TOKENS_BIN" --key "$ROOT/tests/fixtures/rsa_a.pem" --kid key-a "$school" >"$WORK/$side.token"
    # A session of its own, as a service manager would start it (see bench/run.sh).
    # shellcheck disable=SC2086
    setsid env ${ENVS[$side]} "${BIN[$side]}" --config "$config" serve >"$WORK/$side.log" 2>&1 &
    PID[$side]=$!
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$side]}/readyz" 2>/dev/null && break; sleep 0.1; done
    curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$side]}/readyz" || { cat "$WORK/$side.log" >&2; die "server $side did not start"; }
done

case "$ENDPOINT" in
    list) METHOD=GET; URL_PATH=/api/lunch-week; SQL=list.sql; BODY="" ;;
    week) METHOD=GET; URL_PATH=/api/lunch-week/1; SQL=week.sql; BODY="" ;;
    public) METHOD=GET; URL_PATH="/api/lunch-week-public/${RUN_ID//_/-}-@-s1/2020-01-06"; SQL=public.sql; BODY="" ;;
    post) METHOD=POST; URL_PATH=/api/lunch-week; SQL=post.sql; BODY='{"weekOf":"2030-01-07","isPublished":false}' ;;
    *) die "unknown AB_ENDPOINT $ENDPOINT" ;;
esac

backend_ticks() { # database -> utime+stime of its backends, in ticks
    local pids
    pids="$(psql_q -d postgres -c "select pid from pg_stat_activity where datname = '$1'")"
    local total=0 pid
    for pid in $pids; do
        [[ -r "/proc/$pid/stat" ]] && total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
    done
    echo "$total"
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

wrk_slice() { # side seconds -> RESULT line
    local side=$1 seconds=$2 token="" path="$URL_PATH" lower="${1,,}"
    [[ "$ENDPOINT" == public ]] || token="$(cat "$WORK/$side.token")"
    path="${path//@/$lower}"
    BENCH_DIR="$BENCH_DIR" BENCH_METHOD="$METHOD" BENCH_BODY="$BODY" BENCH_TOKEN="$token" \
        /usr/bin/time -f '%U %S' -o "$WORK/wrk.time" wrk -t2 -c"$CONNECTIONS" -d"${seconds}s" --latency -s "$BENCH_DIR/wrk/api.lua" \
        "http://127.0.0.1:${PORT[$side]}$path" | grep '^RESULT'
}
HZ="$(getconf CLK_TCK)"

for side in A B; do wrk_slice "$side" "$WARMUP" >/dev/null; done
if [[ -n "${AB_HOLD:-}" ]]; then
    for side in A B; do echo "$side ${PID[$side]} http://127.0.0.1:${PORT[$side]} $WORK/$side.token"; done >"$AB_HOLD"
    log "holding until $AB_HOLD is deleted"
    while [[ -e "$AB_HOLD" ]]; do sleep 0.5; done
fi
log "$ENDPOINT at $CONNECTIONS connections: $ROUNDS rounds of A, B (${SECONDS_PER_SLICE}s each) and pgbench ($PGBENCH_CLIENTS clients)"
printf '| round | side | req/s | p99 ms | errors | tenant-edge µs/req | PG backends µs/req | wrk µs/req | machine µs/req |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|\n'
declare -A SUM_REQ SUM_TE SUM_PG SUM_M SUM_DUR
for round in $(seq 1 "$ROUNDS"); do
    # A first in odd rounds, B first in even ones, so a drifting host favours neither.
    order="A B"; [[ $(( round % 2 )) == 0 ]] && order="B A"
    for side in $order; do
        school="${RUN_ID}_${side,,}_s1"
        te0=$(awk '{print $14 + $15}' "/proc/${PID[$side]}/stat"); pg0=$(backend_ticks "$school"); m0=$(machine_ticks)
        perf_pid=""
        if [[ -n "${AB_PERF:-}" && "$side" == A ]]; then
            perf record ${AB_PERF_ARGS:--F 1999 -g} -p "${PID[A]}" -o "$AB_PERF.$round" -- sleep "$SECONDS_PER_SLICE" >/dev/null 2>&1 &
            perf_pid=$!
        fi
        result="$(wrk_slice "$side" "$SECONDS_PER_SLICE")"
        [[ -n "$perf_pid" ]] && { wait "$perf_pid" || true; }
        te1=$(awk '{print $14 + $15}' "/proc/${PID[$side]}/stat"); pg1=$(backend_ticks "$school"); m1=$(machine_ticks)
        n=$(field requests "$result"); d=$(field duration_us "$result")
        errors=$(( $(field status "$result") + $(field connect "$result") + $(field read "$result") + $(field timeout "$result") ))
        SUM_REQ[$side]=$(( ${SUM_REQ[$side]:-0} + n )); SUM_DUR[$side]=$(( ${SUM_DUR[$side]:-0} + d ))
        SUM_TE[$side]=$(( ${SUM_TE[$side]:-0} + te1 - te0 )); SUM_PG[$side]=$(( ${SUM_PG[$side]:-0} + pg1 - pg0 ))
        SUM_M[$side]=$(( ${SUM_M[$side]:-0} + m1 - m0 ))
        awk -v r="$round" -v s="$side" -v n="$n" -v d="$d" -v p99="$(field p99_us "$result")" -v e="$errors" \
            -v te=$(( te1 - te0 )) -v pg=$(( pg1 - pg0 )) -v m=$(( m1 - m0 )) -v hz="$HZ" \
            -v wrk="$(awk '{print $1 + $2}' "$WORK/wrk.time")" 'BEGIN {
            t = 1e6 / hz; printf "| %d | %s | %.0f | %.2f | %d | %.0f | %.0f | %.0f | %.0f |\n",
                r, s, n / (d / 1e6), p99 / 1000, e, te * t / n, pg * t / n, wrk * 1e6 / n, m * t / n }'
        [[ "$ENDPOINT" == post ]] && psql_q -d "$school" -f "$BENCH_DIR/sql/cleanup_posts.sql" >/dev/null
    done
    m0=$(machine_ticks)
    out="$(pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -T "$SECONDS_PER_SLICE" -f "$BENCH_DIR/sql/$SQL" "${RUN_ID}_a_s1" 2>"$WORK/pgbench.err")" \
        || { cat "$WORK/pgbench.err" >&2; die "pgbench failed"; }
    m1=$(machine_ticks)
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)"
    SUM_TPS=$(awk -v a="${SUM_TPS:-0}" -v b="$tps" 'BEGIN { print a + b }')
    awk -v r="$round" -v tps="$tps" -v m=$(( m1 - m0 )) -v hz="$HZ" -v s="$SECONDS_PER_SLICE" 'BEGIN {
        printf "| %d | pgbench | %.0f | | | | | | %.0f |\n", r, tps, m * 1e6 / hz / (tps * s) }'
    [[ "$ENDPOINT" == post ]] && psql_q -d "${RUN_ID}_a_s1" -f "$BENCH_DIR/sql/cleanup_posts.sql" >/dev/null
done
echo
for side in A B; do
    awk -v s="$side" -v n="${SUM_REQ[$side]}" -v d="${SUM_DUR[$side]}" -v te="${SUM_TE[$side]}" -v pg="${SUM_PG[$side]}" \
        -v m="${SUM_M[$side]}" -v tps="$SUM_TPS" -v rounds="$ROUNDS" -v hz="$HZ" 'BEGIN {
        t = 1e6 / hz; rps = n / (d / 1e6);
        printf "%s: %.0f req/s, ratio %.2f to pgbench %.0f TPS; per request: tenant-edge %.1f µs, PG backends %.1f µs, machine %.1f µs\n",
            s, rps, rps / (tps / rounds), tps / rounds, te * t / n, pg * t / n, m * t / n }'
done
