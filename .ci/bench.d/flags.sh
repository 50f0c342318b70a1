# The feature-flag part of .ci/bench, sourced by it (uses bin, data, url, duration, rounds, root,
# edge, edge_version, constant, free_port, say, pid).
#
# Flightdeck's SDK endpoints, Unleash Edge serving the same flags (the peer a team would pick
# instead) and the bare axum handler (the machine's ceiling), in one run: rounds alternated (the
# order reversed every other round, so drift on a shared machine falls on both sides), each figure
# the median of the rounds. Then requests with junk tokens: their rate beside valid ones, and the
# database writes they cause per 1000. Then how fast a flag change reaches a connected SDK.

say "Feature flags: Flightdeck, Unleash Edge $edge_version and a bare axum handler (64 connections, ${duration} s each, $rounds rounds)"
cli() { FLIGHTDECK_LOG=warn "$bin" "$@" --data-dir "$data"; }
pg_url="postgres:///flightdeck?host=$data/postgres/run&port=5432&user=flightdeck"

# Runs wrk with a context per request; prints "req/s p50_ms p99_ms non_2xx socket_errors requests".
load() {
  local target=$1 mode=$2 token=${3:-}
  wrk -t2 -c64 -d"${duration}s" --latency -s "$root/.ci/bench.d/flags.lua" "$target" -- "$mode" "$token" \
    | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ {rps=$2}
        / requests in / {requests=$1}
        $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)}
        /Non-2xx/ {non2xx+=$NF}
        /Socket errors/ {gsub(/,/, ""); errors+=$4+$6+$8+$10}
        END {printf "%.0f %.2f %.2f %d %d %d\n", rps, p50, p99, non2xx, errors, requests}'
}

# The figures of every round, by measure.
declare -A rps_of p50_of p99_of bad_of
# measure KEY TARGET MODE TOKEN EXPECT: one load; EXPECT is 2xx, or 401 for junk.
measure() {
  local key=$1 expect=$5 r p50 p99 non2xx errors requests bad
  read -r r p50 p99 non2xx errors requests < <(load "$2" "$3" "$4")
  if [ "$expect" = 2xx ]; then bad=$((errors + non2xx)); else bad=$((errors + requests - non2xx)); fi
  rps_of[$key]+="$r "
  p50_of[$key]+="$p50 "
  p99_of[$key]+="$p99 "
  bad_of[$key]=$(( ${bad_of[$key]:-0} + bad ))
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
med() { local -n figures=$1; median <<<"${figures[$2]:-}"; }

# row LABEL FLAGS ANSWER KEY BARE_KEY [EDGE_KEY]: one table row from the medians.
row() {
  local note="" edge_ratio="–"
  [ "${bad_of[$4]:-0}" -eq 0 ] || note=" (${bad_of[$4]} unexpected answers!)"
  if [ -n "${6:-}" ]; then
    edge_ratio=$(awk -v r="$(med rps_of "$4")" -v e="$(med rps_of "$6")" 'BEGIN {printf "%.1f×", (e > 0 ? r / e : 0)}')
  fi
  awk -v l="$1" -v f="$2" -v a="$3" -v r="$(med rps_of "$4")" -v p50="$(med p50_of "$4")" -v p99="$(med p99_of "$4")" \
    -v b="$(med rps_of "$5")" -v n="$note" -v x="$edge_ratio" \
    'BEGIN {printf "| %s | %s | %s | %.0f%s | %.2f ms | %.2f ms | %.1f× | %s |\n", l, f, a, r, n, p50, p99, (r > 0 ? b / r : 0), x}'
}

# What one answer holds for a context like the load's (user u1 on the web app).
query="userId=u1&sessionId=s7919&appName=web&properties%5BappVersion%5D=2.4.1&properties%5Bplan%5D=pro"
query+="&properties%5Bcountry%5D=DE&properties%5Bemail%5D=student1%40school.edu&properties%5BlessonsCompleted%5D=37"
ofrep_body='{"context":{"targetingKey":"u1","sessionId":"s7919","appName":"web","appVersion":"2.4.1","plan":"pro","country":"DE","email":"student1@school.edu","lessonsCompleted":37}}'
answer() {  # base token frontend|ofrep → "N on, S kB" or "N flags, S kB"
  if [ "$3" = frontend ]; then curl -fs -H "Authorization: $2" "$1/api/frontend?$query"
  else curl -fs -X POST -H "Authorization: $2" -H "Content-Type: application/json" --data "$ofrep_body" "$1/ofrep/v1/evaluate/flags"
  fi | python3 -c 'import json, sys
raw = sys.stdin.read(); d = json.loads(raw)
n, what = (len(d["toggles"]), "on") if "toggles" in d else (len(d["flags"]), "flags")
print("%d %s, %.1f kB" % (n, what, len(raw) / 1000))'
}

# Flags belong to the project, so every flag imported anywhere is in every environment (off where
# it was not set): the 5-flag environment is measured before the 350 flags exist.
import_flags() {  # environment count → sets `token` (frontend) and `client_token`
  local t0 t1
  python3 "$root/.ci/bench.d/flags.py" "$2" "$data/flags-$2.json"
  t0=$(date +%s%N)
  cli flags import --project studybuddy --environment "$1" "$data/flags-$2.json" >/dev/null
  t1=$(date +%s%N)
  import_ms+=("$2 flags: $(( (t1 - t0) / 1000000 )) ms")
  token=$(cli flags sdk-token create --project studybuddy --environment "$1" --kind frontend bench-web | tail -n1)
  client_token=$(cli flags sdk-token create --project studybuddy --environment "$1" --kind client bench-server | tail -n1)
  # The server hears of the snapshot and the tokens through NOTIFY: wait until it answers.
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $token" "$url/api/frontend?userId=u1")" = 200 ] \
    && [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $client_token" "$url/api/client/features")" = 200 ]; do
    sleep 0.01
  done
  [ "$(answer "$url" "$token" ofrep | cut -d' ' -f1)" = "$2" ] || { echo "error: $1 does not serve $2 flags" >&2; exit 1; }
}

