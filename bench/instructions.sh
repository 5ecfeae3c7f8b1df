#!/usr/bin/env bash
# Instructions per proxied request (callgrind), for one or more floodgate binaries, in one run.
#
#   bash bench/instructions.sh [REQUESTS] [BINARY ...]
#
# Starts, on loopback only, a fast upstream (nginx, 1 worker, `return 200`) and, for each
# BINARY (default: this checkout's release build), Floodgate with one worker under
# callgrind, in three configs: `logged` = its defaults as shipped (forwarding headers,
# request id, admission control, the JSON access log, here to a file); `defaults` = the
# same with the access log off; `rejected` = the defaults with a route rate limit of 1 rps,
# so that (after the first) every request is refused by the proxy itself (429 with
# `Retry-After`: what a refusal costs, the response built by the proxy); and `bare` (`headers: {forwarded: false, request_id:
# false}`, `admission: {enabled: false}`, no access log). `logged` minus `defaults` is
# what the access log costs. Then nginx under callgrind (one process, `master_process
# off`) in the matching pairs: `nginx-logged` (the same header work and a buffered JSON
# access log, `buffer=64k flush=1s`) and `nginx-bare`.
# After a warm-up of 500 requests the counters are zeroed, REQUESTS requests (default
# 20000) are sent over 4 keep-alive connections by a bounded client, and the counters
# dumped: instructions / REQUESTS is printed per binary and config. Instruction counts
# do not depend on the machine's load, so two builds compare within about ±2%.
# KEEP=DIR keeps the callgrind dumps; CONFIGS="logged defaults" measures only the configs
# named (default: all four and both nginx pairs). Every process is stopped by the PID this
# script started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${1:-20000}
shift || true
BINARIES=("$@")
if [ ${#BINARIES[@]} -eq 0 ]; then
  cargo build --release -q -p floodgate
  BINARIES=("$ROOT/target/release/floodgate")
fi
RUN=$(mktemp -d)

need() { command -v "$1" >/dev/null 2>&1; }
if ! need valgrind || ! need nginx || ! need curl; then
  echo "installing valgrind, nginx and curl (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind nginx curl >/dev/null
fi

PIDS=()
KEPT=0
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() { for _ in $(seq 600); do curl -fs -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 not answering" >&2; exit 1; }

UP=$(free_port)
cat > "$RUN/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $RUN/upstream.pid;
error_log $RUN/upstream.error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $RUN/body; proxy_temp_path $RUN/proxy; fastcgi_temp_path $RUN/fcgi;
  uwsgi_temp_path $RUN/uwsgi; scgi_temp_path $RUN/scgi;
  server { listen 127.0.0.1:$UP; location / { return 200 'ok\n'; } }
}
CONF
nginx -c "$RUN/upstream.conf" & PIDS+=($!)
wait_up "$UP"

# A bounded keep-alive client: `n` GETs over `c` connections, then it stops.
cat > "$RUN/client.py" <<'PY'
import socket, sys, threading
port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = b"GET /x HTTP/1.1\r\nHost: bench.test\r\n\r\n"
def worker(count):
    s = socket.create_connection(("127.0.0.1", port))
    buf = b""
    for _ in range(count):
        s.sendall(req)
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) >= head_end + 4 + length:
                    buf = buf[head_end + 4 + length:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            buf += chunk
    s.close()
threads = [threading.Thread(target=worker, args=(n // c + (1 if i < n % c else 0),)) for i in range(c)]
for t in threads: t.start()
for t in threads: t.join()
PY

measure() { # $1 binary, $2 label, $3 extra listener lines, $4 extra cluster lines, $5 access log, $6 extra route lines
  local port admin out pid
  port=$(free_port); admin=$(free_port); out="$RUN/callgrind.$2.out"
  cat > "$RUN/$2.yaml" <<YAML
admin: { listen: 127.0.0.1:$admin }
server: { access_log: ${5:-false} }
listeners:
  - name: public
    listen: 127.0.0.1:$port
$3
    routes:
      - name: all
        cluster: app
${6:-}
clusters:
  - name: app
    endpoints: ["127.0.0.1:$UP"]
${4:-}
YAML
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --config "$RUN/$2.yaml" --workers 1 \
    > "$RUN/$2.log" 2>&1 & pid=$!
  count "$1" "$2" "$port" "$pid" "$out"
}

count() { # $1 what, $2 label, $3 port, $4 pid under callgrind, $5 callgrind output
  local port="$3" pid="$4" out="$5"
  PIDS+=("$pid")
  wait_up "$port"
  python3 "$RUN/client.py" "$port" 500 4
  callgrind_control -z "$pid" >/dev/null
  python3 "$RUN/client.py" "$port" "$REQUESTS" 4
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # The dump after zeroing is the file with the highest part number.
  local dump
  dump=$(ls -1 "$out".* 2>/dev/null | sort -t. -k3 -n | tail -n 1)
  local total
  total=$(awk '/^summary:/ {print $2}' "$dump")
  # KEEP=DIR keeps each dump (for callgrind_annotate) as DIR/<n>.<config>.callgrind.
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$dump" "$KEEP/$((++KEPT)).$2.callgrind"; fi
  printf '%-60s %-12s %8.0f\n' "$1" "$2" "$(python3 -c "print($total / $REQUESTS)")"
}

# nginx as one process under callgrind: $1 label, $2 server block lines.
measure_nginx() {
  local port out pid
  port=$(free_port); out="$RUN/callgrind.$1.out"
  cat > "$RUN/$1.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $RUN/$1.pid;
error_log $RUN/$1.error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $RUN/$1-body; proxy_temp_path $RUN/$1-proxy; fastcgi_temp_path $RUN/$1-fcgi;
  uwsgi_temp_path $RUN/$1-uwsgi; scgi_temp_path $RUN/$1-scgi;
  upstream app { server 127.0.0.1:$UP; keepalive 128; }
  log_format json escape=json '{"time":"\$time_iso8601","client":"\$remote_addr:\$remote_port",'
    '"method":"\$request_method","host":"\$host","path":"\$request_uri","protocol":"\$server_protocol",'
    '"status":\$status,"bytes_in":"\$content_length","bytes_out":\$body_bytes_sent,'
    '"duration_ms":\$request_time,"upstream":"\$upstream_addr","upstream_ms":"\$upstream_header_time",'
    '"route":"all","cluster":"app","listener":"public","reason":null,"request_id":"\$fg_request_id",'
    '"trace_id":null}';
  map \$http_x_request_id \$fg_request_id { default \$http_x_request_id; '' \$request_id; }
  server { listen 127.0.0.1:$port; location / {
    proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
$2
  } }
}
CONF
  valgrind --tool=callgrind --callgrind-out-file="$out" nginx -c "$RUN/$1.conf" \
    > "$RUN/$1.log" 2>&1 & pid=$!
  count nginx "$1" "$port" "$pid" "$out"
}

CONFIGS=" ${CONFIGS:-logged defaults rejected bare nginx-logged nginx-bare} "
wanted() { [[ "$CONFIGS" == *" $1 "* ]]; }
printf '%-60s %-12s %8s\n' binary config instr/req
for bin in "${BINARIES[@]}"; do
  if wanted logged; then measure "$bin" logged "" "" "{ path: $RUN/access.log }"; fi
  if wanted defaults; then measure "$bin" defaults ""; fi
  if wanted rejected; then measure "$bin" rejected "" "" "" "        rate_limit: { rps: 1, burst: 1 }"; fi
  if wanted bare; then measure "$bin" bare "    headers: { forwarded: false, request_id: false }" "    admission: { enabled: false }"; fi
done
if wanted nginx-logged; then measure_nginx nginx-logged "    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$http_host;
    proxy_set_header X-Request-Id \$fg_request_id;
    add_header X-Request-Id \$fg_request_id always;
    access_log $RUN/nginx-access.log json buffer=64k flush=1s;"; fi
if wanted nginx-bare; then measure_nginx nginx-bare ""; fi
