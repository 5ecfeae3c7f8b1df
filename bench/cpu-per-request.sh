#!/usr/bin/env bash
# CPU per request of the defaults pair, from /proc, for nginx and each Floodgate binary:
#
#   flock /tmp/cargo-build.lock bash bench/cpu-per-request.sh BINARY [BINARY ...]
#
# On loopback only: a fast upstream (nginx, 1 worker), nginx with the header work and a
# buffered JSON access log (2 workers), and each BINARY in turn with its defaults and the
# JSON access log to a file (2 workers). For each proxy: wrk -t1 -c64 for D seconds
# (default 5) gives requests, /proc/PID/task/*/stat the user and kernel CPU time and
# /proc/PID/task/*/status the voluntary context switches (sleeps); then 3 s of the same
# load under `strace -f -c` gives syscalls per request (strace slows the proxy: read its
# counts per request, not its requests/s). Every process is stopped by the PID it got.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD; RUN=$(mktemp -d); . "$ROOT/bench/lib.sh"
need_wrk_nginx
D=${D:-5}
PIDS=(); cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }; trap cleanup EXIT
UP=$(free_port); NL=$(free_port)
nginx_conf upstream 1 "server { listen 127.0.0.1:$UP; location / { return 200 'ok\n'; } }"
nginx_conf proxy-logged 2 "upstream app { server 127.0.0.1:$UP; keepalive 128; }
  $NGINX_REQUEST_ID
  $NGINX_JSON_LOG
  server { listen 127.0.0.1:$NL; access_log $RUN/nginx-access.log json buffer=64k flush=1s; location / {
$NGINX_HEADER_WORK } }"
nginx -c "$RUN/upstream.conf" & PIDS+=($!)
nginx -c "$RUN/proxy-logged.conf" & PIDS+=($!); NGPID=$!
wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 down" >&2; exit 1; }
# Sum of utime, stime (ticks) and voluntary switches over the tasks of the given pids' process trees.
tasks() { for p in "$@"; do echo /proc/$p/task/*; for c in $(cat /proc/$p/task/*/children 2>/dev/null); do echo /proc/$c/task/*; done; done; }
snap() { local u=0 s=0 v=0; for t in $(tasks "$@"); do read -r a b < <(awk '{print $14, $15}' $t/stat 2>/dev/null || echo "0 0"); u=$((u+a)); s=$((s+b)); v=$((v+$(awk '/^voluntary_ctxt/ {print $2}' $t/status 2>/dev/null || echo 0))); done; echo "$u $s $v"; }
measure() { # $1 label $2 port $3.. pids
  local label=$1 port=$2; shift 2
  wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
  read -r u0 s0 v0 < <(snap "$@")
  n=$(wrk -t1 -c64 -d${D}s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  read -r u1 s1 v1 < <(snap "$@")
  local hz; hz=$(getconf CLK_TCK)
  python3 -c "n=$n; hz=$hz; print(f'%-10s req {n} ({n/$D:.0f}/s)  cpu/req {($u1-$u0+$s1-$s0)/hz/n*1e6:.1f} us (user {($u1-$u0)/hz/n*1e6:.1f}, sys {($s1-$s0)/hz/n*1e6:.1f})  vol-switches/s {($v1-$v0)/$D:.0f}  per req {($v1-$v0)/n:.3f}' % '$label')"
  # Syscalls per request (strace slows the proxy; only counts per request are read).
  local out=$RUN/strace.$label
  strace -f -c -o "$out" -p "$(echo "$@" | tr ' ' ',')" & local sp=$!; PIDS+=($sp)
  sleep 0.5
  n=$(wrk -t1 -c64 -d3s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  kill -INT $sp; wait $sp 2>/dev/null || true
  python3 - "$out" "$n" "$label" <<'PY'
import sys
n=int(sys.argv[2])
rows=[]
for l in open(sys.argv[1]):
    f=l.split()
    if len(f)>=5 and f[0][0].isdigit() and f[-1] != 'total':
        rows.append((int(f[3]), f[-1]))
rows.sort(reverse=True)
print(f"{sys.argv[3]:<10} syscalls per request under strace ({n} requests): " + ", ".join(f"{name} {c/n:.3f}" for c, name in rows[:8]))
PY
}
wait_up "$UP"; wait_up "$NL"
cat > "$RUN/fg.yaml" <<YAML
admin: { listen: 127.0.0.1:0 }
server: { access_log: { path: $RUN/floodgate-access.log } }
listeners:
  - name: public
    listen: 127.0.0.1:PORT
    routes:
      - name: all
        cluster: app
clusters:
  - name: app
    endpoints: ["127.0.0.1:$UP"]
YAML
WORKERS_NG=$(cat /proc/$NGPID/task/*/children)
measure nginx "$NL" $WORKERS_NG
for bin in "$@"; do
  FL=$(free_port); sed "s/PORT/$FL/" "$RUN/fg.yaml" > "$RUN/fg-$FL.yaml"
  "$bin" --config "$RUN/fg-$FL.yaml" --workers 2 > "$RUN/fg-$FL.log" 2>&1 & PIDS+=($!); P=$!
  wait_up "$FL"
  measure "$(basename "$bin")" "$FL" "$P"
  kill "$P"; wait "$P" 2>/dev/null || true
done
