#!/usr/bin/env bash
# Routing at scale (#18): requests/s with 1 route vs 10,000, Floodgate against nginx,
# in one run; then apply time and resident memory per route.
#
#   bash bench/routes.sh [DURATION_SECONDS] [ROUNDS] [CONNECTIONS]
#
# Starts, on loopback only: a fast upstream (nginx, 1 worker, `return 200`) and, in front
# of it, each with 2 workers and a keep-alive upstream pool, bare (no added headers, no
# access log, Floodgate's admission off):
#   fg-1      Floodgate, 1 route (host svc0.city.gov, prefix /api/)
#   fg-hosts  Floodgate, 10,000 routes, route i: host svc{i}.city.gov, prefix /api/
#   fg-paths  Floodgate, 10,000 routes under host city.gov, route i: prefix /svc{i}/
#   ng-1      nginx, 1 `server` block
#   ng-hosts  nginx, 10,000 `server` blocks (server_name svc{i}.city.gov, location /api/)
#   ng-paths  nginx, one server with 10,000 `location /svc{i}/` blocks
# Every request matches the LAST route (svc9999). wrk -t2 -cCONNECTIONS for
# DURATION_SECONDS per path, ROUNDS rounds in turn (fg-1, fg-hosts, ..., fg-1, ...) so
# that a slow spell of a shared machine hits all alike; prints medians and the median
# of the per-round ratios. Then: Floodgate's VmRSS (idle, after the load) with 1 and with
# 10,000 routes, KB per route; its "config applied" times at start and for a file change
# of one route ("reloading config" → "config applied": read, parse, validate, build,
# swap). Writes everything to reports/routes-<time>/. Every process is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${3:-64}
N=10000
LAST=$((N - 1))
OUT="$ROOT/reports/routes-$(date +%Y%m%d-%H%M%S)"
RUN="$OUT/run"
mkdir -p "$RUN"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
need_wrk_nginx
${CARGO:-cargo} build --release -q -p floodgate
FLOODGATE="$ROOT/target/release/floodgate"

UP=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT


# Generates the Floodgate and nginx configs: gen KIND ROUTES PORT [ADMIN_PORT] [CHANGED].
gen() {
  python3 - "$@" "$UP" <<'PY'
import sys
kind, n, port, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
up = extra[-1]
pass_ = "proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";"
if kind.startswith("ng"):
    out = [f"upstream app {{ server 127.0.0.1:{up}; keepalive 128; }}"]
    if kind == "ng-paths":
        locs = "".join(f" location /svc{i}/ {{ {pass_} }}\n" for i in range(n))
        out.append(f"server {{ listen 127.0.0.1:{port}; server_name city.gov;\n{locs}}}")
    else:
        for i in range(n):
            out.append(f"server {{ listen 127.0.0.1:{port}; server_name svc{i}.city.gov; location /api/ {{ {pass_} }} }}")
    print("\n".join(out))
else:
    admin, changed = extra[0], (int(extra[1]) if len(extra) > 2 else -1)
    out = [f"admin: {{ listen: 127.0.0.1:{admin} }}", "server: { access_log: false }",
           "listeners:", "  - name: public", f"    listen: 127.0.0.1:{port}",
           "    headers: { forwarded: false, request_id: false }", "    routes:"]
    for i in range(n):
        v2 = "v2/" if i == changed else ""
        host, prefix = (("city.gov", f"/svc{i}/{v2}") if kind == "fg-paths"
                        else (f"svc{i}.city.gov", f"/api/{v2}"))
        out.append(f"      - {{ name: r{i}, match: {{ host: \"{host}\", path_prefix: \"{prefix}\" }}, cluster: app }}")
    out += ["clusters:", "  - name: app", f"    endpoints: [\"127.0.0.1:{up}\"]",
            "    admission: { enabled: false }"]
    print("\n".join(out))
PY
}

echo "server { listen 127.0.0.1:$UP; location / { return 200 'ok\n'; } }" > "$RUN/upstream.http"
nginx_conf upstream 1 "include $RUN/upstream.http;"
nginx -c "$RUN/upstream.conf" & PIDS+=($!)

# name:routes:host:path for each path under test.
TARGETS="fg-1:1:svc0.city.gov:/api/x fg-hosts:$N:svc$LAST.city.gov:/api/x fg-paths:$N:city.gov:/svc$LAST/x"
TARGETS="$TARGETS ng-1:1:svc0.city.gov:/api/x ng-hosts:$N:svc$LAST.city.gov:/api/x ng-paths:$N:city.gov:/svc$LAST/x"
declare -A PORT HOST URLPATH FGPID
for t in $TARGETS; do
  IFS=: read -r name routes host path <<<"$t"
  PORT[$name]=$(free_port); HOST[$name]=$host; URLPATH[$name]=$path
  if [[ $name == fg-* ]]; then
    gen "$name" "$routes" "${PORT[$name]}" "$(free_port)" > "$RUN/$name.yaml"
    NO_COLOR=1 "$FLOODGATE" --config "$RUN/$name.yaml" --workers 2 --log-format json > "$RUN/$name.log" 2>&1 &
    PIDS+=($!); FGPID[$name]=$!
  else
    gen "$name" "$routes" "${PORT[$name]}" > "$RUN/$name.http"
    nginx_conf "$name" 2 "server_names_hash_max_size 65536; server_names_hash_bucket_size 128; include $RUN/$name.http;"
    nginx -c "$RUN/$name.conf" & PIDS+=($!)
  fi
