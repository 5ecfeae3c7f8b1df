#!/usr/bin/env bash
# stack.sh — the local demo stack: N healthcode-app replicas + Floodgate in front.
#
#   stack.sh up [--config FILE] [--replicas N] [--foreground] [--no-proxy]
#   stack.sh down
#   stack.sh status
#
# `up` starts N replicas (default 2) on free loopback ports, renders the Floodgate config
# template with those ports, starts `floodgate --config RENDERED`, waits until the proxy
# answers, and prints the URLs. State lives in .floodgate-run/ at the repo root:
#   pids        one "NAME PID" line per process (stopped newest first by `down`)
#   env         shell-sourceable addresses: PROXY_URL, ADMIN_URL, APP_ADDRS, CONFIG
#   *.log       each process's output; floodgate.yaml: the rendered config
# `--foreground` stays attached and stops everything on Ctrl-C / SIGTERM.
# `--no-proxy` starts only the replicas (PROXY_URL then points at the first one).
#
# With no --config, the README's quick start: configs/demo.yaml as written (proxy on
# 127.0.0.1:8080, admin on 127.0.0.1:9901) in front of two replicas on the fixed ports
# 9001 and 9002 that it names. With --config, a template whose ports are picked free.
# Placeholders, written ${NAME}:
#   ${PROXY_PORT}     public listener port      ${ADMIN_PORT}  admin listener port
#   ${APP_ENDPOINTS}  replicas as YAML list items: "127.0.0.1:P1", "127.0.0.1:P2"
#   ${RUN_DIR}        the run folder (.floodgate-run)
# Replica settings (environment): APP_WORKERS (16), APP_SERVICE_TIME (5ms),
# APP_MAX_QUEUE (64), APP_EXTRA_ARGS (e.g. "--fail-rate 0.01").
#
# To add a process (e.g. the control plane): render its config the same way, start it
# with start_bg NAME LOG CMD… (see lib.sh) so `down` stops it, and add its URL to `env`.
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

cmd_up() {
  local config="" replicas=2 foreground=0 proxy=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --config) config="$2"; shift 2 ;;
      --replicas) replicas="$2"; shift 2 ;;
      --foreground) foreground=1; shift ;;
      --no-proxy) proxy=0; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  local fixed=0
  if [[ -z "$config" ]]; then
    config="$ROOT/configs/demo.yaml"
    fixed=1
    replicas=2
    export APP_PORTS="${APP_PORTS:-9001 9002}"
  fi
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
  start_apps "$replicas"
  log "replicas: $APP_ADDRS"
  local proxy_url admin_url=""
  if [[ $proxy == 1 ]]; then
    export PROXY_PORT ADMIN_PORT
    if [[ $fixed == 1 ]]; then
      PROXY_PORT=8080
      ADMIN_PORT=9901
    else
      PROXY_PORT=$(free_port)
      ADMIN_PORT=$(free_port)
      grep -q '\${' "$config" || log "warning: $config has no \${…} placeholders; ports are not substituted"
    fi
    render "$config" "$RUN_DIR/floodgate.yaml"
    start_bg floodgate "$RUN_DIR/floodgate.log" "$BIN_DIR/floodgate" --config "$RUN_DIR/floodgate.yaml"
    proxy_url="http://127.0.0.1:$PROXY_PORT"
    admin_url="http://127.0.0.1:$ADMIN_PORT"
    # Wait on the admin /ready, not a request through the proxy: a probe through the
    # route would be the first latency sample the adaptive admission limit sees.
    if ! wait_http "$admin_url/ready" 30; then
      tail -n 20 "$RUN_DIR/floodgate.log" >&2 || true
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
CONFIG=$RUN_DIR/floodgate.yaml
ENV
  echo "proxy:    $proxy_url   (try: curl $proxy_url/api/v1/codes/42)"
  [[ -n "$admin_url" ]] && echo "admin:    $admin_url"
  echo "replicas: $APP_ADDRS"
  echo "state:    $RUN_DIR"
  if [[ $foreground == 1 ]]; then
    trap 'cmd_down; exit 0' INT TERM
    log "running in the foreground; Ctrl-C stops everything"
    # Wake up every second; leave when any process of the stack dies.
    while true; do
      local name pid
      while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || { log "$name exited"; cmd_down; exit 1; }
      done <"$RUN_DIR/pids"
      sleep 1
    done
  fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up [--config FILE] [--replicas N] [--foreground] [--no-proxy] | down | status" >&2; exit 2 ;;
esac
