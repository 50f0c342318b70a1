#!/usr/bin/env bash
# Runs a command with TEST_DATABASE_URL set: to the database given, or else to a throwaway
# PostgreSQL cluster started here from the machine's binaries and removed afterwards (as CI
# services do). As root, the cluster runs as the `postgres` user, since initdb refuses root.
set -euo pipefail
if [ -n "${TEST_DATABASE_URL:-}" ]; then exec "$@"; fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$pg_bin/initdb" ] || { echo "with-postgres: no PostgreSQL server binaries (install postgresql) and no TEST_DATABASE_URL" >&2; exit 1; }
dir=$(mktemp -d /tmp/studybuddy-pg.XXXXXX)
chmod 755 "$dir"
as_cluster_user() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
cleanup() { as_cluster_user "$pg_bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
as_cluster_user "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
as_cluster_user "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-k $dir -c listen_addresses='' -c fsync=off" start >/dev/null
export TEST_DATABASE_URL="postgresql://postgres@/postgres?host=$dir"
echo "with-postgres: a fresh PostgreSQL for this step at $dir"
"$@"