done

url() { echo "http://127.0.0.1:${PORT[$1]}${URLPATH[$1]}"; }
wait_up() { for _ in $(seq 300); do curl -fs -o /dev/null -H "Host: ${HOST[$1]}" "$(url "$1")" && return 0; sleep 0.1; done; echo "$1 not answering" >&2; exit 1; }
wait_up_port() { for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; exit 1; }
wait_up_port "$UP"
NAMES=""
for t in $TARGETS; do NAMES="$NAMES ${t%%:*}"; done
for name in $NAMES; do wait_up "$name"; done
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A IDLE
for name in fg-1 fg-hosts fg-paths; do IDLE[$name]=$(rss_kb "${FGPID[$name]}"); done

rps() { wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Host: ${HOST[$1]}" "$(url "$1")" | awk '/Requests\/sec/ {print $2}'; }
for name in $NAMES; do wrk -t1 -c8 -d1s -H "Host: ${HOST[$name]}" "$(url "$name")" >/dev/null; done # warm pools
declare -A ALL R
for round in $(seq "$ROUNDS"); do
  for name in $NAMES; do ALL[$name]="${ALL[$name]:-} $(rps "$name")"; done
done
# shellcheck disable=SC2086
for name in $NAMES; do R[$name]=$(median ${ALL[$name]}); done
declare -A LOADED
for name in fg-1 fg-hosts fg-paths; do LOADED[$name]=$(rss_kb "${FGPID[$name]}"); done

# A one-route change of the 10,000-host-route config through the file watcher (SIGHUP
# if the watcher has not picked it up within 5 s).
applied() { grep -c '"config applied"' "$RUN/$1.log" || true; }
gen fg-hosts "$N" "${PORT[fg-hosts]}" "$(python3 -c "import re,sys; print(re.search(r'127.0.0.1:(\d+)', open(sys.argv[1]).readline()).group(1))" "$RUN/fg-hosts.yaml")" 5000 > "$RUN/fg-hosts.yaml.new"
mv "$RUN/fg-hosts.yaml.new" "$RUN/fg-hosts.yaml"
for i in $(seq 100); do [[ $(applied fg-hosts) -ge 2 ]] && break; [[ $i == 50 ]] && kill -HUP "${FGPID[fg-hosts]}"; sleep 0.1; done
APPLY=$(python3 - "$RUN/fg-hosts.log" <<'PY'
import json, sys
from datetime import datetime
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ts = lambda l: datetime.fromisoformat(l["timestamp"].replace("Z", "+00:00"))
applied = [l for l in lines if l.get("message") == "config applied"]
reload = [l for l in lines if l.get("message") == "reloading config"]
first = f"start: build+bind {applied[0]['took_ms']} ms" if applied else "start: n/a"
if len(applied) > 1 and reload:
    total = (ts(applied[1]) - ts(reload[-1])).total_seconds() * 1000
    print(f"{first}; one route changed: reloading→applied {total:.1f} ms (build+swap {applied[1]['took_ms']} ms)")
else:
    print(f"{first}; one route changed: not applied")
PY
)

per_route() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{(a-b)/($N-1):.2f}')" "$1" "$2"; }
{
  echo "# Routing at scale ($(nproc) cores, wrk -t2 -c$CONNS -d${DURATION}s, median of $ROUNDS rounds; requests match route $LAST)"
  echo
  echo "| path | requests/s (median) | each round |"
  echo "|---|---:|---|"
  for n in $NAMES; do echo "| $n | ${R[$n]} |${ALL[$n]} |"; done
  echo
  echo "- Floodgate 10,000 host routes / 1 route: $(paired "${ALL[fg-hosts]}" "${ALL[fg-1]}")"
  echo "- Floodgate 10,000 path prefixes / 1 route: $(paired "${ALL[fg-paths]}" "${ALL[fg-1]}")"
  echo "- Floodgate / nginx, 10,000 hosts (server blocks): $(paired "${ALL[fg-hosts]}" "${ALL[ng-hosts]}")"
  echo "- Floodgate 10,000 path prefixes / nginx 10,000 server blocks: $(paired "${ALL[fg-paths]}" "${ALL[ng-hosts]}")"
  echo "- Floodgate / nginx, 10,000 path prefixes (locations): $(paired "${ALL[fg-paths]}" "${ALL[ng-paths]}")"
  echo "- nginx 10,000 server blocks / 1: $(paired "${ALL[ng-hosts]}" "${ALL[ng-1]}")"
  echo "- Floodgate VmRSS idle: 1 route ${IDLE[fg-1]} KB, 10,000 host routes ${IDLE[fg-hosts]} KB ($(per_route "${IDLE[fg-hosts]}" "${IDLE[fg-1]}") KB/route), 10,000 path routes ${IDLE[fg-paths]} KB ($(per_route "${IDLE[fg-paths]}" "${IDLE[fg-1]}") KB/route)"
  echo "- Floodgate VmRSS after the load: 1 route ${LOADED[fg-1]} KB, 10,000 host routes ${LOADED[fg-hosts]} KB ($(per_route "${LOADED[fg-hosts]}" "${LOADED[fg-1]}") KB/route), 10,000 path routes ${LOADED[fg-paths]} KB ($(per_route "${LOADED[fg-paths]}" "${LOADED[fg-1]}") KB/route)"
  echo "- Apply of the 10,000-host-route config: $APPLY"
} | tee "$OUT/results.md"
