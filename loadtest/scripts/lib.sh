# Shared helpers for the load-test scripts (sourced, not run).
#
# Every wait here is bounded; every process is started in the background with its PID
# recorded, and stopped by that PID only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$TARGET_DIR/release"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# free_port: prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# render TEMPLATE OUT: replaces ${NAME} placeholders with exported environment variables,
# except on comment lines (starting with #), so templates can document their placeholders;
# fails if a ${UPPER_CASE} placeholder has no value (nginx's own $vars are left alone).
render() {
  python3 - "$1" "$2" <<'PY'
import os, re, sys
src, dst = sys.argv[1], sys.argv[2]
text = open(src).read()
missing = set()
def sub(m):
    name = m.group(1)
    if name in os.environ:
        return os.environ[name]
    missing.add(name)
    return m.group(0)
out = "".join(
    line if line.lstrip().startswith("#") else re.sub(r"\$\{([A-Z][A-Z0-9_]*)\}", sub, line)
    for line in text.splitlines(keepends=True)
)
if missing:
    sys.exit(f"render {src}: no value for {', '.join(sorted(missing))}")
open(dst, "w").write(out)
PY
}

# ensure_loadtest_bins: builds floodgate-load and healthcode-app (release) if missing.
ensure_loadtest_bins() {
  if [[ ! -x "$BIN_DIR/floodgate-load" || ! -x "$BIN_DIR/healthcode-app" ]]; then
    log "building floodgate-load and healthcode-app (release)…"
    (cd "$ROOT" && cargo build --release -p floodgate-loadtest) >&2 || die "cargo build -p floodgate-loadtest failed"
  fi
}

# ensure_floodgate: builds the proxy if missing; returns 1 (with a message) if it cannot.
ensure_floodgate() {
  if [[ -x "$BIN_DIR/floodgate" ]]; then return 0; fi
  log "building floodgate (release)…"
  if (cd "$ROOT" && cargo build --release -p floodgate) >&2 && [[ -x "$BIN_DIR/floodgate" ]]; then
    return 0
  fi
  log "floodgate does not build yet (cargo build --release -p floodgate failed)"
  return 1
}

# ensure_control: builds floodgate-control (release) if missing.
ensure_control() {
  if [[ -x "$BIN_DIR/floodgate-control" ]]; then return 0; fi
  log "building floodgate-control (release)…"
  (cd "$ROOT" && cargo build --release -p floodgate-control) >&2 && [[ -x "$BIN_DIR/floodgate-control" ]] \
    || die "cargo build --release -p floodgate-control failed"
}

