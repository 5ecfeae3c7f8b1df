#!/usr/bin/env bash
# compare.sh — the same spike profile against no proxy, Floodgate, nginx and HAProxy, in
# one run, each in front of fresh healthcode-app replicas on loopback; prints a
# side-by-side table and writes every report into reports/compare-<timestamp>/<peer>/.
#
#   compare.sh [--scenario FILE] [--peers "none floodgate nginx haproxy"]
#
# Environment: REPLICAS (1: "none" targets one replica, so all peers see the same app
# capacity), APP_WORKERS (8), APP_SERVICE_TIME (10ms), APP_MAX_QUEUE (32) → 800 rps,
# HAPROXY_QUEUE_TIMEOUT (500ms). nginx's limit_req rate defaults to the apps' capacity
# (REPLICAS × APP_WORKERS / APP_SERVICE_TIME).
# nginx and haproxy are installed with apt-get if missing; every process is started and
# stopped by PID. A peer that cannot start is skipped with a message.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario="$ROOT/loadtest/scenarios/spike-compare.yaml"
peers="none floodgate nginx haproxy"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

REPLICAS="${REPLICAS:-1}"
export APP_WORKERS="${APP_WORKERS:-8}" APP_SERVICE_TIME="${APP_SERVICE_TIME:-10ms}" APP_MAX_QUEUE="${APP_MAX_QUEUE:-32}"
svc_ms=$(python3 -c "import sys; s=sys.argv[1]; print(float(s[:-2]) if s.endswith('ms') else float(s[:-1])*1000)" "$APP_SERVICE_TIME")
capacity=$(python3 -c "print(int($REPLICAS * $APP_WORKERS * 1000 / $svc_ms))")
export NGINX_RATE="${NGINX_RATE:-$capacity}" NGINX_BURST="${NGINX_BURST:-$((REPLICAS * APP_WORKERS))}"
export NGINX_MAX_CONN="${NGINX_MAX_CONN:-$((REPLICAS * (APP_WORKERS + APP_MAX_QUEUE)))}"
export HAPROXY_MAXCONN="${HAPROXY_MAXCONN:-$APP_WORKERS}" HAPROXY_QUEUE_TIMEOUT="${HAPROXY_QUEUE_TIMEOUT:-500ms}"

stamp=$(date +%Y%m%d-%H%M%S)
out="$ROOT/reports/compare-$stamp"
mkdir -p "$out"
cp "$scenario" "$out/scenario.yaml"
ensure_loadtest_bins

need_pkg() { # need_pkg BINARY PACKAGE
  command -v "$1" >/dev/null && return 0
  log "installing $2 (apt-get)…"
  (apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; }) || true
  command -v "$1" >/dev/null
}

# start_peer PEER: starts the proxy in front of $APP_ADDRS; sets URL. Returns 1 to skip.
start_peer() {
  local peer="$1"
  case "$peer" in
    none) URL="http://${APP_ADDRS%% *}" ;;
    floodgate)
      ensure_floodgate || { log "skipping Floodgate: it does not build yet"; return 1; }
      export PROXY_PORT ADMIN_PORT; PROXY_PORT=$(free_port); ADMIN_PORT=$(free_port)
      # Burst protection on, like the nginx (limit_req/limit_conn) and HAProxy (maxconn
      # + queue) peers; floodgate-burst.yaml is the same proxy with protection off.
      render "$ROOT/loadtest/peers/floodgate-protected.yaml" "$RUN_DIR/floodgate.yaml"
      start_bg floodgate "$RUN_DIR/floodgate.log" "$BIN_DIR/floodgate" --config "$RUN_DIR/floodgate.yaml"
      URL="http://127.0.0.1:$PROXY_PORT" ;;
    nginx)
      need_pkg nginx nginx || { log "skipping nginx: not installable"; return 1; }
      export PROXY_PORT; PROXY_PORT=$(free_port)
      mkdir -p "$RUN_DIR/nginx-tmp"
      render "$ROOT/loadtest/peers/nginx.conf" "$RUN_DIR/nginx.conf"
      start_bg nginx "$RUN_DIR/nginx.log" nginx -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf"
      URL="http://127.0.0.1:$PROXY_PORT" ;;
    haproxy)
      need_pkg haproxy haproxy || { log "skipping HAProxy: not installable"; return 1; }
      export PROXY_PORT; PROXY_PORT=$(free_port)
      render "$ROOT/loadtest/peers/haproxy.cfg" "$RUN_DIR/haproxy.cfg"
      start_bg haproxy "$RUN_DIR/haproxy.log" haproxy -db -f "$RUN_DIR/haproxy.cfg"
      URL="http://127.0.0.1:$PROXY_PORT" ;;
    *) log "unknown peer $peer"; return 1 ;;
  esac
  # Floodgate: wait on its admin /ready, so no probe request becomes the adaptive
  # admission limit's first latency sample.
  local ready="$URL/healthz"
  [[ $peer == floodgate ]] && ready="http://127.0.0.1:$ADMIN_PORT/ready"
  wait_http "$ready" 20 || { log "$peer did not answer on $URL"; tail -n 20 "$RUN_DIR"/*.log >&2 || true; return 1; }
}

trap 'RUN_DIR="${RUN_DIR:-}"; [[ -n "$RUN_DIR" ]] && stop_all' EXIT
ran=()
for peer in $peers; do
  export RUN_DIR="$out/$peer/run"
  mkdir -p "$RUN_DIR"
  : >"$RUN_DIR/pids"
  log "== $peer =="
  start_apps "$REPLICAS"
  if start_peer "$peer"; then
    "$BIN_DIR/floodgate-load" --scenario "$scenario" --base-url "$URL" --name "spike via $peer" \
      --out "$out/$peer" --quiet || log "$peer: floodgate-load exited $?"
    ran+=("$peer")
  fi
  stop_all
done

python3 - "$out" "${ran[@]}" <<'PY' | tee "$out/compare.txt"
import json, sys, os
out, peers = sys.argv[1], sys.argv[2:]
def f(v, unit=""):
    return "-" if v is None else (f"{v:.1f}{unit}")
rows = []
for p in peers:
    path = os.path.join(out, p, "report.json")
    if not os.path.exists(path):
        continue
    s = json.load(open(path))["summary"]
    rows.append((p, f(s["goodput_rps"]), str(s["goodput_peak_rps"]), f(s["latency_ms"]["admitted"]["p50"], "ms"),
                 f(s["latency_ms"]["admitted"]["p99"], "ms"), f(s["latency_ms"]["rejected"]["p99"], "ms"),
                 str(s["rejected"]), str(s["failed"]), str(s["unanswered"])))
head = ("peer", "goodput/s", "peak/s", "adm p50", "adm p99", "rej p99", "rejected", "failed", "unanswered")
w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
for r in [head] + rows:
    print("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
PY
{
  echo "<!DOCTYPE html><html><head><meta charset=utf-8><title>compare $stamp</title></head><body><h1>Spike comparison $stamp</h1><pre>"
  cat "$out/compare.txt"
  echo "</pre><ul>"
  for p in "${ran[@]}"; do echo "<li><a href=\"$p/report.html\">$p</a></li>"; done
  echo "</ul></body></html>"
} >"$out/index.html"
echo "reports: $out/index.html"