# Unleash Edge, offline, bootstrapped with the flags Flightdeck serves for the environment (its
# client API answer), accepting the same frontend token. Sets edge_pid and edge_url.
start_edge() {  # environment
  local port
  curl -fs -H "Authorization: $client_token" "$url/api/client/features" >"$data/edge-$1.json"
  port=$(free_port)
  edge_url="http://127.0.0.1:$port"
  RUST_LOG=warn "$edge" --port "$port" --interface 127.0.0.1 offline \
    --bootstrap-file "$data/edge-$1.json" --client-tokens "$client_token" \
    --frontend-tokens "$token" >"$data/edge.log" 2>&1 &
  edge_pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $token" "$edge_url/api/frontend?userId=u1")" = 200 ]; do
    kill -0 "$edge_pid" 2>/dev/null || { echo "error: Unleash Edge did not start:" >&2; cat "$data/edge.log" >&2; exit 1; }
    sleep 0.05
  done
}
stop_edge() { kill -TERM "$edge_pid"; wait "$edge_pid" 2>/dev/null || true; edge_pid=; }

# Rows written and transactions committed in Flightdeck's database; prints "audit_rows xacts tuples".
db_counts() {
  # Backends report their statistics within a second of going idle.
  sleep 2
  psql "$pg_url" -At -F' ' -c "select (select count(*) from audit_event), xact_commit,
    tup_inserted + tup_updated + tup_deleted from pg_stat_database where datname = current_database()"
}
# writes_per_1000 MODE TOKEN LABEL: one load with database counts around it; prints a table row.
writes_per_1000() {
  local a0 x0 t0 a1 x1 t1 r p50 p99 non2xx errors requests
  read -r a0 x0 t0 < <(db_counts)
  read -r r p50 p99 non2xx errors requests < <(load "$url" "$1" "$2")
  read -r a1 x1 t1 < <(db_counts)
  # The second count's own query is one transaction: not the load's.
  awk -v l="$3" -v r="$r" -v n="$requests" -v a=$((a1 - a0)) -v x=$((x1 - x0 - 1)) -v t=$((t1 - t0)) \
    'BEGIN {printf "| %s | %d | %.0f | %.2f | %.2f | %.2f |\n", l, n, r, a * 1000 / n, x * 1000 / n, t * 1000 / n}'
}

