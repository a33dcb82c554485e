#!/usr/bin/env bash
# Runs a command with throwaway service instances on free loopback ports, stopped afterwards.
#   scripts/with-services.sh swift test
# Exports FNHOST_TEST_REDIS_URL=redis://127.0.0.1:PORT for the tests that need a real Redis.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/ensure-packages.sh" redis-server
work=$(mktemp -d)
redis_pid=""
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
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
"$@"
