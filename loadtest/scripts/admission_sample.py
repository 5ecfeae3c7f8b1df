"""admission.sh's sampler (run by it, not by hand): every 100 ms until STOP_FILE exists (or
MAX_SECS), the proxy's /clusters (the cluster's admission block: limit, in flight, queue
depth, standing, smoothed and minimum latency, probing, counters) and the app's own
GET /stats (requests in service = busy worker slots, queued inside the app, served).
Writes OUT/samples.jsonl, one line per sample:
  {"unix_ms", "adm": {...admission status...} | null, "app": {...stats...} | null}
usage: admission_sample.py OUT ADMIN_URL CLUSTER APP_URL STOP_FILE MAX_SECS
"""
import json, os, sys, time, urllib.request

out, admin, cluster, app, stop_file, max_secs = sys.argv[1:7]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return json.load(r)
    except Exception:
        return None


deadline = time.time() + float(max_secs)
with open(f"{out}/samples.jsonl", "a") as f:
    while time.time() < deadline and not os.path.exists(stop_file):
        t = time.time()
        adm = None
        doc = get(f"{admin}/clusters")
        if doc is not None:
            for c in doc.get("clusters", []):
                if c.get("name") == cluster:
                    adm = c.get("admission")
        f.write(json.dumps({"unix_ms": int(t * 1000), "adm": adm, "app": get(f"{app}/stats")}) + "\n")
        time.sleep(max(0.0, 0.1 - (time.time() - t)))
