-- wrk: GET /api/v1/codes/{id} with a random id from a skewed key space.
--   wrk -t2 -c64 -d10s -s loadtest/wrk/codes.lua http://127.0.0.1:9001
-- KEYS (default 10000000) and ZIPF (default 1.0, 0 = uniform) come from the environment.
-- Note: wrk is closed-loop (it waits for each response), so its latencies hide server
-- stalls (coordinated omission); floodgate-load does not.
local keys = tonumber(os.getenv("KEYS") or "10000000")
local s = tonumber(os.getenv("ZIPF") or "1.0")

-- Continuous power-law inverse CDF, the same draw floodgate-load uses.
local function rank()
  local u = math.random()
  local n1 = keys + 1
  local x
  if math.abs(s - 1.0) < 1e-9 then
    x = n1 ^ u
  else
    local e = 1.0 - s
    x = (1.0 + u * (n1 ^ e - 1.0)) ^ (1.0 / e)
  end
  return math.max(1, math.min(keys, math.floor(x)))
end

function setup(thread)
  math.randomseed(os.time() + tonumber(tostring(thread):match("0x(%x+)") or "0", 16))
end

request = function()
  local id = ((rank() - 1) * 2654435761) % keys
  return wrk.format("GET", "/api/v1/codes/" .. id)
end
