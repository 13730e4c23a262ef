-- wrk script: replays pre-generated Lark deliveries (one per line: ts nonce sig body),
-- each wrk thread taking every n-th line so no two threads send the same event.
local threads = {}
local reqs = {}
local i = 0

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
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
