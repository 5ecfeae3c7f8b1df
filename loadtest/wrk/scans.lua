-- wrk: POST /api/v1/scans with a random id (uniform).
--   wrk -t2 -c32 -d10s -s loadtest/wrk/scans.lua http://127.0.0.1:9001
local keys = tonumber(os.getenv("KEYS") or "10000000")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  local id = math.random(0, keys - 1)
  return wrk.format(nil, "/api/v1/scans", nil, string.format('{"id":"%d"}', id))
end
