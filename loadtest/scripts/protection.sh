#!/usr/bin/env bash
# protection.sh — the 100x burst through Floodgate with burst protection off, then on,
# against the same demo-app capacity, in one run; prints one table and writes
# reports/protection-<timestamp>/ (both report folders, the table as table.md).
#
#   protection.sh [--scenario FILE]
#
# Steps (every process on loopback, stopped by PID; every load run bounded):
#   1. capacity: one replica alone, offered ~2x its model capacity for 5 s → its goodput,
#      times the replica count = the capacity online;
#   2. off: stack.sh with loadtest/peers/floodgate-burst.yaml, the burst scenario;
#   3. on:  stack.sh with loadtest/peers/floodgate-protected.yaml, the same scenario.
# Replica settings as in burst.sh (APP_WORKERS=8, APP_SERVICE_TIME=10ms, APP_MAX_QUEUE=32).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario="$ROOT/loadtest/scenarios/burst-100x.yaml"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
export APP_WORKERS="${APP_WORKERS:-8}" APP_SERVICE_TIME="${APP_SERVICE_TIME:-10ms}" APP_MAX_QUEUE="${APP_MAX_QUEUE:-32}"
REPLICAS=2
STACK="$ROOT/loadtest/scripts/stack.sh"
trap '"$STACK" down >/dev/null 2>&1 || true' EXIT
ensure_loadtest_bins
ensure_floodgate || die "floodgate does not build"
out="$ROOT/reports/protection-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"

# 1. Capacity of one replica, measured.
"$STACK" up --no-proxy --replicas 1 --config "$ROOT/loadtest/peers/floodgate-burst.yaml" >/dev/null
source "$ROOT/.floodgate-run/env"
model=$(python3 -c "import sys,re; w=int(sys.argv[1]); t=sys.argv[2]; ms=float(re.sub('ms','',t)) if t.endswith('ms') else float(t[:-1])*1000; print(int(w*1000/ms))" "$APP_WORKERS" "$APP_SERVICE_TIME")
"$BIN_DIR/floodgate-load" --url "$PROXY_URL/api/v1/codes/{id}" --rate $((model * 2)) --duration 5s \
  --connections 256 --out "$out/capacity" --quiet || true
"$STACK" down >/dev/null 2>&1

# 2. and 3. The burst, protection off then on.
for mode in off on; do
  template="$ROOT/loadtest/peers/floodgate-burst.yaml"
  [[ $mode == on ]] && template="$ROOT/loadtest/peers/floodgate-protected.yaml"
  "$STACK" up --config "$template" --replicas "$REPLICAS" >/dev/null
  source "$ROOT/.floodgate-run/env"
  log "burst with protection $mode → $out/$mode"
  "$BIN_DIR/floodgate-load" --scenario "$scenario" --base-url "$PROXY_URL" --out "$out/$mode" --quiet || true
  cp "$ROOT/.floodgate-run/floodgate.yaml" "$out/$mode/floodgate.yaml"
  "$STACK" down >/dev/null 2>&1
done

python3 - "$out" "$REPLICAS" "$APP_SERVICE_TIME" <<'PY' | tee "$out/table.md"
import json, sys
out, replicas, service = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cap = json.load(open(f"{out}/capacity/report.json"))["summary"]["goodput_rps"] * replicas
def stats(mode):
    r = json.load(open(f"{out}/{mode}/report.json"))
    s, t = r["summary"], r["timeline"]
    prof = r["config"]["profile"]
    secs = [int(p["duration"].rstrip("s")) for p in prof]
    before, spike = secs[0], secs[1]
    burst = range(before + 2, before + spike - 1)           # whole seconds inside the spike
    good = sum(t["admitted"][i] for i in burst) / len(burst)
    pre = [v for v in t["latency_ms"]["admitted"]["p99"][1:before] if v is not None]
    lat = s["latency_ms"]
    return {
        "goodput": good, "pre_p99": max(pre) if pre else None,
        "adm_p50": lat["admitted"]["p50"], "adm_p99": lat["admitted"]["p99"],
        "rej_p99": lat["rejected"]["p99"], "unanswered": s["unanswered"],
        "rejected": s["rejected"], "reasons": s.get("by_reason", {}),
    }
rows = {m: stats(m) for m in ("off", "on")}
f = lambda v: "n/a" if v is None else f"{v:.1f}"
print(f"# 100x burst, protection off vs on (capacity online, measured: {cap:.0f} rps; app service time {service})\n")
print("| protection | burst goodput (rps) | % of capacity | pre-burst admitted p99 (ms) | admitted p50 / p99 (ms) | rejected p99 (ms) | rejected | unanswered |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for m, x in rows.items():
    print(f"| {m} | {x['goodput']:.0f} | {100*x['goodput']/cap:.0f}% | {f(x['pre_p99'])} | {f(x['adm_p50'])} / {f(x['adm_p99'])} | {f(x['rej_p99'])} | {x['rejected']} | {x['unanswered']} |")
print()
for m, x in rows.items():
    print(f"- {m}: rejections by x-floodgate-reason: {x['reasons'] or 'none (all from the app)'}")
PY
echo "reports: $out"
