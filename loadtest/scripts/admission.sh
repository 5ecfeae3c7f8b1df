#!/usr/bin/env bash
# admission.sh — does admission hold a 100x burst on its DEFAULTS? One replica of the demo
# app, the 100x step of scenarios/admission-100x.yaml, at 256 and at 2,000 client
# connections, through Floodgate with `admission: {}` (peers/floodgate-defaults.yaml) and
# through nginx with limit_req hand-tuned to the replica's measured capacity, in one run;
# then Floodgate again with a CPU hog (a bounded busy loop) competing for the cores.
# Prints one table and writes reports/admission-<timestamp>/ (every report, table.md).
#
#   admission.sh [--scenario FILE] [--connections "256 2000"] [--no-nginx] [--no-hog]
#                [--access-log]
#
# --access-log: Floodgate writes an access log (status, duration_ms, reason) to a file, and
# the rejections' time inside the proxy (arrival to last byte written) is reported beside
# the client's view; a diagnostic, since the log costs CPU of its own.
# Besides the table, per run: the CPU time of the generator, the proxy and the app per
# request sent (from /proc, µs), and Floodgate's queued requests' waits by outcome
# (`floodgate_admission_wait_seconds`), in cpu.json and waits.txt beside each report.
#
# Environment: APP_WORKERS (16), APP_SERVICE_TIME (10ms), APP_MAX_QUEUE (64); FLOODGATE, the
# proxy binary (default: the release build, built if missing), to compare two builds;
# FLOODGATE_ARGS, extra flags for it (e.g. `--workers 1`, as nginx runs one worker).
# Every process is started and stopped by PID; every load run is bounded by its profile.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario="$ROOT/loadtest/scenarios/admission-100x.yaml"
conns_list="256 2000"
nginx=1
hog=1
access_log=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --connections) conns_list="$2"; shift 2 ;;
    --no-nginx) nginx=0; shift ;;
    --no-hog) hog=0; shift ;;
    --access-log) access_log=1; shift ;;
    *) die "unknown option $1" ;;
  esac
done
export APP_WORKERS="${APP_WORKERS:-16}" APP_SERVICE_TIME="${APP_SERVICE_TIME:-10ms}" APP_MAX_QUEUE="${APP_MAX_QUEUE:-64}"
out="$ROOT/reports/admission-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
cp "$scenario" "$out/scenario.yaml"
ensure_loadtest_bins
if [[ -z ${FLOODGATE:-} ]]; then ensure_floodgate || die "floodgate does not build"; fi
FLOODGATE="${FLOODGATE:-$BIN_DIR/floodgate}"
if [[ $nginx == 1 ]] && ! command -v nginx >/dev/null; then
  log "installing nginx (apt-get)…"
  (apt-get install -y nginx >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y nginx >/dev/null 2>&1; }) || nginx=0
fi
trap 'RUN_DIR="${RUN_DIR:-}"; [[ -n "$RUN_DIR" ]] && stop_all' EXIT

# 1. The replica's capacity, measured: offered ~2x its model capacity for 6 s, direct; the
# mean of its whole seconds after the first (ramp) — the statistic the burst's goodput
# uses (the mean of whole seconds inside the burst). Not the report's goodput_rps, which
# divides every answer, those of the drain after the run included, by the run's length
# (1,468 rps where each steady second served 1,456).
export RUN_DIR="$out/capacity/run"; mkdir -p "$RUN_DIR"; : >"$RUN_DIR/pids"
start_apps 1
model=$(python3 -c "import sys,re; w=int(sys.argv[1]); t=sys.argv[2]; ms=float(t[:-2]) if t.endswith('ms') else float(t[:-1])*1000; print(int(w*1000/ms))" "$APP_WORKERS" "$APP_SERVICE_TIME")
"$BIN_DIR/floodgate-load" --url "http://${APP_ADDRS%% *}/api/v1/codes/{id}" --rate $((model * 2)) \
  --duration 6s --connections 256 --out "$out/capacity" --quiet || true
