#!/usr/bin/env bash
# Runs a command with throwaway service instances on free loopback ports, stopped afterwards.
#   scripts/with-services.sh swift test
# Exports FNHOST_TEST_REDIS_URL=redis://127.0.0.1:PORT, a generated CA and server certificate
# (FNHOST_TEST_PG_CA, FNHOST_TEST_PG_OTHER_CA, FNHOST_TEST_TLS_CERT/KEY for 127.0.0.1 and localhost) and
# FNHOST_TEST_DATABASE_URL=postgres://fnhost:PASSWORD@127.0.0.1:PORT/fnhost (PostgreSQL 15, run as the
# postgres user since initdb refuses root) for the tests that need real servers.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/ensure-packages.sh" redis-server postgresql openssl python3
work=$(mktemp -d)
redis_pid=""
pg_data=""
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  [ -n "$pg_data" ] && as_postgres pg_ctl -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log" --daemonize no &
redis_pid=$!
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" ping >/dev/null
export FNHOST_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
echo "services: redis on $FNHOST_TEST_REDIS_URL" >&2

command -v initdb >/dev/null || PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
pg_port=$(free_port)
pg_password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
pg_data="$work/pg"
mkdir -p "$pg_data"
[ "$(id -u)" -eq 0 ] && chown postgres "$work" "$pg_data"
printf '%s\n' "$pg_password" > "$work/pwfile"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pwfile"
as_postgres initdb -D "$pg_data" -U postgres --auth-host=scram-sha-256 --auth-local=trust --pwfile="$work/pwfile" >"$work/initdb.log" 2>&1
# TLS generated now (never committed): a CA, a server certificate for 127.0.0.1/localhost, and an unrelated CA.
tls="$work/tls"
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=fnhost test CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=unrelated CA" -keyout "$tls/other.key" -out "$tls/other-ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$pg_data/server.key" -out "$tls/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 -extfile "$tls/san.ext" \
  -out "$pg_data/server.crt" >/dev/null 2>&1
chmod 600 "$pg_data/server.key"
[ "$(id -u)" -eq 0 ] && chown postgres "$pg_data/server.key" "$pg_data/server.crt"
chmod 644 "$tls/ca.pem" "$tls/other-ca.pem"
# The same server certificate for the tests' own TLS redis-server instances (readable by this user).
cp "$pg_data/server.crt" "$tls/server.crt"
cp "$pg_data/server.key" "$tls/server.key"
chmod 600 "$tls/server.key"
as_postgres pg_ctl -D "$pg_data" -l "$work/pg.log" -w -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c ssl=on" start >/dev/null
export FNHOST_TEST_PG_CA="$tls/ca.pem" FNHOST_TEST_PG_OTHER_CA="$tls/other-ca.pem"
export FNHOST_TEST_TLS_CERT="$tls/server.crt" FNHOST_TEST_TLS_KEY="$tls/server.key"
as_postgres psql -h "$pg_data" -p "$pg_port" -U postgres -q -c "CREATE ROLE fnhost LOGIN PASSWORD '$pg_password'" \
  -c "CREATE DATABASE fnhost OWNER fnhost" >/dev/null
export FNHOST_TEST_DATABASE_URL="postgres://fnhost:$pg_password@127.0.0.1:$pg_port/fnhost?sslmode=disable"
export FNHOST_TEST_POSTGRES_ADMIN_URL="postgres://postgres:$pg_password@127.0.0.1:$pg_port/fnhost?sslmode=disable"
echo "services: postgres on 127.0.0.1:$pg_port" >&2
"$@"
