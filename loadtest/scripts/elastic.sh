#!/usr/bin/env bash
# elastic.sh — the elastic 100x demo (issue #14) in one command: floodgate-control with
# the autoscaler and the local process scaler (configs/control-elastic.yaml: 1 replica of
# healthcode-app, at most 4), Floodgate from configs/bootstrap-demo.yaml, then the 100x
# burst (scenarios/elastic-100x.yaml: 40 rps → 4,000 rps for 30 s → 40 rps for 60 s).
#
#   elastic.sh [--scenario FILE] [--control-config FILE] [-- LOAD_ARGS…]
#   elastic.sh --stack [--scenario FILE] [-- LOAD_ARGS…]
#
# --stack: against the quick start's running stack (`stack.sh up`: configs/control.yaml,
# 2–4 replicas, the autoscaler's default windows) instead of starting its own; it stops
# only its sampler. Without it, its own stack with configs/control-elastic.yaml (1–4
# replicas, stable_window 20 s and scale_down_delay 15 s, so one run also shows the
# scale-down), stopped at the end.
#
# While the load runs it samples GET /v1/scale/healthcode (desired, ready, panic),
# /v1/scalers and /v1/endpoints every 250 ms and the proxy's /clusters every 100 ms
# (elastic_sample.py); the desired/ready replicas go into the report as extra series
# (floodgate-load --extra-series), drawn under offered/goodput/rejected on the same time
# axis. Then it prints the table (elastic_table.py): per replica when it registered and
# when it first took traffic, goodput per second vs the capacity online, admitted p99,
# unanswered, and every change of desired (scale-up, scale-down, flaps).
# Output: reports/elastic-<timestamp>/ (report.html, report.json, summary.txt,
# table.txt, the samples and every process's log). Everything it started is stopped by
# PID on exit (the control plane stops the replicas it started).
# Uses the demo's fixed ports (control 7070, proxy 8080, admin 9901): `stack.sh down` first.
# LOAD_ARGS go to floodgate-load (default: --check unanswered=0).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario="$ROOT/loadtest/scenarios/elastic-100x.yaml"
control_config="$ROOT/configs/control-elastic.yaml"
load_args=(--check unanswered=0)
stack=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stack) stack=1; shift ;;
    --scenario) scenario="$2"; shift 2 ;;
    --control-config) control_config="$2"; shift 2 ;;
    --) shift; load_args=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
done
# One replica's capacity as configs/control.yaml and control-elastic.yaml start it, for
# the table's "capacity online": nominally 8 workers / 10 ms = 800 rps, measured 712–724 2xx/s for one replica
# alone at 1,200 rps offered on the 2-core dev machine (each 10 ms sleep takes ~11 ms).
PER_REPLICA_RPS="${PER_REPLICA_RPS:-720}"
CONTROL_URL=http://127.0.0.1:7070
PROXY_URL=http://127.0.0.1:8080
ADMIN_URL=http://127.0.0.1:9901

ensure_loadtest_bins
out="$ROOT/reports/elastic-$(date +%Y%m%d-%H%M%S)"
export RUN_DIR="$out"
mkdir -p "$out"
: >"$out/pids"
trap 'touch "$out/stop"; stop_all' EXIT
demo_tokens
op() { curl -fs --max-time 2 -H "Authorization: Bearer $FLOODGATE_OPERATOR_TOKEN" "$CONTROL_URL$1"; }
# The proxy's healthy healthcode endpoints (bounded).
healthy() {
  curl -fs --max-time 1 "$ADMIN_URL/clusters" | python3 -c 'import json,sys; print(sum(e["healthy"] for c in json.load(sys.stdin)["clusters"] if c["name"]=="healthcode" for e in c["endpoints"]))' 2>/dev/null || echo 0
}

if [[ $stack == 1 ]]; then
  env_file="$ROOT/.floodgate-run/env"
  [[ -f $env_file ]] || die "no stack is running: loadtest/scripts/stack.sh up first"
  # shellcheck disable=SC1090
  source "$env_file"
  [[ -n "${CONTROL_URL:-}" ]] || die "the running stack has no control plane (stack.sh up --static / --config): run stack.sh up"
  op /v1/scale/healthcode >/dev/null || die "$CONTROL_URL does not autoscale cluster healthcode (or the operator token is not the stack's)"
  [[ $(healthy) -ge 1 ]] || die "the proxy at $ADMIN_URL has no healthy healthcode endpoint"
  log "using the running stack: proxy $PROXY_URL, control plane $CONTROL_URL, $(healthy) healthy replica(s)"
else
  for port in 7070 8080 9901; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
      die "127.0.0.1:$port is in use (a demo stack? run loadtest/scripts/stack.sh down, or use --stack)"
    fi
  done
  ensure_floodgate || die "floodgate is not available"
  ensure_control
  mkdir -p "$ROOT/.floodgate-run" # bootstrap-demo.yaml keeps its snapshot there
  start_bg floodgate-control "$out/control.log" "$BIN_DIR/floodgate-control" --config "$control_config"
  wait_ok "$CONTROL_URL/ready" 30 || { tail -n 20 "$out/control.log" >&2; die "control plane not ready"; }
  log "control plane up; waiting for the process scaler's first replica"
  ready_replicas() {
    op /v1/scalers | python3 -c 'import json,sys; print(sum(r["phase"]=="ready" for s in json.load(sys.stdin)["scalers"] for r in s["replicas"]))' 2>/dev/null || echo 0
  }
  for _ in $(seq 1 300); do [[ $(ready_replicas) -ge 1 ]] && break; sleep 0.1; done
  [[ $(ready_replicas) -ge 1 ]] || { tail -n 20 "$out/control.log" >&2; die "no replica became ready"; }

  start_bg floodgate "$out/floodgate.log" "$BIN_DIR/floodgate" --config "$ROOT/configs/bootstrap-demo.yaml"
  wait_ok "$ADMIN_URL/ready" 30 || { tail -n 20 "$out/floodgate.log" >&2; die "proxy not ready"; }
  for _ in $(seq 1 300); do [[ $(healthy) -ge 1 ]] && break; sleep 0.1; done
  [[ $(healthy) -ge 1 ]] || die "the proxy has no healthy healthcode endpoint"
  log "proxy up with $(healthy) healthy replica(s); $(op /v1/scale/healthcode || echo 'no scale decision yet')"
fi

cp "$scenario" "$out/scenario.yaml"
python3 "$ROOT/loadtest/scripts/elastic_sample.py" "$out" "$CONTROL_URL" "$ADMIN_URL" healthcode \
  "$out/stop" 600 &
echo "sampler $!" >>"$out/pids"
log "running $(basename "$scenario") against $PROXY_URL → $out"
set +e
"$BIN_DIR/floodgate-load" --scenario "$scenario" --base-url "$PROXY_URL" --out "$out" \
  --extra-series "$out/scale.jsonl" "${load_args[@]}"
rc=$?
set -e
touch "$out/stop"
python3 "$ROOT/loadtest/scripts/elastic_table.py" "$out" "$PER_REPLICA_RPS" | tee "$out/table.txt" || true
curl -fs --max-time 2 "$ADMIN_URL/metrics" >"$out/metrics.txt" 2>/dev/null || true
echo "report: $out/report.html"
exit $rc
