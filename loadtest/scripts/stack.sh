#!/usr/bin/env bash
# stack.sh — the local demo stack: N healthcode-app replicas + Floodgate in front, with
# or without the control plane.
#
#   stack.sh up [--foreground]                          the quick start, via floodgate-control
#   stack.sh up --static [--foreground]                 configs/demo.yaml, no control plane
#   stack.sh up --config FILE [--replicas N] [--foreground] [--no-proxy]
#   stack.sh down
#   stack.sh status
#
# With no --config (the README's quick start), the elastic stack through the control plane:
#   1. floodgate-control --config configs/control.yaml (API on 127.0.0.1:7070; group
#      `demo` = configs/control/demo.yaml, whose cluster `healthcode` has no static
#      endpoints: they all come from the registry). The three FLOODGATE_*_TOKEN
#      variables are exported with the demo values `demo-*-token-change-me` when unset.
#   2. Its process scaler starts the replicas: min_replicas (2) on 127.0.0.1:9001 and
#      :9002, up to max_replicas (4, on 9003 and 9004) when the autoscaler asks. Each
#      registers itself, heartbeats, and deregisters when drained; the control plane
#      stops them when it stops. (`--replicas` does not apply: the autoscaler decides.)
#   3. floodgate --config configs/bootstrap-demo.yaml (proxy 127.0.0.1:8080, admin
#      127.0.0.1:9901): it gets its listeners and clusters from the control plane and
#      keeps its last snapshot in .floodgate-run/snapshot-demo.yaml.
#   It waits until the proxy is ready, /v1/nodes shows it ACKed the current version and
#   /v1/endpoints lists every replica the scaler runs.
#   `loadtest/scripts/elastic.sh --stack` then runs the 100x burst against it.
# With --static: configs/demo.yaml as written in front of two replicas on 9001 and 9002,
# no control plane (the stack before issue #13).
# With --config: a template whose ports are picked free, no control plane (burst.sh,
# protection.sh, compare.sh use it through lib.sh). Placeholders, written ${NAME}:
#   ${PROXY_PORT}     public listener port      ${ADMIN_PORT}  admin listener port
#   ${APP_ENDPOINTS}  replicas as YAML list items: "127.0.0.1:P1", "127.0.0.1:P2"
#   ${RUN_DIR}        the run folder (.floodgate-run)
#
# State lives in .floodgate-run/ at the repo root:
#   pids        one "NAME PID" line per process (stopped newest first by `down`)
#   env         shell-sourceable addresses: PROXY_URL, ADMIN_URL, APP_ADDRS, CONFIG,
#               CONTROL_URL (empty without the control plane)
#   *.log       each process's output; floodgate.yaml: the rendered config (--config)
# `--foreground` stays attached and stops everything on Ctrl-C / SIGTERM.
# `--no-proxy` starts only the replicas (PROXY_URL then points at the first one).
# Replica settings for --static and --config (environment): APP_WORKERS (16),
# APP_SERVICE_TIME (5ms), APP_MAX_QUEUE (64), APP_EXTRA_ARGS (e.g. "--fail-rate 0.01").
# Through the control plane, the command in configs/control.yaml sets them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export RUN_DIR="$ROOT/.floodgate-run"

cmd_down() {
  RUN_DIR="$RUN_DIR" stop_all
  rm -f "$RUN_DIR/env"
  log "stack stopped"
}

cmd_status() {
  [[ -f "$RUN_DIR/pids" ]] || { echo "not running"; return 0; }
  local name pid
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then echo "$name $pid running"; else echo "$name $pid gone"; fi
  done <"$RUN_DIR/pids"
  [[ -f "$RUN_DIR/env" ]] && cat "$RUN_DIR/env"
}

CONTROL_ADDR=127.0.0.1:7070
DEMO_GROUP=demo
DEMO_NODE=demo-proxy-1

# op PATH: GET on the control plane's API with the operator token.
op() {
  curl -fs --max-time 2 -H "Authorization: Bearer $FLOODGATE_OPERATOR_TOKEN" "http://$CONTROL_ADDR$1"
}

