#!/usr/bin/env bash
# Ingest benchmark: accepted events per second, each durably stored before the answer, for
# abort-bot and for the official Lark Node SDK (@larksuiteoapi/node-sdk 1.74.0 + better-sqlite3),
# on this machine, in the same run, with the same encrypted and signed deliveries; plus
# abort-bot's resident memory when idle. Loopback only; every load is bounded by wrk's -d.
#
#   bench/run.sh            (ROUNDS=3 DURATION=6 CONNS=32 EVENTS=220000 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
CONNS=${CONNS:-32}
EVENTS=${EVENTS:-220000}
BOT_PORT=3100
NODE_PORT=3103
out=target/bench
mkdir -p "$out"

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need sqlite3 sqlite3
if [ ! -d "$out/node/node_modules/@larksuiteoapi/node-sdk" ] || [ ! -d "$out/node/node_modules/better-sqlite3" ]; then
  mkdir -p "$out/node"
  (cd "$out/node" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent \
    @larksuiteoapi/node-sdk@1.74.0 better-sqlite3@12)
fi
cargo build --profile dist --quiet --bin abort-bot --example emulators --example bench_events

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

target/dist/examples/emulators 3101 3102 >/dev/null &
pids+=($!)

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

load() { # port -> wrk summary line
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s bench/events.lua \
    "http://127.0.0.1:$1" -- "$out/events.txt" 2 /lark/events > "$out/wrk-$1.txt"
  grep -E 'Requests/sec|Non-2xx|Socket errors' "$out/wrk-$1.txt" | tr -s ' ' | paste -sd' ' -
}

bot_rates=(); node_rates=(); bot_rss=()
for round in $(seq 1 "$ROUNDS"); do
  target/dist/examples/bench_events "$EVENTS" "$out/events.txt" 2>/dev/null

  rm -f "$out"/bot.db*
  LARK_APP_ID=cli_bench LARK_APP_SECRET=bench-app-secret \
  LARK_VERIFICATION_TOKEN=bench-verification-token LARK_ENCRYPT_KEY=bench-encrypt-key \
  LARK_BASE_URL=http://127.0.0.1:3101 FEISHU_PROJECT_BASE_URL=http://127.0.0.1:3102 \
  FEISHU_PROJECT_PLUGIN_ID=MII_BENCH FEISHU_PROJECT_PLUGIN_SECRET=bench-plugin-secret \
  ABORT_BOT_LISTEN=127.0.0.1:$BOT_PORT ABORT_BOT_STORE="sqlite://$out/bot.db" RUST_LOG=warn \
    target/dist/abort-bot serve &
  bot=$!; pids+=("$bot")
  wait_port $BOT_PORT
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$bot/status")
  bot_rss+=("$rss")
  summary=$(load $BOT_PORT)
  kill -TERM "$bot"; wait "$bot" || true
  stored=$(sqlite3 "$out/bot.db" 'SELECT count(*) FROM inbox')
  rate=$((stored / DURATION))
  bot_rates+=("$rate")
  if [ "$stored" -ge $((EVENTS * 98 / 100)) ]; then
    echo "warning: abort-bot stored nearly every generated event; raise EVENTS for a true ceiling" >&2
  fi
  echo "round $round abort-bot: $stored events stored, $rate/s (idle RSS ${rss} kB; wrk: $summary)"

  rm -f "$out"/node.db*
  NODE_PATH="$out/node/node_modules" node bench/node-server.js $NODE_PORT "$out/node.db" >/dev/null &
  node_pid=$!; pids+=("$node_pid")
  wait_port $NODE_PORT
  sleep 1
  summary=$(load $NODE_PORT)
  kill -TERM "$node_pid"; wait "$node_pid" || true
  stored=$(sqlite3 "$out/node.db" 'SELECT count(*) FROM events')
  rate=$((stored / DURATION))
  node_rates+=("$rate")
  echo "round $round node-sdk:  $stored events stored, $rate/s (wrk: $summary)"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
b=$(median "${bot_rates[@]}"); n=$(median "${node_rates[@]}"); m=$(median "${bot_rss[@]}")
echo
echo "| server | accepted events/s, stored (median of $ROUNDS) | idle RSS |"
echo "|---|---|---|"
echo "| abort-bot | $b | $((m / 1024)) MiB ($m kB) |"
echo "| official Node SDK 1.74.0 + better-sqlite3 | $n | |"
awk -v b="$b" -v n="$n" 'BEGIN { if (n > 0) printf "ratio: %.1fx\n", b / n; else print "ratio: node stored nothing" }'