stop_all
read -r capacity capacity_total < <(python3 -c "
import json; r = json.load(open('$out/capacity/report.json')); a = r['timeline']['admitted'][1:6]
print(int(sum(a) / len(a)), int(r['summary']['goodput_rps']))")
log "measured capacity of one replica: $capacity rps per steady second (all answers / 6 s: $capacity_total; model $model)"

# run NAME PEER CONNS [hog]: one burst through PEER with CONNS client connections.
run() {
  local name="$1" peer="$2" conns="$3" with_hog="${4:-}" url hog_pid=""
  export RUN_DIR="$out/$name/run"; mkdir -p "$RUN_DIR"; : >"$RUN_DIR/pids"
  start_apps 1
  local app_pid="$LAST_PID" peer_pid
  export PROXY_PORT ADMIN_PORT; PROXY_PORT=$(free_port); ADMIN_PORT=$(free_port)
  case "$peer" in
    floodgate)
      render "$ROOT/loadtest/peers/floodgate-defaults.yaml" "$RUN_DIR/floodgate.yaml"
      if [[ $access_log == 1 ]]; then
        sed -i "s|access_log: false|access_log: { path: $RUN_DIR/access.log, format: json, fields: [status, duration_ms, reason] }|" \
          "$RUN_DIR/floodgate.yaml"
      fi
      # shellcheck disable=SC2086
      start_bg floodgate "$RUN_DIR/floodgate.log" "$FLOODGATE" --config "$RUN_DIR/floodgate.yaml" ${FLOODGATE_ARGS:-}
      wait_http "http://127.0.0.1:$ADMIN_PORT/ready" 20 || die "floodgate did not start"
      ;;
    nginx)
      # Hand-tuned: a token bucket at the replica's measured capacity, a burst of one
      # second's worth of the app's workers, concurrency capped at workers + app queue.
      export NGINX_RATE="$capacity" NGINX_BURST="$APP_WORKERS" NGINX_MAX_CONN=$((APP_WORKERS + APP_MAX_QUEUE))
      mkdir -p "$RUN_DIR/nginx-tmp"
      render "$ROOT/loadtest/peers/nginx.conf" "$RUN_DIR/nginx.conf"
      start_bg nginx "$RUN_DIR/nginx.log" nginx -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf"
      wait_http "http://127.0.0.1:$PROXY_PORT/healthz" 20 || die "nginx did not start"
      ;;
  esac
  peer_pid="$LAST_PID"
  url="http://127.0.0.1:$PROXY_PORT"
  if [[ -n $with_hog ]]; then
    # A CPU hog for the length of the run (bounded by timeout), on the same 2 cores.
    timeout 60 python3 -c 'while True: pass' & hog_pid=$!
    echo "hog $hog_pid" >>"$RUN_DIR/pids"
  fi
  log "== $name: $peer, $conns connections${with_hog:+, with a CPU hog}"
  mkdir -p "$out/$name"
  # Every 100 ms: the admission state (/clusters) and the app's busy slots (/stats).
  local stop_file="$RUN_DIR/sampler.stop" sampler_pid
  python3 "$ROOT/loadtest/scripts/admission_sample.py" "$out/$name" "http://127.0.0.1:$ADMIN_PORT" \
    healthcode "http://${APP_ADDRS%% *}" "$stop_file" 120 & sampler_pid=$!
  echo "sampler $sampler_pid" >>"$RUN_DIR/pids"
  local cpu_before; cpu_before=$(cpu_secs "$peer_pid" "$app_pid")
  /usr/bin/time -f "%U %S" -o "$out/$name/load-cpu.txt" \
    "$BIN_DIR/floodgate-load" --scenario "$scenario" --base-url "$url" --connections "$conns" \
    --name "$name" --out "$out/$name" --quiet || log "$name: floodgate-load exited $?"
  echo "$cpu_before $(cpu_secs "$peer_pid" "$app_pid")" >"$out/$name/peer-cpu.txt"
  touch "$stop_file"; wait "$sampler_pid" 2>/dev/null || true
  if [[ $peer == floodgate ]]; then
    curl -fs "http://127.0.0.1:$ADMIN_PORT/clusters" >"$out/$name/clusters.json" || true
    curl -fs "http://127.0.0.1:$ADMIN_PORT/metrics" >"$out/$name/metrics.txt" || true
  fi
  stop_all
  [[ -f "$RUN_DIR/access.log" ]] && cp "$RUN_DIR/access.log" "$out/$name/access.log"
  [[ -n $hog_pid ]] && { kill "$hog_pid" 2>/dev/null || true; wait "$hog_pid" 2>/dev/null || true; }
  stop_all
}

