#!/usr/bin/env bash
# What ABORT_BOT_REDIS_WAIT_REPLICAS costs: the latency of one acknowledging write (an accepted
# message) through the bot's Redis store, without WAIT and with WAIT 1, against a real primary
# and a real replica on this machine (both with appendfsync always). Loopback only.
#
#   bench/redis_wait.sh            (COUNT=2000 PROFILE=release to change)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-2000}
PROFILE=${PROFILE:-release}
PRIMARY=6390
REPLICA=6391
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

redis() { # port [args…]
  local port=$1; shift
  mkdir -p "$dir/$port"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/$port" --save "" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction "$@" >/dev/null &
  pids+=($!)
}
redis "$PRIMARY"
redis "$REPLICA" --replicaof 127.0.0.1 "$PRIMARY"
for _ in $(seq 1 100); do
  redis-cli -p "$REPLICA" info replication | grep -q master_link_status:up && break
  sleep 0.1
done
redis-cli -p "$REPLICA" info replication | grep -q master_link_status:up \
  || { echo "the replica did not sync" >&2; exit 1; }

cargo build --profile "$PROFILE" --quiet --example redis_wait
bin=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/examples/redis_wait
for concurrency in 1 32; do
  for replicas in 0 1; do
    "$bin" "redis://127.0.0.1:$PRIMARY" "$replicas" "$COUNT" "$concurrency"
  done
done
