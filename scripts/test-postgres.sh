#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 for the test suite (Debian's packages) and print the admin
# SQLAlchemy URL; tests create one fresh database per service instance from it.
#   bash scripts/test-postgres.sh          # start (or reuse) and print the URL
#   bash scripts/test-postgres.sh stop
set -euo pipefail
dir="${CONSENT_LEDGER_PG_DIR:-/tmp/consent-ledger-pg}"
port="${CONSENT_LEDGER_PG_PORT:-55432}"
bin="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)"
if [[ -z "$bin" ]]; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "PostgreSQL 15 is missing: sudo apt-get install postgresql-15" >&2
    exit 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >&2
  bin=/usr/lib/postgresql/15/bin
fi
# The server refuses to run as root: run it as the postgres user Debian creates.
as_owner=()
if [[ "$(id -u)" == 0 ]]; then
  as_owner=(runuser -u postgres --)
fi
if [[ "${1:-start}" == stop ]]; then
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir" stop -m fast >&2 || true
  exit 0
fi
if ! "${as_owner[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  rm -rf "$dir"
  mkdir -p "$dir"
  [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$dir"
  "${as_owner[@]}" "$bin/initdb" -D "$dir" -U ledger --auth=trust -E UTF8 >/dev/null
  # Test instance only: fsync off for speed, loopback only, socket in its own dir.
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
fi
echo "postgresql+psycopg://ledger@127.0.0.1:$port/postgres"
