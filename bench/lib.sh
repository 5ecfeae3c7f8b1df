# Helpers shared by the bench scripts; source it after setting RUN (the run directory).

need() { command -v "$1" >/dev/null 2>&1; }

# Installs wrk and nginx with apt-get when either is missing.
need_wrk_nginx() {
  if ! need wrk || ! need nginx; then
    echo "installing wrk and nginx (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Writes $RUN/NAME.conf: nginx_conf NAME WORKERS HTTP_BLOCKS (text inside `http { }`).
nginx_conf() {
  cat > "$RUN/$1.conf" <<CONF
worker_processes $2;
daemon off;
pid $RUN/$1.pid;
error_log $RUN/$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $RUN/$1-body;
  proxy_temp_path $RUN/$1-proxy;
  fastcgi_temp_path $RUN/$1-fastcgi;
  uwsgi_temp_path $RUN/$1-uwsgi;
  scgi_temp_path $RUN/$1-scgi;
  $3
}
CONF
}

median() { python3 -c "import sys, statistics; print(f'{statistics.median(map(float, sys.argv[1:])):.0f}')" "$@"; }

# Median of the per-round ratios of two paths' requests/s ("a1 a2 ..." "b1 b2 ...").
paired() { python3 -c "import sys, statistics; a, b = sys.argv[1].split(), sys.argv[2].split(); r = [float(x) / float(y) for x, y in zip(a, b)]; print(f'{statistics.median(r):.2f} (rounds: ' + ' '.join(f'{x:.2f}' for x in r) + ')')" "$1" "$2"; }

# nginx doing the request and response header work of Floodgate's defaults (docs/request-path.md),
# proxying to `upstream app`; needs NGINX_REQUEST_ID in the http block.
NGINX_HEADER_WORK="proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$http_host;
    proxy_set_header X-Request-Id \$fg_request_id;
    add_header X-Request-Id \$fg_request_id always;"
# The request id nginx forwards and returns: the client's, or one of its own.
NGINX_REQUEST_ID="map \$http_x_request_id \$fg_request_id { default \$http_x_request_id; '' \$request_id; }"
# A buffered-log format with the fields of Floodgate's default JSON access-log line (use as `json`).
NGINX_JSON_LOG="log_format json escape=json '{\"time\":\"\$time_iso8601\",\"client\":\"\$remote_addr:\$remote_port\",'
    '\"method\":\"\$request_method\",\"host\":\"\$host\",\"path\":\"\$request_uri\",\"protocol\":\"\$server_protocol\",'
    '\"status\":\$status,\"bytes_in\":\"\$content_length\",\"bytes_out\":\$body_bytes_sent,'
    '\"duration_ms\":\$request_time,\"upstream\":\"\$upstream_addr\",\"upstream_ms\":\"\$upstream_header_time\",'
    '\"route\":\"all\",\"cluster\":\"app\",\"listener\":\"public\",\"reason\":null,\"request_id\":\"\$fg_request_id\",'
    '\"trace_id\":null}';"
