#!/usr/bin/env bash
# Receiver benchmark. On this machine, in one run, with the same distinct deliveries (encrypted
# and signed as Lark sends them; never replayed, as the bot dedups), side by side:
#   abort-bot       the `dist` build, storing each event durably before the 200
#   floor-durable   the bot's own verify+decrypt+parse, then a SQLite group-commit write (WAL,
#                   synchronous=FULL, dedup) before the 200: the best any receiver can do with
#                   this storage (examples/floor.rs)
#   floor-plain     the same without storage
#   node-empty      the official Node SDK (@larksuiteoapi/node-sdk 1.74.0), an empty handler
#   node-durable    the same + better-sqlite3 (WAL, synchronous=FULL, dedup on event_id)
# For each: accepted events/s, p50/p99 ack latency (wrk's, from the Lua done hook), server CPU
# µs per accepted event (utime+stime from /proc, until the server is idle again), idle RSS
# (VmRSS before the load) and peak RSS (VmHWM after it). Then end to end: abort-bot against
# the emulators (examples/e2e.rs) at a fixed offered load of `/abort` commands, event → PUT →
# reply as the emulators saw it. Loopback only; every load is bounded in count and time.
#
#   bench/run.sh     (ROUNDS=3 DURATION=6 CONNS=50 EVENTS=600000 E2E_RATE=10 E2E_SECONDS=20;
#                     PERF=1 adds a `perf record -g` of abort-bot under load, and its report)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
CONNS=${CONNS:-50}
EVENTS=${EVENTS:-600000}
E2E_RATE=${E2E_RATE:-10}
E2E_SECONDS=${E2E_SECONDS:-20}
PERF=${PERF:-0}
SERVERS=(abort-bot floor-durable floor-plain node-empty node-durable)
out=target/bench
bin=target/dist
mkdir -p "$out"
HZ=$(getconf CLK_TCK)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need sqlite3 sqlite3
[ "$PERF" = 1 ] && need perf linux-perf
if [ ! -d "$out/node/node_modules/@larksuiteoapi/node-sdk" ] || [ ! -d "$out/node/node_modules/better-sqlite3" ]; then
  mkdir -p "$out/node"
  (cd "$out/node" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent \
    @larksuiteoapi/node-sdk@1.74.0 better-sqlite3@12)
fi
cargo build --profile dist --quiet --bin abort-bot --example emulators --example bench_events \
  --example floor --example e2e

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM # so that a stopped run still stops its servers

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }
# Waits (at most 30 s) until the process has used no more than a tick in half a second: the
# work the load caused (a worker's backlog, a GC) is counted too.
settle() {
  local prev now
  prev=$(ticks "$1")
  for _ in $(seq 1 60); do
    sleep 0.5
    now=$(ticks "$1")
    [ $((now - prev)) -le 1 ] && return 0
    prev=$now
  done
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

bot() { # port lark_port project_port db [VAR=value…]: runs abort-bot serve in the background
  env LARK_APP_ID=cli_bench LARK_APP_SECRET=bench-app-secret \
    LARK_VERIFICATION_TOKEN=bench-verification-token LARK_ENCRYPT_KEY=bench-encrypt-key \
    LARK_BASE_URL="http://127.0.0.1:$2" FEISHU_PROJECT_BASE_URL="http://127.0.0.1:$3" \
    FEISHU_PROJECT_PLUGIN_ID=MII_BENCH FEISHU_PROJECT_PLUGIN_SECRET=bench-plugin-secret \
    ABORT_BOT_LISTEN="127.0.0.1:$1" ABORT_BOT_STORE="sqlite://$4" RUST_LOG=warn \
    "${@:5}" "$bin/abort-bot" serve &
}

start() { # server port -> pid in $server_pid
  local db="$out/$1.db"
  rm -f "$db" "$db"-*
  case $1 in
    abort-bot) bot "$2" 3101 3102 "$db" >"$out/$1.log" 2>&1 ;;
    floor-durable) "$bin/examples/floor" "$2" "$db" & ;;
    floor-plain) "$bin/examples/floor" "$2" & ;;
    node-empty) NODE_PATH="$out/node/node_modules" node bench/node-server.js "$2" >/dev/null & ;;
    node-durable) NODE_PATH="$out/node/node_modules" node bench/node-server.js "$2" "$db" >/dev/null & ;;
  esac
  server_pid=$!
  pids+=("$server_pid")
  wait_port "$2"
  sleep 1
}

stored() { # server -> rows on disk (after it stopped), or "-" for a server that stores nothing
  case $1 in
    abort-bot) sqlite3 "$out/$1.db" 'SELECT count(*) FROM inbox' ;;
    floor-durable | node-durable) sqlite3 "$out/$1.db" 'SELECT count(*) FROM events' ;;
    *) echo - ;;
  esac
}

load() { # port name
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency -s bench/events.lua \
    "http://127.0.0.1:$1" -- "$out/events.txt" 2 /lark/events >"$out/wrk-$2.txt"
}

target/dist/examples/emulators 3101 3102 >/dev/null &
pids+=($!)
wait_port 3101

