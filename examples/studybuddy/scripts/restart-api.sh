#!/usr/bin/env bash
# (Re)starts an environment's StudyBuddy API on this machine: the restart command the deploy
# job runs after switching <deploy dir>/<env>/current (STUDYBUDDY_RESTART_COMMAND). A stand-in
# for a process manager (systemd, a container platform) in the demo.
#
# Reads: STUDYBUDDY_DEPLOY_DIR, FLIGHTDECK_ENVIRONMENT (or --env), PORT, DATABASE_URL, and
# optionally FLIGHTDECK_PUBLIC_URL (the origin allowed to call the API from a browser) and
# FLIGHTDECK_RELEASE (the version /healthz reports). The API's pid is kept in
# <deploy dir>/<env>/api.pid and its output in api.log. Waits until /healthz answers with the
# new version, or fails with the log's end.
set -euo pipefail

env_name="${FLIGHTDECK_ENVIRONMENT:-}"
if [ "${1:-}" = "--env" ]; then env_name="$2"; fi
: "${STUDYBUDDY_DEPLOY_DIR:?set STUDYBUDDY_DEPLOY_DIR}"
: "${env_name:?set FLIGHTDECK_ENVIRONMENT or pass --env}"
: "${PORT:?set PORT: the port this environment's API listens on}"
: "${DATABASE_URL:?set DATABASE_URL: this environment's database}"

dir="$STUDYBUDDY_DEPLOY_DIR/$env_name"
pidfile="$dir/api.pid"
log="$dir/api.log"

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  old="$(cat "$pidfile")"
  echo "restart-api: stopping the running API (pid $old)"
  kill -TERM "$old" || true
  for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$old" 2>/dev/null || true
fi

version="${FLIGHTDECK_RELEASE:-}"
echo "restart-api: starting $dir/current on 127.0.0.1:$PORT"
(
  cd "$dir/current"
  PORT="$PORT" HOST=127.0.0.1 DATABASE_URL="$DATABASE_URL" \
    CORS_ORIGINS="${FLIGHTDECK_PUBLIC_URL:-}" STUDYBUDDY_VERSION="$version" \
    setsid nohup node src/main.mjs >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
)

for _ in $(seq 1 150); do
  if body="$(curl -fsS "http://127.0.0.1:$PORT/healthz" 2>/dev/null)"; then
    if [ -z "$version" ] || grep -q "$version" <<<"$body"; then
      echo "restart-api: up: $body"
      exit 0
    fi
  fi
  sleep 0.2
done
echo "restart-api: the API did not answer on port $PORT within 30 s; the end of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
