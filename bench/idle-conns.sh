#!/usr/bin/env bash
# Resident memory per idle keep-alive connection: Floodgate against nginx, in one run.
#
#   bash bench/idle-conns.sh [CONNECTIONS] [SETTLE_SECONDS]
#
# Starts, on loopback only, an upstream (nginx, 1 worker, `return 200`) and, one at a
# time, each with 2 workers, bare configs (no access log, no added headers, Floodgate's
# admission off): nginx, Floodgate over HTTP/1.1, Floodgate over TLS (HTTP/1.1, a
# self-signed certificate made here with openssl) and Floodgate over HTTP/2 (h2c prior
# knowledge). For each, a fresh process: one warm-up request, its RSS, then
# CONNECTIONS (default 10000) keep-alive connections from bench/idle_client.py, each
# sending one GET and reading the response, then idle; after SETTLE_SECONDS (default
# 15: Floodgate parks an idle HTTP/1 connection 0.5-1 s after its last answer, see
# listener/deadline.rs) the RSS again.
# Prints (RSS with connections - RSS before) / CONNECTIONS per server (nginx: the sum
# of its worker processes) and writes it to reports/idle-conns-<time>/. Each client
# holds its connections at most 300 s; every process is stopped by the PID started here.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-10000}
SETTLE=${2:-15}
OUT="$ROOT/reports/idle-conns-$(date +%Y%m%d-%H%M%S)"
RUN="$OUT/run"
mkdir -p "$RUN"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
need_wrk_nginx
need openssl || { echo "openssl is needed for the TLS case" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((N + 1000)) ]; then
  echo "ulimit -n is $(ulimit -n): too few descriptors for $N connections" >&2; exit 1
fi
${CARGO:-cargo} build --release -q -p floodgate
FLOODGATE=${FLOODGATE:-$ROOT/target/release/floodgate}

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_up() { for _ in $(seq 100); do curl -fsk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 not answering" >&2; exit 1; }
rss_kb() { awk '/^VmRSS/ {s += $2} END {print s + 0}' "$@"; }
# RSS of a server: Floodgate's process, or the sum of nginx's workers (children of its master).
server_rss() {
  if [ "$1" = nginx ]; then
    local files=()
    for w in $(cat "/proc/$2/task/$2/children"); do files+=("/proc/$w/status"); done
    rss_kb "${files[@]}"
  else
    rss_kb "/proc/$2/status"
  fi
}

UP=$(free_port)
nginx_conf upstream 1 "server { listen 127.0.0.1:$UP; location / { return 200 'ok\n'; } }"
nginx -c "$RUN/upstream.conf" & PIDS+=($!)
wait_up "http://127.0.0.1:$UP/"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=idle.test" -addext "subjectAltName=DNS:idle.test" \
  -keyout "$RUN/idle.key" -out "$RUN/idle.crt" 2>/dev/null

floodgate_conf() { # $1 name, $2 port, $3 admin port, $4 extra listener lines
  cat > "$RUN/$1.yaml" <<YAML
admin: { listen: 127.0.0.1:$3 }
server: { access_log: false }
listeners:
  - name: public
    listen: 127.0.0.1:$2
    headers: { forwarded: false, request_id: false }
    limits: { max_connections: $((N + 1000)), idle_timeout: 600s }
$4
    routes:
      - name: all
        cluster: app
clusters:
  - name: app
    endpoints: ["127.0.0.1:$UP"]
    admission: { enabled: false }
YAML
}

declare -A PER RSS0 RSS1 OK
# measure NAME KIND(nginx|floodgate) PORT MODE URL CMD...: one fresh server, N idle connections.
measure() {
  local name=$1 kind=$2 port=$3 mode=$4 url=$5; shift 5
  "$@" > "$RUN/$name.log" 2>&1 & local pid=$!; PIDS+=($pid)
  wait_up "$url"
  sleep 1
  RSS0[$name]=$(server_rss "$kind" "$pid")
  python3 "$ROOT/bench/idle_client.py" "$port" "$N" "$mode" 300 > "$RUN/$name.client" 2> "$RUN/$name.client.err" &
  local client=$!; PIDS+=($client)
  for _ in $(seq 1200); do grep -q '^ready' "$RUN/$name.client" && break; sleep 0.1; done
  grep -q '^ready' "$RUN/$name.client" || { echo "$name: the client did not get ready in 120 s" >&2; cat "$RUN/$name.client.err" >&2; exit 1; }
  sleep "$SETTLE"
  RSS1[$name]=$(server_rss "$kind" "$pid")
  OK[$name]=$(awk '/^ready/ {print $2 " of '"$N"' (" $3 " failed)"}' "$RUN/$name.client")
  local held; held=$(awk '/^ready/ {print $2}' "$RUN/$name.client")
  PER[$name]=$(python3 -c "import sys; a,b,n=map(int,sys.argv[1:]); print(f'{(b-a)*1024/n/1024:.2f}' if n else 'n/a')" "${RSS0[$name]}" "${RSS1[$name]}" "$held")
  kill "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

NG=$(free_port)
nginx_conf proxy 2 "upstream app { server 127.0.0.1:$UP; keepalive 128; }
  keepalive_timeout 600s;
  server { listen 127.0.0.1:$NG; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
# More descriptors and connections per worker than lib.sh's defaults.
sed -i "s/worker_connections 4096;/worker_connections $((N + 1000));/; s/^daemon off;/daemon off;\nworker_rlimit_nofile $((N + 2000));/" "$RUN/proxy.conf"
measure nginx nginx "$NG" http1 "http://127.0.0.1:$NG/" nginx -c "$RUN/proxy.conf"

FG=$(free_port); FGA=$(free_port)
floodgate_conf floodgate "$FG" "$FGA" ""
measure floodgate floodgate "$FG" http1 "http://127.0.0.1:$FG/" "$FLOODGATE" --config "$RUN/floodgate.yaml" --workers 2

FT=$(free_port); FTA=$(free_port)
floodgate_conf floodgate-tls "$FT" "$FTA" "    tls: { certs: [ { cert: $RUN/idle.crt, key: $RUN/idle.key } ] }"
measure floodgate-tls floodgate "$FT" tls "https://127.0.0.1:$FT/" "$FLOODGATE" --config "$RUN/floodgate-tls.yaml" --workers 2

FH=$(free_port); FHA=$(free_port)
floodgate_conf floodgate-h2c "$FH" "$FHA" ""
measure floodgate-h2c floodgate "$FH" h2c "http://127.0.0.1:$FH/" "$FLOODGATE" --config "$RUN/floodgate-h2c.yaml" --workers 2

{
  echo "# RSS per idle keep-alive connection ($N connections, each one request then idle; RSS ${SETTLE}s after the last opened; 2 workers each; $(nproc) cores)"
  echo
  echo "| server | connections held | RSS before (KB) | RSS with them (KB) | KB per connection |"
  echo "|---|---|---:|---:|---:|"
  for n in nginx floodgate floodgate-tls floodgate-h2c; do
    echo "| $n | ${OK[$n]} | ${RSS0[$n]} | ${RSS1[$n]} | ${PER[$n]} |"
  done
  echo
  echo "- nginx: HTTP/1.1, sum of its 2 worker processes; floodgate: HTTP/1.1; floodgate-tls: TLS 1.3, HTTP/1.1 by ALPN; floodgate-h2c: HTTP/2 prior knowledge"
  echo "- Floodgate HTTP/1.1 / nginx: $(python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b else 'n/a')" "${PER[floodgate]}" "${PER[nginx]}")"
} | tee "$OUT/results.md"
