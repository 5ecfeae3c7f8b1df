#!/usr/bin/env bash
# burst.sh — the 100x burst in one command: bring up the demo stack (stack.sh), run
# scenarios/burst-100x.yaml through Floodgate, write reports/burst-<timestamp>/
# (report.json, report.html, summary.txt), and tear the stack down (always, via trap).
#
#   burst.sh [--scenario FILE] [--replicas N] [--config FILE] [--no-proxy] [-- LOAD_ARGS…]
#
# LOAD_ARGS go to floodgate-load (e.g. -- --check unanswered=0). If Floodgate is not
# available yet the run goes straight to the first replica, and says so.
# Replica settings: APP_WORKERS, APP_SERVICE_TIME, APP_MAX_QUEUE (see stack.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario="$ROOT/loadtest/scenarios/burst-100x.yaml"
up_args=()
load_args=()
no_proxy=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --replicas|--config) up_args+=("$1" "$2"); shift 2 ;;
    --no-proxy) no_proxy=1; shift ;;
    --) shift; load_args=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
done

# The app capacity the burst is tuned for (see scenarios/burst-100x.yaml).
export APP_WORKERS="${APP_WORKERS:-8}" APP_SERVICE_TIME="${APP_SERVICE_TIME:-10ms}" APP_MAX_QUEUE="${APP_MAX_QUEUE:-32}"
STACK="$ROOT/loadtest/scripts/stack.sh"
trap '"$STACK" down || true' EXIT
ensure_loadtest_bins
if [[ $no_proxy == 0 ]] && ! ensure_floodgate; then
  log "Floodgate is not available: running the burst directly against the app (no proxy)"
  no_proxy=1
fi
if [[ $no_proxy == 1 ]]; then up_args+=(--no-proxy); fi
"$STACK" up "${up_args[@]}"
# shellcheck disable=SC1091
source "$ROOT/.floodgate-run/env"

out="$ROOT/reports/burst-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
cp "$scenario" "$out/scenario.yaml"
log "running $(basename "$scenario") against $PROXY_URL → $out"
# While the burst runs, the proxy's view of its cluster once a second (bounded by the
# load run: the sampler stops when floodgate-load exits): health, ejections, load.
sampler=""
if [[ -n "${ADMIN_URL:-}" ]]; then
  ( for _ in $(seq 1 600); do
      curl -fs --max-time 1 "$ADMIN_URL/clusters" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))' >>"$out/clusters.jsonl" 2>/dev/null
      sleep 1
    done ) & sampler=$!
fi
set +e
"$BIN_DIR/floodgate-load" --scenario "$scenario" --base-url "$PROXY_URL" --out "$out" "${load_args[@]}"
rc=$?
set -e
if [[ -n $sampler ]]; then
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  curl -fs "$ADMIN_URL/metrics" >"$out/metrics.txt" 2>/dev/null || true
  # Ejections during the run, and the seconds in which some endpoint was ejected.
  python3 - "$out" <<'PY' || true
import json, sys, re
out = sys.argv[1]
ejected_secs, samples = 0, 0
for line in open(f"{out}/clusters.jsonl"):
    line = line.strip()
    if not line:
        continue
    samples += 1
    doc = json.loads(line)
    if any(e.get("ejected") for c in doc.get("clusters", []) for e in c.get("endpoints", [])):
        ejected_secs += 1
metrics = open(f"{out}/metrics.txt").read() if samples else ""
ejections = sum(float(v) for v in re.findall(r"^floodgate_outlier_ejections_total\{[^}]*\} (\S+)", metrics, re.M))
print(f"ejections during the run: {ejections:.0f}; seconds with an endpoint ejected: {ejected_secs} of {samples} sampled")
PY
fi
cp "$ROOT/.floodgate-run/"*.log "$out/" 2>/dev/null || true
echo "report: $out/report.html"
exit $rc