import_ms=()
changes=()
rows=()
writes=()
constant_port=$(free_port)
"$constant" "$constant_port" &
constant_pid=$!
until curl -fs "http://127.0.0.1:$constant_port/" >/dev/null 2>&1; do sleep 0.01; done
bare_url="http://127.0.0.1:$constant_port"
bare_answer="$(curl -fs "$bare_url/" | wc -c) B"
for case in "staging 5" "production 350"; do
  read -r environment n <<<"$case"
  import_flags "$environment" "$n"
  start_edge "$environment"
  plan=(bare edge frontend junk ofrep)
  [ "$n" = 5 ] && plan+=(healthz)
  for round in $(seq 1 "$rounds"); do
    order=("${plan[@]}")
    if [ $((round % 2)) -eq 0 ]; then
      order=(); for ((i = ${#plan[@]} - 1; i >= 0; i--)); do order+=("${plan[$i]}"); done
    fi
    for what in "${order[@]}"; do
      case "$what" in
        bare) measure "bare $n" "$bare_url" bare "" 2xx ;;
        edge) measure "edge $n" "$edge_url" frontend "$token" 2xx ;;
        frontend) measure "frontend $n" "$url" frontend "$token" 2xx ;;
        junk) measure "junk $n" "$url" junk "$token" 401 ;;
        ofrep) measure "ofrep $n" "$url" ofrep "$token" 2xx ;;
        healthz) measure "healthz $n" "$url" healthz "$token" 2xx ;;
      esac
    done
  done
  rows+=("$(row "bare axum handler (constant JSON)" "–" "$bare_answer" "bare $n" "bare $n")")
  rows+=("$(row "Unleash Edge $edge_version: GET /api/frontend" "$n" "$(answer "$edge_url" "$token" frontend)" "edge $n" "bare $n")")
  if [ "$n" = 5 ]; then
    rows+=("$(row "GET /healthz (all of the portal's layers, constant)" "–" "$(curl -fs "$url/healthz" | wc -c) B" "healthz $n" "bare $n")")
  fi
  # The frontend API answers only the flags on for the context; OFREP bulk answers every flag.
  rows+=("$(row "GET /api/frontend (Unleash)" "$n" "$(answer "$url" "$token" frontend)" "frontend $n" "bare $n" "edge $n")")
  rows+=("$(row "GET /api/frontend, a junk token each" "$n" "401, $(curl -s -H "Authorization: junk" "$url/api/frontend" | wc -c) B" "junk $n" "bare $n")")
  rows+=("$(row "POST /ofrep/v1/evaluate/flags (bulk)" "$n" "$(answer "$url" "$token" ofrep)" "ofrep $n" "bare $n")")
  stop_edge
  if [ "$n" = 5 ]; then
    writes+=("$(writes_per_1000 frontend "$token" "valid frontend token")")
    writes+=("$(writes_per_1000 junk "$token" "a junk token each (half SDK-shaped)")")
  fi
  changes+=("$(python3 "$root/.ci/bench.d/flag_change.py" "$bin" "$data" "$url" studybuddy maintenance-banner \
    "$environment" "$token" "$n flags")")
done
kill -TERM "$constant_pid"; wait "$constant_pid" 2>/dev/null || true; constant_pid=
echo "| endpoint | flags | answer (u1) | req/s | p50 | p99 | × bare | × Edge |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Medians of $rounds rounds, the order reversed every other round. Every request is for another"
echo "user (1000 contexts per wrk thread: app, version, plan, country, e-mail, a number); the bare"
echo "handler and Edge get the same requests. × bare: the bare handler's req/s over the endpoint's;"
echo "× Edge: the endpoint's req/s over Edge's (goal: at least 2.5× at 5 flags, 8× at 350). /healthz is"
echo "the floor of a portal route (session, CSRF and page layers); the SDK routes have a lean stack of"
echo "their own. wrk, the servers and PostgreSQL share $(nproc) cores."
echo "Import with the CLI: $(IFS=,; echo "${import_ms[*]}" | sed 's/,/, /g')."
echo
echo "| requests to /api/frontend (5 flags) | requests | req/s | audit rows per 1000 | transactions per 1000 | rows written per 1000 |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${writes[@]}"
read -r refused_rows refused_count < <(psql "$pg_url" -At -F' ' -c \
  "select count(*), coalesce(sum(coalesce((details->>'count')::bigint, 1)), 0) from audit_event where action = 'token.rejected'")
echo
echo "Counted in pg_stat_database around one load (whatever else the server did meanwhile included)."
echo "Refused tokens so far: $refused_count, in $refused_rows audit entries (one per minute, address"
echo "and path; the current minute's is written when it ends)."
echo
echo "| a flag change reaches a connected SDK (20 toggles each) | p50 | max |"
echo "|---|---|---|"
printf '%s\n' "${changes[@]}"
echo
echo "Timed from just before \`flightdeck flags set\` is launched, so the figures include the CLI's own"
echo "start-up (a process and a database connection; its whole run is the third row): an upper bound"
echo "of what the server adds (goal: under 1 s). The client takes an OpenFeature web provider's path:"
echo "the OFREP event stream, then the bulk evaluation again. An SDK that polls instead (Unleash's"
echo "frontend SDKs; refresh interval R, 30 s by default) sees a change R/2 later on average, R at worst."
