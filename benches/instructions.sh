#!/usr/bin/env bash
# Instructions antre spends per request, counted by callgrind: the same
# figure on a busy machine as on a quiet one, so two builds can be compared
# without the noise of a timed run. An nginx origin serves a 1 KiB page;
# antre runs under valgrind; a client sends requests one after another over
# one keep-alive connection, 200 and then 2,200 of them, and the difference
# over 2,000 is printed.
#
#   bash benches/instructions.sh [ANTRE_BINARY] [admitted|waiting]
#
# Needs valgrind and nginx (Debian packages `valgrind`, `nginx-light`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/antre}
mode=${2:-admitted}
[[ -x $bin ]] || cargo build --release --locked --bin antre
for tool in valgrind nginx python3; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: needs $tool" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/antre-instructions-XXXXXX)
chmod 755 "$dir"
trap 'kill $(cat "$dir/origin.pid" 2>/dev/null) 2>/dev/null; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin=$(port) listen=$(port) admin=$(port)

mkdir -p "$dir/www"
python3 -c "open('$dir/www/page.html','wb').write(b'x'*1024)"
cat >"$dir/origin.conf" <<EOF
worker_processes 1; pid $dir/origin.pid; error_log $dir/origin.err warn;
events { worker_connections 1024; }
http {
    access_log off; keepalive_requests 1000000;
    client_body_temp_path $dir/b; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
    uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
    server { listen 127.0.0.1:$origin; root $dir/www; location / { try_files /page.html =404; } }
}
EOF
nginx -p "$dir" -c "$dir/origin.conf"

cat >"$dir/antre.toml" <<EOF
[listen]
addr = "127.0.0.1:$listen"
access_log = false
[admin]
addr = "127.0.0.1:$admin"
[origin]
url = "http://127.0.0.1:$origin"
[store]
state_file = "$dir/state.json"
[[keys]]
id = "bench"
secret_env = "ANTRE_BENCH_KEY"
[[rooms]]
id = "open"
paths = ["/page"]
admit_per_minute = 600000
pass_requests_per_second = 100000
pass_request_burst = 100000
[[rooms]]
id = "line"
paths = ["/line"]
admit_per_minute = 1
EOF

cat >"$dir/client.py" <<'EOF'
import http.client, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def get(path, cookie):
    c.request("GET", path, headers={"Cookie": cookie, "Accept": "application/json"})
    r = c.getresponse(); r.read(); return r
def cookie_of(r, name):
    return [v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith(name)][0]
if mode == "admitted":
    path, cookie = "/page", cookie_of(get("/page", "antre-hello=1"), "antre-pass-open")
else:
    get("/line", "antre-hello=1")
    path, cookie = "/_antre/status?room=line", cookie_of(get("/line", "antre-hello=1"), "antre-ticket-line")
for _ in range(n):
    get(path, cookie)
EOF

count() {
    rm -f "$dir"/state.json* "$dir"/cg.out*
    ANTRE_BENCH_KEY=instructions-$(printf 'k%.0s' {1..40}) ANTRE_LOG=error \
        valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        "$bin" run --config "$dir/antre.toml" 2>/dev/null &
    local pid=$!
    for _ in $(seq 1 200); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $listen), 1)" 2>/dev/null && break
        sleep 0.2
    done
    python3 "$dir/client.py" "$listen" "$1" "$mode"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    callgrind_annotate "$dir"/cg.out* 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }'
}
few=$(count 200)
many=$(count 2200)
echo "$mode: $(( (many - few) / 2000 )) instructions per request ($bin)"
