"""elastic.sh's sampler (run by it, not by hand): until STOP_FILE exists (or MAX_SECS),
every 100 ms the proxy's /clusters (per-endpoint requests_total) and every 250 ms the
control plane's GET /v1/scale/healthcode, /v1/scalers and /v1/endpoints. Writes, in OUT:
  scale.jsonl     {"unix_ms", "desired replicas", "ready replicas", "panic"}  (the
                  report's extra series, via floodgate-load --extra-series)
  control.jsonl   {"unix_ms", "scale", "scalers", "endpoints"}  raw, for the table
  clusters.jsonl  {"unix_ms", "endpoints": {address: requests_total}}
usage: elastic_sample.py OUT CONTROL_URL ADMIN_URL CLUSTER STOP_FILE MAX_SECS
"""
import json, os, sys, time, urllib.request

out, control, admin, cluster, stop_file, max_secs = sys.argv[1:7]
token = os.environ["FLOODGATE_OPERATOR_TOKEN"]


def get(url, auth=False):
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=1) as r:
            return json.load(r)
    except Exception:
        return None


def now_ms():
    return int(time.time() * 1000)


deadline = time.time() + float(max_secs)
next_control = 0.0
with open(f"{out}/scale.jsonl", "a") as scale_f, open(f"{out}/control.jsonl", "a") as ctl_f, \
        open(f"{out}/clusters.jsonl", "a") as cl_f:
    while time.time() < deadline and not os.path.exists(stop_file):
        t = time.time()
        doc = get(f"{admin}/clusters")
        if doc is not None:
            eps = {e["address"]: e.get("requests_total", 0)
                   for c in doc.get("clusters", []) if c.get("name") == cluster
                   for e in c.get("endpoints", [])}
            cl_f.write(json.dumps({"unix_ms": now_ms(), "endpoints": eps}) + "\n")
            cl_f.flush()
        if t >= next_control:
            next_control = t + 0.25
            scale = get(f"{control}/v1/scale/{cluster}", auth=True)
            scalers = get(f"{control}/v1/scalers", auth=True)
            endpoints = get(f"{control}/v1/endpoints", auth=True)
            at = now_ms()
            if scale is not None:
                scale_f.write(json.dumps({"unix_ms": at, "desired replicas": scale.get("desired"),
                                          "ready replicas": scale.get("ready"),
                                          "panic": bool(scale.get("panic"))}) + "\n")
                scale_f.flush()
            ctl_f.write(json.dumps({"unix_ms": at, "scale": scale, "scalers": scalers,
                                    "endpoints": endpoints}) + "\n")
            ctl_f.flush()
        time.sleep(max(0.0, 0.1 - (time.time() - t)))