# scaler_replicas: "N ADDR…" of the healthcode replicas the process scaler runs and that
# registered (phase ready).
scaler_replicas() {
  op /v1/scalers | python3 -c '
import json, sys
s = next(x for x in json.load(sys.stdin)["scalers"] if x["cluster"] == "healthcode")
ready = [r["address"] for r in s["replicas"] if r["phase"] == "ready"]
print(len(ready), s["min_replicas"], *ready)' 2>/dev/null || echo "0 1"
}

# wait_scaler SECONDS: waits until the process scaler runs min_replicas ready replicas;
# sets APP_ADDRS.
wait_scaler() {
  local secs="$1" i n min addrs
  for i in $(seq 1 $((secs * 10))); do
    read -r n min addrs <<<"$(scaler_replicas)"
    if [[ $n -ge $min && $n -ge 1 ]]; then
      APP_ADDRS="$addrs"
      return 0
    fi
    sleep 0.1
  done
  log "process scaler: $n of $min replicas ready"
  return 1
}

# wait_control_state N SECONDS: waits until /v1/endpoints lists N healthcode endpoints
# and /v1/nodes shows the demo proxy running (ACKed) the group's current version.
wait_control_state() {
  local n="$1" secs="$2" i state=""
  for i in $(seq 1 $((secs * 10))); do
    state=$(python3 - "$n" "$DEMO_GROUP" "$DEMO_NODE" \
      "$(op /v1/endpoints || true)" "$(op /v1/nodes || true)" "$(op /v1/groups || true)" <<'PY' || true
import json, sys
n, group, node = int(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    eps = [e for e in json.loads(sys.argv[4])["endpoints"] if e["cluster"] == "healthcode"]
    nodes = json.loads(sys.argv[5])["nodes"]
    version = next(g["version"] for g in json.loads(sys.argv[6])["groups"] if g["group"] == group)
except Exception:
    sys.exit(1)
mine = next((x for x in nodes if x["node"] == node), None)
acked = mine is not None and mine.get("last_ack") == version
print(f"{len(eps)} endpoints, node {'ACKed' if acked else 'not ACKed'} version {version}")
sys.exit(0 if len(eps) >= n and acked else 1)
PY
    ) && { log "control plane: $state"; return 0; }
    sleep 0.1
  done
  log "control plane: ${state:-no answer}"
  return 1
}

cmd_up() {
  local config="" replicas=2 replicas_given=0 foreground=0 proxy=1 mode=control run_config=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --config) config="$2"; mode=template; shift 2 ;;
      --static) mode=static; shift ;;
      --replicas) replicas="$2"; replicas_given=1; shift 2 ;;
      --foreground) foreground=1; shift ;;
      --no-proxy) proxy=0; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  case "$mode" in
    static)
      config="$ROOT/configs/demo.yaml"
      replicas=2
      export APP_PORTS="${APP_PORTS:-9001 9002}" ;;
    control)
      config="$ROOT/configs/bootstrap-demo.yaml"
      [[ $replicas_given == 0 ]] ||
        die "--replicas applies to --static and --config; through the control plane its process scaler runs min_replicas..max_replicas (configs/control.yaml)" ;;
  esac
  mkdir -p "$RUN_DIR"
  if [[ -s "$RUN_DIR/pids" ]]; then
    log "a stack seems to be running; stopping it first"
    stop_all
  fi
  : >"$RUN_DIR/pids"
  ensure_loadtest_bins
  if [[ $proxy == 1 ]] && ! ensure_floodgate; then
    die "floodgate is not available; use --no-proxy to start only the replicas"
  fi
  trap 'log "startup failed; stopping what was started"; stop_all' ERR
  local control_url=""
  if [[ $mode == control ]]; then
    ensure_control
    demo_tokens
    start_bg floodgate-control "$RUN_DIR/control.log" \
      "$BIN_DIR/floodgate-control" --config "$ROOT/configs/control.yaml"
    control_url="http://$CONTROL_ADDR"
    if ! wait_ok "$control_url/ready" 30; then
      tail -n 20 "$RUN_DIR/control.log" >&2 || true
      false
    fi
    log "control plane: $control_url (log: $RUN_DIR/control.log); waiting for its process scaler's replicas"
    if ! wait_scaler 60; then
      tail -n 20 "$RUN_DIR/control.log" >&2 || true
      false
    fi
    replicas=$(wc -w <<<"$APP_ADDRS")
  else
    start_apps "$replicas"
  fi
  log "replicas: $APP_ADDRS"
  local proxy_url admin_url=""
  if [[ $proxy == 1 ]]; then
    export PROXY_PORT ADMIN_PORT
    if [[ $mode != template ]]; then
      PROXY_PORT=8080
      ADMIN_PORT=9901
    else
      PROXY_PORT=$(free_port)
      ADMIN_PORT=$(free_port)
      grep -q '\${' "$config" || log "warning: $config has no \${…} placeholders; ports are not substituted"
    fi
    run_config="$config"
    if [[ $mode != control ]]; then
      run_config="$RUN_DIR/floodgate.yaml"
      render "$config" "$run_config"
    fi
    start_bg floodgate "$RUN_DIR/floodgate.log" "$BIN_DIR/floodgate" --config "$run_config"
    proxy_url="http://127.0.0.1:$PROXY_PORT"
    admin_url="http://127.0.0.1:$ADMIN_PORT"
    # Wait on the admin /ready, not a request through the proxy: a probe through the
    # route would be the first latency sample the adaptive admission limit sees.
    # Through the control plane, /ready is 503 until the first snapshot is applied.
    local ready=wait_http
    [[ $mode == control ]] && ready=wait_ok
    if ! "$ready" "$admin_url/ready" 30; then
      tail -n 20 "$RUN_DIR/floodgate.log" >&2 || true
      false
    fi
    if [[ $mode == control ]] && ! wait_control_state "$replicas" 30; then
      tail -n 20 "$RUN_DIR/control.log" "$RUN_DIR/floodgate.log" >&2 || true
      false
    fi
  else
    proxy_url="http://${APP_ADDRS%% *}"
  fi
  trap - ERR
  cat >"$RUN_DIR/env" <<ENV
