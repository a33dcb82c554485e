#!/usr/bin/env bash
# Runs a command with throwaway service instances on free loopback ports, stopped afterwards.
#   scripts/with-services.sh swift test
# Exports FNHOST_TEST_REDIS_URL=redis://127.0.0.1:PORT, a generated CA and server certificate
# (FNHOST_TEST_PG_CA, FNHOST_TEST_PG_OTHER_CA, FNHOST_TEST_TLS_CERT/KEY for 127.0.0.1 and localhost) and
# FNHOST_TEST_DATABASE_URL=postgres://fnhost:PASSWORD@127.0.0.1:PORT/fnhost (PostgreSQL 15, run as the
# postgres user since initdb refuses root) for the tests that need real servers.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/ensure-packages.sh" redis-server redis-tools postgresql pgbouncer openssl python3
work=$(mktemp -d)
redis_pid=""
cluster_pids=()
pg_data=""
pgbouncer_pidfile=""
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  [ -n "$pgbouncer_pidfile" ] && [ -f "$pgbouncer_pidfile" ] && kill "$(cat "$pgbouncer_pidfile")" 2>/dev/null || true
  [ -n "$pg_data" ] && as_postgres pg_ctl -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${FNHOST_KEEP_LOGS:-}" ] && cp "$work/pg.log" "$FNHOST_KEEP_LOGS" 2>/dev/null
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

# A Redis OSS Cluster of three masters (no replicas), each with its own directory and pinned bus port.
cluster_ports=()
for i in 1 2 3; do
  port=$(free_port); bus=$(free_port); dir="$work/cluster$i"; mkdir -p "$dir"
  redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 --cluster-require-full-coverage no \
    --dir "$dir" --save "" --appendonly no --logfile "$dir/redis.log" --daemonize no &
  cluster_pids+=($!); cluster_ports+=("$port")
done
for port in "${cluster_ports[@]}"; do
  for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "127.0.0.1:${cluster_ports[0]}" "127.0.0.1:${cluster_ports[1]}" "127.0.0.1:${cluster_ports[2]}" \
  --cluster-replicas 0 --cluster-yes >"$work/cluster-create.log" 2>&1
for port in "${cluster_ports[@]}"; do
  for _ in $(seq 1 100); do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break; sleep 0.1
  done
  redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok'
done
export FNHOST_TEST_REDIS_CLUSTER_URL="redis://127.0.0.1:${cluster_ports[0]}"
export FNHOST_TEST_REDIS_CLUSTER_PORTS="${cluster_ports[*]}"
echo "services: redis cluster on 127.0.0.1:${cluster_ports[*]}" >&2

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
as_postgres pg_ctl -D "$pg_data" -l "$work/pg.log" -w -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c ssl=on -c log_lock_waits=on" start >/dev/null
export FNHOST_TEST_PG_CA="$tls/ca.pem" FNHOST_TEST_PG_OTHER_CA="$tls/other-ca.pem"
export FNHOST_TEST_TLS_CERT="$tls/server.crt" FNHOST_TEST_TLS_KEY="$tls/server.key"
as_postgres psql -h "$pg_data" -p "$pg_port" -U postgres -q -c "CREATE ROLE fnhost LOGIN PASSWORD '$pg_password'" \
  -c "CREATE DATABASE fnhost OWNER fnhost" >/dev/null
export FNHOST_TEST_DATABASE_URL="postgres://fnhost:$pg_password@127.0.0.1:$pg_port/fnhost?sslmode=disable"
export FNHOST_TEST_POSTGRES_ADMIN_URL="postgres://postgres:$pg_password@127.0.0.1:$pg_port/fnhost?sslmode=disable"
echo "services: postgres on 127.0.0.1:$pg_port" >&2

# PgBouncer in transaction mode in front of that PostgreSQL (Debian's 1.18 refuses root: run as postgres).
# Roles and databases the tests create on the fly log in through auth_query (SCRAM secrets from pg_shadow).
pgbouncer_port=$(free_port)
pgb="$work/pgbouncer"
mkdir -p "$pgb"
printf '"postgres" "%s"\n' "$pg_password" > "$pgb/userlist.txt"
cat > "$pgb/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgbouncer_port
unix_socket_dir =
pool_mode = transaction
auth_type = scram-sha-256
auth_file = $pgb/userlist.txt
auth_user = postgres
max_client_conn = 1000
default_pool_size = 20
server_idle_timeout = 10
autodb_idle_timeout = 30
logfile = $pgb/pgbouncer.log
pidfile = $pgb/pgbouncer.pid
INI
chmod 600 "$pgb/userlist.txt"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$pgb"
pgbouncer_pidfile="$pgb/pgbouncer.pid"
as_postgres pgbouncer -d "$pgb/pgbouncer.ini" >/dev/null
for _ in $(seq 1 50); do
  PGPASSWORD="$pg_password" psql -h 127.0.0.1 -p "$pgbouncer_port" -U fnhost -d fnhost -Atqc 'select 1' >/dev/null 2>&1 && break
  sleep 0.1
done
PGPASSWORD="$pg_password" psql -h 127.0.0.1 -p "$pgbouncer_port" -U fnhost -d fnhost -Atqc 'select 1' >/dev/null
export FNHOST_TEST_PGBOUNCER_URL="postgres://fnhost:$pg_password@127.0.0.1:$pgbouncer_port/fnhost?sslmode=disable"
echo "services: pgbouncer (transaction mode) on 127.0.0.1:$pgbouncer_port" >&2
"$@"