# wait_ok URL SECONDS [CURL_ARGS…]: waits until URL answers 2xx (bounded).
wait_ok() {
  local url="$1" secs="$2" i; shift 2
  for i in $(seq 1 $((secs * 10))); do
    if curl -fs -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# demo_tokens: exports the demo tokens for the FLOODGATE_*_TOKEN variables that are unset.
demo_tokens() {
  local role var defaulted=""
  for role in proxy app operator; do
    var="FLOODGATE_${role^^}_TOKEN"
    if [[ -z "${!var:-}" ]]; then
      export "$var=demo-$role-token-change-me"
      defaulted="$defaulted $var"
    fi
  done
  [[ -z "$defaulted" ]] || log "using the demo tokens (demo-*-token-change-me) for unset:$defaulted"
}

# start_bg NAME LOGFILE CMD…: starts CMD in the background, records "NAME PID" in
# $RUN_DIR/pids and sets LAST_PID. A floodgate-control starts in a session of its own
# (setsid: its process group id is its PID), so the replicas its process scaler starts
# share that group and stop_all can still reach them by the PID it started if the
# control plane was killed with SIGKILL (which leaves its children running).
start_bg() {
  local name="$1" logf="$2"; shift 2
  if [[ $name == floodgate-control ]]; then
    setsid "$@" >"$logf" 2>&1 &
  else
    "$@" >"$logf" 2>&1 &
  fi
  LAST_PID=$!
  echo "$name $LAST_PID" >>"$RUN_DIR/pids"
}

# stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (default 5), then SIGKILL.
stop_pid() {
  local pid="$1" secs="${2:-5}" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# stop_group PGID: SIGTERM to what is left of a process group, then SIGKILL after 5 s.
stop_group() {
  local pgid="$1" i
  kill -0 -- "-$pgid" 2>/dev/null || return 0
  log "stopping what is left of process group $pgid (replicas of a killed control plane)"
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 -- "-$pgid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

# stop_all: stops every process in $RUN_DIR/pids, newest first, and empties the list.
# A floodgate-control gets 20 s (it drains and stops the replicas its process scaler
# started); whatever is left of its process group is stopped after it.
stop_all() {
  [[ -f "$RUN_DIR/pids" ]] || return 0
  local name pid
  while read -r name pid; do
    [[ -n "$pid" ]] || continue
    if [[ $name == floodgate-control ]]; then
      kill -0 "$pid" 2>/dev/null && log "stopping $name (pid $pid)"
      stop_pid "$pid" 20
      stop_group "$pid"
    else
      kill -0 "$pid" 2>/dev/null && log "stopping $name (pid $pid)"
      stop_pid "$pid"
    fi
  done < <(tac "$RUN_DIR/pids")
  : >"$RUN_DIR/pids"
}

# wait_listening LOGFILE PID: waits (≤ 10 s) for "listening on ADDR" and prints ADDR.
wait_listening() {
  local logf="$1" pid="$2" i addr
  for i in $(seq 1 100); do
    addr=$(sed -n 's/^listening on //p' "$logf" 2>/dev/null | head -n1)
    if [[ -n "$addr" ]]; then echo "$addr"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; return 1; }
    sleep 0.1
  done
  return 1
}

# wait_http URL [SECONDS]: waits until URL answers any HTTP status (bounded).
wait_http() {
  local url="$1" secs="${2:-30}" i
  for i in $(seq 1 $((secs * 10))); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# start_apps N OUTVAR_PREFIX: starts N healthcode-app replicas on free loopback ports
# (settings from APP_WORKERS, APP_SERVICE_TIME, APP_MAX_QUEUE, APP_EXTRA_ARGS) and sets
# APP_ADDRS (space separated) and the template values APP_ENDPOINTS, NGINX_UPSTREAMS,
# HAPROXY_SERVERS.
# With APP_PORTS="9001 9002" the first replicas bind those fixed ports instead (the demo
# config); with APP_REGISTER=URL each registers itself with the control plane at URL
# (`--register URL`, token from $FLOODGATE_APP_TOKEN).
start_apps() {
  local n="$1" i addr
  local -a ports=(${APP_PORTS:-})
  APP_ADDRS=""
  for i in $(seq 1 "$n"); do
    local port="${ports[$((i - 1))]:-0}"
    # shellcheck disable=SC2086
    start_bg "app-$i" "$RUN_DIR/app-$i.log" "$BIN_DIR/healthcode-app" --listen "127.0.0.1:$port" \
      --workers "${APP_WORKERS:-16}" --service-time "${APP_SERVICE_TIME:-5ms}" \
      --max-queue "${APP_MAX_QUEUE:-64}" ${APP_REGISTER:+--register "$APP_REGISTER"} ${APP_EXTRA_ARGS:-}
    addr=$(wait_listening "$RUN_DIR/app-$i.log" "$LAST_PID") || die "healthcode-app $i did not start"
    APP_ADDRS="$APP_ADDRS $addr"
  done
  APP_ADDRS="${APP_ADDRS# }"
  local eps="" ups="" srv="" k=0
  for addr in $APP_ADDRS; do
    k=$((k + 1))
    eps="$eps${eps:+, }\"$addr\""
    ups="${ups}server $addr max_conns=${NGINX_UPSTREAM_MAX_CONNS:-0}; "
    srv="${srv}server app$k $addr maxconn ${HAPROXY_MAXCONN:-16} check inter 2s"$'\n    '
  done
  export APP_ENDPOINTS="$eps" NGINX_UPSTREAMS="$ups" HAPROXY_SERVERS="$srv"
}
