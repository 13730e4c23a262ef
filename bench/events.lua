-- wrk script: sends pre-generated Lark deliveries (one per line: ts nonce sig body), each wrk
-- thread taking every n-th line, so no two threads send the same event and no event is sent
-- twice (the bot dedups: a replay would be a cheaper duplicate). A thread that has sent all of
-- its events stops. At the end one line for bench/run.sh:
--   RESULT accepted=<2xx answers> other=<other answers> errors=<socket errors>
--          duration_us=<run> p50_us=<ack latency> p99_us=<ack latency> exhausted=<threads out of events>
-- Counters are globals: the main thread reads them with thread:get in done().
local threads = {}
local reqs = {}
sent, total, accepted, other = 0, 0, 0, 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(args[2])
  local k = 0
  for line in io.lines(args[1]) do
    if k % n == id then
      local ts, nonce, sig, body = line:match("^(%S+) (%S+) (%S+) (.*)$")
      reqs[#reqs + 1] = wrk.format("POST", args[3], {
        ["Content-Type"] = "application/json; charset=utf-8",
        ["X-Lark-Request-Timestamp"] = ts,
        ["X-Lark-Request-Nonce"] = nonce,
        ["X-Lark-Signature"] = sig,
      }, body)
    end
    k = k + 1
  end
  total = #reqs
end

function request()
  sent = sent + 1
  if sent >= #reqs then
    -- The last distinct event of this thread: nothing is sent after it.
    wrk.thread:stop()
    sent = #reqs
  end
  return reqs[sent]
end

function response(status)
  if status >= 200 and status < 300 then
    accepted = accepted + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, o, x = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
    if t:get("sent") >= t:get("total") then x = x + 1 end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT accepted=%d other=%d errors=%d duration_us=%d p50_us=%d p99_us=%d exhausted=%d\n",
    a, o, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), x))
end
