#!/usr/bin/env bash
# Throughput and latency of Floodgate against a direct connection and nginx, in one run.
#
#   bash bench/proxy-compare.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
#
# Starts, on loopback only: a fast upstream (nginx, 1 worker, `return 200`) and, in
# front of it, three pairs of proxies, each with 2 workers and a keep-alive upstream pool:
#   floodgate-logged, nginx-logged - the defaults pair: Floodgate as shipped (the pair
#                                below plus its JSON access log, here to a file); nginx
#                                with the same header work and a buffered JSON access log
#                                of the same fields (`buffer=64k flush=1s`);
#   floodgate, nginx           - what Floodgate does to every request by default: keep
#                                `Host`; add `x-forwarded-for/-proto/-host`; keep or
#                                generate `x-request-id` and return it (nginx configured
#                                to do the same); Floodgate's admission control (on by
#                                default) too;
#   floodgate-bare, nginx-bare - none of that work (Floodgate's listener
#                                `headers: {forwarded: false, request_id: false}` and
#                                `admission: {enabled: false}`, nginx's defaults).
# Then, for each path (and direct to the upstream), runs wrk saturating (-c CONNECTIONS)
# for requests/s, ROUNDS times in turn (direct, floodgate, nginx, ..., direct, ...) so
# that a slow spell of a shared machine hits all alike, and reports each path's median
# and, for each pair, the median of the per-round ratios (a round's paths run back to
# back, so their ratio is steadier than a ratio of medians); then once lightly loaded
# (-c 4) for the median latency. Prints a table with the ratios, records Floodgate's idle
# RSS with configs/gateway.yaml, and writes everything to reports/bench-<time>/.
# Every load run is bounded by DURATION_SECONDS and every process is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${3:-3}
OUT="$ROOT/reports/bench-$(date +%Y%m%d-%H%M%S)"
RUN="$OUT/run"
mkdir -p "$RUN"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
need_wrk_nginx
${CARGO:-cargo} build --release -q -p floodgate
FLOODGATE="$ROOT/target/release/floodgate"

UP=$(free_port); NG=$(free_port); NB=$(free_port); FG=$(free_port); FGA=$(free_port)
FB=$(free_port); FBA=$(free_port); NL=$(free_port); FL=$(free_port); FLA=$(free_port)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

nginx_conf upstream 1 "server { listen 127.0.0.1:$UP; location / { return 200 'ok\n'; } }"
nginx_conf proxy 2 "upstream app { server 127.0.0.1:$UP; keepalive 128; }
  $NGINX_REQUEST_ID
  server { listen 127.0.0.1:$NG; location / {
$NGINX_HEADER_WORK } }"
nginx_conf proxy-logged 2 "upstream app { server 127.0.0.1:$UP; keepalive 128; }
  $NGINX_REQUEST_ID
  $NGINX_JSON_LOG
  server { listen 127.0.0.1:$NL; access_log $RUN/nginx-access.log json buffer=64k flush=1s; location / {
$NGINX_HEADER_WORK } }"
nginx_conf proxy-bare 2 "upstream app { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$NB; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
floodgate_conf() { # $1 name, $2 port, $3 admin port, $4 extra listener lines, $5 extra cluster lines, $6 access log
  cat > "$RUN/$1.yaml" <<YAML
admin: { listen: 127.0.0.1:$3 }
server: { access_log: ${6:-false} }
listeners:
  - name: public
    listen: 127.0.0.1:$2
$4
    routes:
      - name: all
        cluster: app
clusters:
  - name: app
    endpoints: ["127.0.0.1:$UP"]
${5:-}
YAML
}
floodgate_conf floodgate-logged "$FL" "$FLA" "" "" "{ path: $RUN/floodgate-access.log }"
floodgate_conf floodgate "$FG" "$FGA" ""
floodgate_conf floodgate-bare "$FB" "$FBA" "    headers: { forwarded: false, request_id: false }" \
  "    admission: { enabled: false }"

nginx -c "$RUN/upstream.conf" & PIDS+=($!)
nginx -c "$RUN/proxy.conf" & PIDS+=($!)
nginx -c "$RUN/proxy-bare.conf" & PIDS+=($!)
nginx -c "$RUN/proxy-logged.conf" & PIDS+=($!)
"$FLOODGATE" --config "$RUN/floodgate-logged.yaml" --workers 2 > "$RUN/floodgate-logged.log" 2>&1 & PIDS+=($!)
"$FLOODGATE" --config "$RUN/floodgate.yaml" --workers 2 > "$RUN/floodgate.log" 2>&1 & PIDS+=($!)
"$FLOODGATE" --config "$RUN/floodgate-bare.yaml" --workers 2 > "$RUN/floodgate-bare.log" 2>&1 & PIDS+=($!)

wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 not answering" >&2; exit 1; }
wait_up "$UP"; wait_up "$NG"; wait_up "$NB"; wait_up "$FG"; wait_up "$FB"; wait_up "$NL"; wait_up "$FL"
# The first pair answers with the request id it forwarded; the bare pair adds none.
for port in "$FG" "$NG" "$FL" "$NL"; do
  curl -fsi "http://127.0.0.1:$port/" | grep -qi '^x-request-id: ' || { echo "no x-request-id from :$port" >&2; exit 1; }
done
for port in "$FB" "$NB"; do
  if curl -fsi "http://127.0.0.1:$port/" | grep -qi '^x-request-id: '; then echo "x-request-id from bare :$port" >&2; exit 1; fi
done

# wrk prints "Requests/sec: N" and, with --latency, "50%  1.23ms".
rps() { wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
p50_ms() {
  wrk -t1 -c4 -d"${DURATION}s" --latency "http://127.0.0.1:$1/" | awk '$1=="50%" {
    v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v }'
}

TARGETS="direct:$UP floodgate-logged:$FL nginx-logged:$NL floodgate:$FG nginx:$NG floodgate-bare:$FB nginx-bare:$NB"
declare -A R P ALL
for target in $TARGETS; do
  wrk -t1 -c8 -d2s "http://127.0.0.1:${target#*:}/" >/dev/null   # warm pools
done
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    name=${target%%:*}
    ALL[$name]="${ALL[$name]:-} $(rps "${target#*:}")"
  done
done
for target in $TARGETS; do
  name=${target%%:*}
  # shellcheck disable=SC2086
  R[$name]=$(median ${ALL[$name]})
  P[$name]=$(p50_ms "${target#*:}")
done

# Idle RSS with the gateway config (its listeners must be free; skipped otherwise).
RSS="n/a"
if "$FLOODGATE" --config configs/gateway.yaml --check >/dev/null 2>&1; then
  "$FLOODGATE" --config configs/gateway.yaml > "$RUN/gateway.log" 2>&1 & GW=$!; PIDS+=($GW)
  sleep 2
  if kill -0 "$GW" 2>/dev/null; then RSS=$(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$GW/status"); fi
  kill "$GW" 2>/dev/null || true
fi

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
diff_ms() { python3 -c "import sys; print(f'{float(sys.argv[1])-float(sys.argv[2]):.3f}')" "$1" "$2"; }
{
  echo "# Floodgate vs direct vs nginx ($(nproc) cores, wrk -t2 -c$CONNS -d${DURATION}s, median of $ROUNDS rounds; latency at wrk -c4)"
  echo
  echo "| path | requests/s (median) | each round | p50 latency (ms) at -c4 |"
  echo "|---|---:|---|---:|"
  for n in direct floodgate-logged nginx-logged floodgate nginx floodgate-bare nginx-bare; do echo "| $n | ${R[$n]} |${ALL[$n]} | ${P[$n]} |"; done
  echo
  echo "- Floodgate / nginx requests/s, the defaults pair (headers, request id, JSON access log): medians $(ratio "${R[floodgate-logged]}" "${R[nginx-logged]}"), per round $(paired "${ALL[floodgate-logged]}" "${ALL[nginx-logged]}")"
  echo "- Floodgate / nginx requests/s, forwarding headers and request id: medians $(ratio "${R[floodgate]}" "${R[nginx]}"), per round $(paired "${ALL[floodgate]}" "${ALL[nginx]}")"
  echo "- Floodgate / nginx requests/s, no added headers (bare): medians $(ratio "${R[floodgate-bare]}" "${R[nginx-bare]}"), per round $(paired "${ALL[floodgate-bare]}" "${ALL[nginx-bare]}")"
  echo "- Floodgate / direct requests/s: $(ratio "${R[floodgate]}" "${R[direct]}")"
  echo "- added median latency: Floodgate $(diff_ms "${P[floodgate]}" "${P[direct]}") ms, nginx $(diff_ms "${P[nginx]}" "${P[direct]}") ms; bare: Floodgate $(diff_ms "${P[floodgate-bare]}" "${P[direct]}") ms, nginx $(diff_ms "${P[nginx-bare]}" "${P[direct]}") ms"
  echo "- Floodgate idle RSS with configs/gateway.yaml: $RSS"
} | tee "$OUT/results.md"
