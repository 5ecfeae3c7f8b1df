"""elastic.sh's table (run by it): reads OUT/report.json and the sampler's files and
prints, per replica, when it registered (ready), when the proxy first sent it a request,
and when it left; goodput per second vs the capacity online; admitted p99; unanswered;
and the desired-replica changes (scale-up, scale-down, flaps).
usage: elastic_table.py OUT PER_REPLICA_RPS
"""
import json, sys

out, per_replica = sys.argv[1], float(sys.argv[2])
rep = json.load(open(f"{out}/report.json"))
t0 = rep["started_at_unix_ms"]
tl = rep["timeline"]


def lines(name):
    res = []
    for line in open(f"{out}/{name}"):
        try:
            res.append(json.loads(line))
        except ValueError:
            pass
    return res


def rel(ms):
    return (ms - t0) / 1000.0


control = lines("control.jsonl")
clusters = lines("clusters.jsonl")

# Per replica (address): registered_at from the registry, first sample where the proxy
# has sent it a request, last time it was listed.
reg, left, first_req = {}, {}, {}
for s in control:
    for e in (s.get("endpoints") or {}).get("endpoints", []):
        if e.get("cluster") != "healthcode":
            continue
        a = e["address"]
        reg.setdefault(a, e.get("registered_at"))
        left[a] = s["unix_ms"]
prev_ms = None
for s in clusters:
    for a, n in s["endpoints"].items():
        if n and a not in first_req:
            first_req[a] = (prev_ms if prev_ms is not None else s["unix_ms"], s["unix_ms"])
    prev_ms = s["unix_ms"]
last_ms = control[-1]["unix_ms"] if control else 0

print("\nreplicas (times in s from the start of the load; first request = between the "
      "last /clusters sample without and the first with one, 100 ms sampling)")
print(f"{'address':<22}{'registered':>11}{'first request':>16}{'reg→request ms':>16}{'deregistered':>14}")
ready_times = []
for a in sorted(reg, key=lambda a: reg[a] or 0):
    r = reg[a]
    fr = first_req.get(a)
    gone = left[a] if left[a] < last_ms else None
    ready_times.append((r, gone))
    lag = "–"
    if r and r < t0:
        lag = "before load"
    elif fr and r:
        lo, hi = max(0, fr[0] - r), max(0, fr[1] - r)
        lag = f"≤{hi}" if lo == 0 else f"{lo}–{hi}"
    print(f"{a:<22}{rel(r) if r else float('nan'):>11.2f}"
          f"{(f'{rel(fr[1]):.2f}' if fr else '–'):>16}{lag:>16}"
          f"{(f'{rel(gone):.2f}' if gone else 'running'):>14}")

# Capacity online per second = replicas registered through that second × per-replica rps.
print(f"\ngoodput vs capacity online ({per_replica:.0f} rps per replica), per second")
print(f"{'t':>4}{'offered':>9}{'goodput':>9}{'rejected':>9}{'replicas':>9}{'capacity':>9}{'goodput %':>10}")
secs = len(tl["t"])
below = []
for i in range(secs):
    lo_ms, hi_ms = t0 + i * 1000, t0 + (i + 1) * 1000
    n = sum(1 for r, g in ready_times if r and r <= lo_ms and (g is None or g >= hi_ms))
    cap = n * per_replica
    offered, good, rej = tl["offered"][i], tl["admitted"][i], tl["rejected"][i]
    want = min(cap, offered)
    pct = 100.0 * good / want if want else float("nan")
    print(f"{i:>4}{offered:>9}{good:>9}{rej:>9}{n:>9}{cap:>9.0f}{pct:>9.0f}%")
    if want and pct < 90:
        below.append(i)
print("seconds with goodput < 90% of min(offered, capacity online): "
      + (", ".join(map(str, below)) if below else "none"))
# Time from each replica's registration to goodput ≥ 90 % of the capacity then online.
for r, _ in ready_times:
    if not r or r <= t0:
        continue
    k = int((r - t0) // 1000)
    hit = next((i for i in range(k + 1, secs)
                if tl["offered"][i] and tl["admitted"][i] >= 0.9 * min(
                    tl["offered"][i],
                    per_replica * sum(1 for rr, g in ready_times if rr and rr <= t0 + i * 1000
                                      and (g is None or g >= t0 + (i + 1) * 1000)))), None)
    if hit is not None:
        print(f"replica registered at {rel(r):.2f}s: goodput ≥ 90% of capacity online in second "
              f"{hit} (≤ {hit + 1 - rel(r):.1f} s after)")

s = rep["summary"]
print(f"\nadmitted p99: {s['latency_ms']['admitted']['p99']} ms   rejected p99: "
      f"{s['latency_ms']['rejected']['p99']} ms   unanswered: {s['unanswered']}   "
      f"offered: {s['offered']}   2xx: {s['admitted']}   429/503: {s['rejected']}")

# Desired changes: scale-ups, scale-downs, and flaps (a rise after a fall).
print("\ndesired replicas changes (s from the start: old → new, reason)")
last, falls, flaps = None, 0, 0
for c in control:
    sc = c.get("scale")
    if not sc:
        continue
    d = sc.get("desired")
    if d != last:
        if last is not None:
            if d < last:
                falls += 1
            elif falls:
                flaps += 1
        print(f"  {rel(c['unix_ms']):7.2f}  {last} → {d}   {sc.get('reason', '')}")
        last = d
print(f"flaps (a scale-up after a scale-down): {flaps}")