PROXY_URL=$proxy_url
ADMIN_URL=$admin_url
APP_ADDRS="$APP_ADDRS"
CONFIG=$run_config
CONTROL_URL=$control_url
ENV
  echo "proxy:    $proxy_url   (try: curl $proxy_url/api/v1/codes/42)"
  if [[ -n "$admin_url" ]]; then
    echo "admin:    $admin_url   (curl $admin_url/clusters${control_url:+, $admin_url/control})"
  fi
  if [[ -n "$control_url" ]]; then
    echo "control:  $control_url   (operator token: \$FLOODGATE_OPERATOR_TOKEN, demo value demo-operator-token-change-me)"
    echo "          curl -H \"Authorization: Bearer \$FLOODGATE_OPERATOR_TOKEN\" $control_url/v1/nodes"
  fi
  echo "replicas: $APP_ADDRS"
  echo "state:    $RUN_DIR"
  if [[ $foreground == 1 ]]; then
    trap 'cmd_down; exit 0' INT TERM
    log "running in the foreground; Ctrl-C stops everything"
    # Wake up every second; leave when the proxy dies. A replica or the control plane
    # that exits (the README kills them to show traffic moving and the proxy serving
    # without its control plane) is only reported.
    local -A gone=()
    while true; do
      local name pid
      while read -r name pid; do
        kill -0 "$pid" 2>/dev/null && continue
        case "$name" in
          app-* | floodgate-control)
            [[ -n "${gone[$name]:-}" ]] || { log "$name exited; the proxy keeps serving"; gone[$name]=1; } ;;
          *) log "$name exited"; cmd_down; exit 1 ;;
        esac
      done <"$RUN_DIR/pids"
      sleep 1
    done
  fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up [--static | --config FILE] [--replicas N] [--foreground] [--no-proxy] | down | status" >&2; exit 2 ;;
esac