rows="$out/rows.txt"
: >"$rows"
port=3120
for round in $(seq 1 "$ROUNDS"); do
  # Fresh timestamps each round: the receivers refuse stale ones.
  "$bin/examples/bench_events" "$EVENTS" "$out/events.txt" 2>/dev/null
  for s in "${SERVERS[@]}"; do
    port=$((port + 1)) # a fresh port: no connection of the last server lingers
    start "$s" "$port"
    pid=$server_pid
    idle=$(kb VmRSS "$pid")
    t0=$(ticks "$pid")
    load "$port" "$s"
    settle "$pid"
    t1=$(ticks "$pid")
    peak=$(kb VmHWM "$pid")
    kill -TERM "$pid"
    wait "$pid" || true
    r=$(grep '^RESULT' "$out/wrk-$s.txt")
    acc=$(field accepted "$r")
    [ "$(field exhausted "$r")" = 0 ] ||
      echo "warning: $s sent every generated event; raise EVENTS for a true ceiling" >&2
    [ "$(field other "$r")" = 0 ] && [ "$(field errors "$r")" = 0 ] ||
      echo "warning: $s: $(field other "$r") non-2xx answers, $(field errors "$r") socket errors" >&2
    st=$(stored "$s")
    if [ "$st" != - ] && [ "$st" -lt "$acc" ]; then
      echo "error: $s acknowledged $acc events but stored only $st" >&2
      exit 1
    fi
    awk -v s="$s" -v r="$round" -v a="$acc" -v d="$(field duration_us "$r")" \
      -v p50="$(field p50_us "$r")" -v p99="$(field p99_us "$r")" -v t="$((t1 - t0))" \
      -v hz="$HZ" -v idle="$idle" -v peak="$peak" -v st="$st" 'BEGIN {
        printf "%s %d %.0f %.2f %.2f %.1f %.1f %.1f %s\n", s, r, a * 1e6 / d, p50 / 1000,
          p99 / 1000, (a > 0 ? t * 1e6 / hz / a : 0), idle / 1024, peak / 1024, st }' >>"$rows"
    printf 'round %d %-13s %s\n' "$round" "$s" "$(tail -1 "$rows" | cut -d' ' -f3- |
      awk '{printf "%s ev/s  p50 %s ms  p99 %s ms  %s µs/ev  idle %s MiB  peak %s MiB  stored %s", $1, $2, $3, $4, $5, $6, $7}')"
  done
done

if [ "$PERF" = 1 ]; then
  "$bin/examples/bench_events" "$EVENTS" "$out/events.txt" 2>/dev/null
  port=$((port + 1))
  start abort-bot "$port"
  perf record -g -o "$out/perf.data" -p "$server_pid" -- sleep "$DURATION" 2>/dev/null &
  perf_pid=$!
  load "$port" perf
  wait "$perf_pid" || true
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  perf report -i "$out/perf.data" --stdio --no-children --percent-limit 1 2>/dev/null \
    >"$out/perf.txt" || true
  echo "perf profile of abort-bot under load: $out/perf.txt"
fi

# End to end: the bot against emulators that record when each request arrived.
rm -f "$out/e2e.db" "$out/e2e.db"-*
"$bin/examples/e2e" 3111 3112 http://127.0.0.1:3110 "$E2E_RATE" "$E2E_SECONDS" >"$out/e2e.txt" &
e2e=$!
pids+=("$e2e")
wait_port 3111
bot 3110 3111 3112 "$out/e2e.db" ABORT_BOT_DEFAULT_PROJECT=doc ABORT_BOT_USER_RATE=1000000 \
  >"$out/e2e-bot.log" 2>&1
pids+=($!)
e2e_ok=0
wait "$e2e" && e2e_ok=1
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" || true
e2e_line=$(grep '^E2E' "$out/e2e.txt" || echo "E2E failed")

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
col() { awk -v s="$1" -v c="$2" '$1 == s {print $c}' "$rows" | median; }
ratio() { # a b -> median over rounds of a/b (events/s, same round)
  awk -v a="$1" -v b="$2" '$1 == a {x[$2] = $3} $1 == b {y[$2] = $3}
    END {for (r in x) if (y[r] > 0) print x[r] / y[r]}' "$rows" | median
}
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -sr)," \
  "load average before the run: $load_before; wrk -t2 -c$CONNS, ${DURATION}s x $ROUNDS rounds"
echo
echo "| server | accepted events/s | p50 ack ms | p99 ack ms | CPU µs/event | idle RSS MiB | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for s in "${SERVERS[@]}"; do
  echo "| $s | $(col "$s" 3) | $(col "$s" 4) | $(col "$s" 5) | $(col "$s" 6) | $(col "$s" 7) | $(col "$s" 8) |"
done
echo
echo "(medians of $ROUNDS rounds; ratios are medians of per-round ratios)"
check() { # label value op target
  awk -v l="$1" -v v="$2" -v op="$3" -v t="$4" 'BEGIN {
    ok = (op == ">=") ? v >= t : v <= t
    printf "%-44s %8.2f  target %s %s  %s\n", l, v, op, t, ok ? "met" : "MISSED" }'
}
check "abort-bot / floor-durable (events/s)" "$(ratio abort-bot floor-durable)" ">=" 0.90
check "abort-bot / node-empty (events/s)" "$(ratio abort-bot node-empty)" ">=" 1.3
check "abort-bot / node-durable (events/s)" "$(ratio abort-bot node-durable)" ">=" 5
check "abort-bot CPU µs per event" "$(col abort-bot 6)" "<=" 40
check "abort-bot p99 ack ms at $CONNS connections" "$(col abort-bot 5)" "<=" 10
check "abort-bot peak RSS MiB" "$(col abort-bot 8)" "<=" 40
check "abort-bot idle RSS MiB" "$(col abort-bot 7)" "<=" 15
echo
echo "end to end, abort-bot against the emulators ($E2E_RATE/s for ${E2E_SECONDS}s of /abort commands):"
echo "$e2e_line"
[ "$e2e_ok" = 1 ] || { echo "the end-to-end run failed (see $out/e2e.txt)" >&2; exit 1; }