# cpu_secs PID...: CPU seconds (user + system) of each process and its children now
# (nginx's workers are its master's children), space separated.
cpu_secs() {
  python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
def stat(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(f[1]), (int(f[11]) + int(f[12])) / tick   # ppid, utime + stime
procs = {int(p): stat(p) for p in os.listdir("/proc") if p.isdigit()}
out = []
for pid in map(int, sys.argv[1:]):
    own = procs.get(pid)
    kids = sum(v[1] for v in procs.values() if v and v[0] == pid)
    out.append(f"{(own[1] if own else 0) + kids:.2f}")
print(" ".join(out))
PY
}

rows=()
for conns in $conns_list; do
  run "floodgate-c$conns" floodgate "$conns"; rows+=("floodgate-c$conns")
  if [[ $nginx == 1 ]]; then run "nginx-c$conns" nginx "$conns"; rows+=("nginx-c$conns"); fi
done
if [[ $hog == 1 ]]; then
  first=${conns_list%% *}
  run "floodgate-c$first-hog" floodgate "$first" hog; rows+=("floodgate-c$first-hog")
fi

python3 - "$out" "$capacity" "${rows[@]}" <<'PY' | tee "$out/table.md"
import json, os, sys
out, cap, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
def stats(name):
    r = json.load(open(os.path.join(out, name, "report.json")))
    s, t, prof = r["summary"], r["timeline"], r["config"]["profile"]
    before, spike = (int(float(p["duration"].rstrip("s"))) for p in prof[:2])
    inside = range(before + 2, before + spike - 1)          # whole seconds inside the burst
    good = sum(t["admitted"][i] for i in inside) / len(inside)
    p99 = t["latency_ms"]["admitted"]["p99"]
    pre = [v for v in p99[1:before] if v is not None]
    pre99 = max(pre) if pre else None
    burst99 = max((v for v in p99[before:before + spike] if v is not None), default=None)
    # Seconds after the burst until a second's admitted p99 is back within 1.5x pre-burst.
    recovery = None
    if pre99:
        for k, v in enumerate(p99[before + spike:]):
            if v is not None and v <= 1.5 * pre99:
                recovery = k
                break
    lat = s["latency_ms"]
    return dict(good=good, pre99=pre99, burst99=burst99, adm99=lat["admitted"]["p99"],
                rej99=lat["rejected"]["p99"], rejected=s["rejected"],
                no_ra=s.get("rejected_without_retry_after"), unanswered=s["unanswered"],
                recovery=recovery, reasons=s.get("by_reason", {}))
f = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"
print(f"# 100x burst against one replica (measured capacity {cap:.0f} rps), admission on its defaults\n")
print("| setup | burst goodput (rps) | % of capacity | pre-burst p99 (ms) | admitted p99 in the burst, worst second (ms) | ratio | admitted p99 overall (ms) | ratio | rejected p99 (ms) | rejected | without Retry-After | unanswered | back to pre-burst p99 (s after) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    x = stats(n)
    whole = None if not x["pre99"] else x["adm99"] / x["pre99"]
    ratio = None if not (x["pre99"] and x["burst99"]) else x["burst99"] / x["pre99"]
    print(f"| {n} | {x['good']:.0f} | {100 * x['good'] / cap:.0f}% | {f(x['pre99'])} | {f(x['burst99'])} | {f(ratio, 2)} | {f(x['adm99'])} | {f(whole, 2)} | {f(x['rej99'], 2)} | {x['rejected']} | {x['no_ra']} | {x['unanswered']} | {f(x['recovery'], 0)} |")
print()
for n in names:
    print(f"- {n}: rejections by x-floodgate-reason: {stats(n)['reasons'] or 'none'}")

# Where a rejection's time goes, and what each request costs in CPU.
def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None
def diag(name):
    d = os.path.join(out, name)
    r = json.load(open(os.path.join(d, "report.json")))["summary"]
    sent = max(r["sent"], 1)
    row = dict(rej=r["latency_ms"]["rejected"], svc=r["service_latency_ms"]["rejected"],
               lag=r["send_lag_ms"])
    try:
        u, s_ = map(float, open(os.path.join(d, "load-cpu.txt")).read().split()[-2:])
        row["gen_us"] = (u + s_) * 1e6 / sent
        b = list(map(float, open(os.path.join(d, "peer-cpu.txt")).read().split()))
        row["peer_us"], row["app_us"] = (b[2] - b[0]) * 1e6 / sent, (b[3] - b[1]) * 1e6 / sent
    except (OSError, ValueError, IndexError):
        pass
    log = os.path.join(d, "access.log")
    if os.path.exists(log):
        durs = [j["duration_ms"] for j in map(json.loads, open(log)) if j.get("status") == 503]
        row["proxy503"] = (pct(durs, 0.5), pct(durs, 0.99), len(durs))
    return row
print("\n| setup | rejected p50 / p99 from intended send (ms) | from actual send (ms) | send lag p50 / p99 (ms) | 503s inside the proxy p50 / p99 (ms) | CPU µs per request sent: generator / proxy / app |")
print("|---|---:|---:|---:|---:|---:|")
for n in names:
    x = diag(n)
    p503 = x.get("proxy503")
    inside = f"{f(p503[0], 3)} / {f(p503[1], 3)} (n={p503[2]})" if p503 else "–"
    cpu = f"{f(x.get('gen_us'))} / {f(x.get('peer_us'))} / {f(x.get('app_us'))}"
    print(f"| {n} | {f(x['rej']['p50'], 2)} / {f(x['rej']['p99'], 2)} | {f(x['svc']['p50'], 2)} / {f(x['svc']['p99'], 2)} | {f(x['lag']['p50'], 2)} / {f(x['lag']['p99'], 2)} | {inside} | {cpu} |")

# Floodgate's queued requests: how long they waited, by outcome (Prometheus buckets).
for n in names:
    m = os.path.join(out, n, "metrics.txt")
    if not os.path.exists(m):
        continue
    waits = {}
    for line in open(m):
        if line.startswith("floodgate_admission_wait_seconds_bucket"):
            labels, value = line.rsplit(" ", 1)
            outcome = labels.split('outcome="')[1].split('"')[0]
            le = labels.split('le="')[1].split('"')[0]
            waits.setdefault(outcome, []).append((le, int(float(value))))
    for outcome, buckets in sorted(waits.items()):
        total = buckets[-1][1]
        if total:
            shown = ", ".join(f"≤{le}s {100 * c / total:.1f}%" for le, c in buckets if le in ("0.0005", "0.001", "0.002", "0.005"))
            print(f"- {n}: queued then {outcome}: {total} ({shown})")

# Sampled every 100 ms inside the burst (the seconds the goodput counts): where the
# capacity went. Busy slots are the app's own count of requests holding a worker.
def samples(name):
    d = os.path.join(out, name)
    path = os.path.join(d, "samples.jsonl")
    if not os.path.exists(path):
        return None
    r = json.load(open(os.path.join(d, "report.json")))
    prof = r["config"]["profile"]
    before, spike = (int(float(p["duration"].rstrip("s"))) for p in prof[:2])
    t0 = r["started_at_unix_ms"] + 1000 * (before + 2)
    t1 = r["started_at_unix_ms"] + 1000 * (before + spike - 1)
    rows = [json.loads(l) for l in open(path)]
    return [x for x in rows if t0 <= x["unix_ms"] < t1]
def q(values, p):
    return pct([v for v in values if v is not None], p)
workers = int(os.environ.get("APP_WORKERS", "16"))
print(f"\n| setup | samples | limit p10 / p50 / p90 | in flight p10 / p50 | proxy queue p50 / p90 | standing | probing | app busy slots p10 / p50 (of {workers}) | samples with an idle slot | app queue p50 / p90 | app served (rps) | app's own 503s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    xs = samples(n)
    if not xs:
        continue
    adm = [x["adm"] for x in xs if x["adm"]]
    app = [x["app"] for x in xs if x["app"]]
    lim = [a["limit"] for a in adm]
    inf = [a["in_flight"] for a in adm]
    qd = [a["queue_depth"] for a in adm]
    busy = [a["in_service"] for a in app]
    aq = [a["queued"] for a in app]
    idle = sum(1 for b in busy if b < workers)
    fr = lambda k: f"{100 * sum(1 for a in adm if a.get(k)) / max(1, len(adm)):.0f}%" if adm else "–"
    span = (xs[-1]["unix_ms"] - xs[0]["unix_ms"]) or 1
    rate = (app[-1]["served"] - app[0]["served"]) * 1000 / span if len(app) > 1 else None
    app503 = app[-1]["rejected"] - app[0]["rejected"] if len(app) > 1 else None
    print(f"| {n} | {len(xs)} | {q(lim, .1)} / {q(lim, .5)} / {q(lim, .9)} | {q(inf, .1)} / {q(inf, .5)} | {q(qd, .5)} / {q(qd, .9)} | {fr('queue_standing')} | {fr('probing')} | {q(busy, .1)} / {q(busy, .5)} | {100 * idle / max(1, len(busy)):.0f}% | {q(aq, .5)} / {q(aq, .9)} | {f(rate, 0)} | {app503} |")
PY
log "reports: $out"
