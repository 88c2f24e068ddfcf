#!/usr/bin/env python3
"""antre against nginx on one machine, side by side in one run.

Run through benches/vs-nginx.sh, which installs what is missing and builds
the release binary. Everything binds to 127.0.0.1 and every load is bounded
in time. The load generator (wrk) and the origin run on CPU 0, the server
measured (antre or nginx) on CPU 1; each pair is run alternately, ROUNDS
times, and the medians are compared.

Environment: ANTRE_BIN (default target/release/antre), VS_SECONDS (seconds
of load a run, default 10), VS_ROUNDS (default 3), VS_IDLE (idle
connections, default 19000), VS_ONLY (comma-separated scenario names).
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANTRE = os.environ.get("ANTRE_BIN", os.path.join(ROOT, "target", "release", "antre"))
SECONDS = int(os.environ.get("VS_SECONDS", "10"))
ROUNDS = int(os.environ.get("VS_ROUNDS", "3"))
IDLE = int(os.environ.get("VS_IDLE", "19000"))
ONLY = set(filter(None, os.environ.get("VS_ONLY", "").split(",")))
CONNECTIONS = 64
LOAD_CPU = "0"
SERVER_CPU = "1"
PAGE = b"<!doctype html><title>page</title>" + b"x" * (1024 - 34)

children = []
WORKDIRS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def start(cmd, cpu, **kw):
    proc = subprocess.Popen(["taskset", "-c", cpu] + cmd, **kw)
    children.append(proc)
    return proc


def stop_all():
    for p in children:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in children:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


NGINX_MAIN = """
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 19990; }}
http {{
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/{name}-body;
    proxy_temp_path {dir}/{name}-proxy;
    fastcgi_temp_path {dir}/{name}-fcgi;
    uwsgi_temp_path {dir}/{name}-uwsgi;
    scgi_temp_path {dir}/{name}-scgi;
    default_type text/html;
{servers}
}}
"""

ORIGIN_SERVER = """
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {dir}/www;
        open_file_cache max=16 inactive=600s;
        location / {{ try_files /page.html =404; }}
    }}
"""

# What both front servers (HTTP/1.1 and TLS; HTTP/2) serve.
FRONT_LOCATIONS = """
        root {dir}/www;
        location = /status.json {{ default_type application/json; }}
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
"""

FRONT_SERVERS = """
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{plain};
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_session_cache shared:SSL:10m;
        # TLS 1.3 as antre speaks it (and as nginx does by default from
        # 1.23.4 on; Debian's 1.22 stops at 1.2 unless told).
        ssl_protocols TLSv1.2 TLSv1.3;
{locations}
    }}
    server {{
        listen 127.0.0.1:{h2} http2;
{locations}
    }}
    # The same, telling the origin who the visitor is, as antre does on
    # every request it forwards (X-Forwarded-For/-Proto/-Host, Forwarded,
    # the Host as sent): the usual reverse-proxy headers a site's own
    # nginx config would set.
    server {{
        listen 127.0.0.1:{identity};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header Forwarded "for=$remote_addr;host=\\"$http_host\\";proto=$scheme";
        }}
    }}
"""

ANTRE_CONFIG = """
[listen]
addr = "127.0.0.1:{port}"
access_log = false
max_connections = 19900
{tls}
[admin]
addr = "127.0.0.1:{admin}"
[origin]
url = "http://127.0.0.1:{origin}"
[store]
{store}
[[keys]]
id = "bench"
secret_env = "ANTRE_BENCH_KEY"
# Admitted visitors: one pass asks as fast as the client can (the rate a
# person is held to is lifted, to measure the proxy).
[[rooms]]
id = "open"
paths = ["/page"]
admit_per_minute = 600000
pass_requests_per_second = 100000
pass_request_burst = 1000000
# Nobody else gets in: one holds the only admission, the rest wait.
[[rooms]]
id = "line"
paths = ["/line"]
admit_per_minute = 1
tickets_per_address_burst = 1000000
tickets_per_address_per_minute = 1000000
"""


def antre_config(dir, name, origin, store, tls=False):
    port = free_port()
    tls_lines = f'tls_cert = "{dir}/cert.pem"\ntls_key = "{dir}/key.pem"' if tls else ""
    text = ANTRE_CONFIG.format(
        port=port, admin=free_port(), origin=origin, store=store, tls=tls_lines
    )
    path = os.path.join(dir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path, port


def curl_cookie(url, name, headers=()):
    """The value `name=...` of a cookie the answer to `url` sets."""
    req = urllib.request.Request(url, headers={"Cookie": "antre-hello=1", **dict(headers)})
    try:
        resp = urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        resp = e
    for value in resp.headers.get_all("Set-Cookie") or []:
        pair = value.split(";", 1)[0]
        if pair.startswith(name + "="):
            return pair
    raise SystemExit(f"{url} set no cookie {name}: {resp.headers}")


def line_up(port, count):
    """`count` new arrivals at the room `line`, over one connection."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(count):
        conn.request("GET", "/line", headers={"Cookie": "antre-hello=1", "Accept": "application/json"})
        conn.getresponse().read()
    conn.close()


def wrk(url, headers=(), seconds=SECONDS, expect_ok=True):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    # A visitor kept waiting is answered 503 with Retry-After, by design.
    if (errors and expect_ok) or socket_errors:
        print(f"  ! {url}: {errors.group(0) if errors else ''} {socket_errors.group(0) if socket_errors else ''}", file=sys.stderr)
    return rate, float(p99.group(1)) * scale


def redis_calls(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True).stdout
    # Round trips: the scripts antre runs (the commands they call inside
    # are not counted) and anything it sends outside them.
    total = 0
    for m in re.finditer(r"^cmdstat_(\w+):calls=(\d+)", out, re.M):
        if m.group(1) in ("eval", "evalsha", "eval_ro", "evalsha_ro", "script"):
            total += int(m.group(2))
    return total


def cpu_seconds(pid):
    """User and system CPU time of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(cpu):
    """CPU `cpu`'s time so far in user space, in the kernel for processes
    and in softirqs (for loopback TCP: delivering the segments this CPU
    sent), seconds, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                ticks = [int(x) for x in fields[1:8]]
                hz = os.sysconf("SC_CLK_TCK")
                return ((ticks[0] + ticks[1]) / hz, ticks[2] / hz, ticks[6] / hz)
    raise SystemExit(f"no cpu{cpu} in /proc/stat")


def server_of(scenario):
    """Which antre serves a scenario."""
    return "tls" if "tls" in scenario else "redis" if "redis" in scenario else "plain"


def nginx_worker(master_pid):
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    return int(out[0])


def fmt_rate(x):
    return f"{x / 1000:.1f}k"


def main():
    dir = tempfile.mkdtemp(prefix="antre-vs-nginx-")
    WORKDIRS.append(dir)
    os.chmod(dir, 0o755)
    os.makedirs(f"{dir}/www")
    with open(f"{dir}/www/page.html", "wb") as f:
        f.write(PAGE)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", f"{dir}/key.pem", "-out", f"{dir}/cert.pem", "-days", "30",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )

    # The origin: nginx serving a 1 KiB page, on the load generator's CPU.
    origin = free_port()
    with open(f"{dir}/origin.conf", "w") as f:
        f.write(NGINX_MAIN.format(dir=dir, name="origin", servers=ORIGIN_SERVER.format(port=origin, dir=dir)))
    start(["nginx", "-p", dir, "-c", f"{dir}/origin.conf"], LOAD_CPU)
    wait_port(origin)

    # Redis for the Redis store, its own, on the load generator's CPU.
    redis_port = free_port()
    start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
          LOAD_CPU, stdout=subprocess.DEVNULL)
    wait_port(redis_port)

    # nginx in front: proxy_pass with upstream keep-alive, TLS, static file.
    n_plain, n_tls, n_h2, n_identity = free_port(), free_port(), free_port(), free_port()
    with open(f"{dir}/front.conf", "w") as f:
        f.write(NGINX_MAIN.format(dir=dir, name="front", servers=FRONT_SERVERS.format(
            origin=origin, plain=n_plain, tls=n_tls, h2=n_h2, identity=n_identity, dir=dir,
            locations=FRONT_LOCATIONS.format(dir=dir))))
    front = start(["nginx", "-p", dir, "-c", f"{dir}/front.conf"], SERVER_CPU)
    wait_port(n_plain)
    wait_port(n_tls)
    front_worker = nginx_worker(front.pid)

    env = dict(os.environ, ANTRE_LOG="error", ANTRE_BENCH_KEY="vs-nginx-" + "k" * 40)
    servers = {}
    for name, store, tls in [
        ("plain", f'state_file = "{dir}/state.json"', False),
        ("tls", f'state_file = "{dir}/state-tls.json"', True),
        ("redis", f'kind = "redis"\nurl = "redis://127.0.0.1:{redis_port}"', False),
    ]:
        path, port = antre_config(dir, name, origin, store, tls)
        proc = start([ANTRE, "run", "--config", path], SERVER_CPU, env=env,
                     stdout=subprocess.DEVNULL, stderr=open(f"{dir}/antre-{name}.log", "w"))
        wait_port(port)
        servers[name] = (proc, port)
    a_plain = servers["plain"][1]
    a_tls = servers["tls"][1]
    a_redis = servers["redis"][1]

    # A pass is renewed (a new cookie on the response) once it is a minute
    # old; a browser then sends the new one, but wrk keeps sending what it
    # was given. Each admitted run gets a pass of its own, taken just before,
    # so it measures what a visitor's requests cost, not a renewal on every
    # one.
    import ssl
    ctx = ssl.create_default_context(cafile=f"{dir}/cert.pem")

    def plain_pass():
        return curl_cookie(f"http://127.0.0.1:{a_plain}/page", "antre-pass-open")

    def tls_pass():
        # Over TLS the cookies are Secure; the pass is taken over TLS too.
        req = urllib.request.Request(f"https://127.0.0.1:{a_tls}/page", headers={"Cookie": "antre-hello=1"})
        resp = urllib.request.urlopen(req, context=ctx, timeout=10)
        return next(v.split(";", 1)[0] for v in resp.headers.get_all("Set-Cookie")
                    if v.startswith("antre-pass-open="))

    pass_cookie = plain_pass()
    # The one measured waits behind a line of a thousand, so at one
    # admission a minute it is still waiting when the run ends.
    curl_cookie(f"http://127.0.0.1:{a_plain}/line", "antre-pass-line")
    curl_cookie(f"http://127.0.0.1:{a_redis}/line", "antre-pass-line")
    line_up(a_plain, 1000)
    line_up(a_redis, 1000)
    ticket = curl_cookie(f"http://127.0.0.1:{a_plain}/line", "antre-ticket-line")
    redis_ticket = curl_cookie(f"http://127.0.0.1:{a_redis}/line", "antre-ticket-line")
    status_url = f"http://127.0.0.1:{a_plain}/_antre/status?room=line"
    status = urllib.request.urlopen(urllib.request.Request(status_url, headers={"Cookie": ticket, "Accept": "application/json"})).read()
    with open(f"{dir}/www/status.json", "wb") as f:
        f.write(status)
    json_ = "Accept: application/json"
    hello = "Cookie: antre-hello=1"

    # name: (antre (url, headers), nginx (url, headers) or None)
    scenarios = {
        "admitted": ((f"http://127.0.0.1:{a_plain}/page", [plain_pass]),
                     (f"http://127.0.0.1:{n_plain}/page", [plain_pass])),
        "admitted-identity": ((f"http://127.0.0.1:{a_plain}/page", [plain_pass]),
                              (f"http://127.0.0.1:{n_identity}/page", [plain_pass])),
        "admitted-tls": ((f"https://127.0.0.1:{a_tls}/page", [tls_pass]),
                         (f"https://127.0.0.1:{n_tls}/page", [tls_pass])),
        "waiting": ((status_url, [f"Cookie: {ticket}", json_]),
                    (f"http://127.0.0.1:{n_plain}/status.json", [f"Cookie: {ticket}", json_])),
        "arrivals": ((f"http://127.0.0.1:{a_plain}/line", [hello, json_]),
                     (f"http://127.0.0.1:{n_plain}/status.json", [hello, json_])),
        "arrivals-redis": ((f"http://127.0.0.1:{a_redis}/line", [hello, json_]),
                           (f"http://127.0.0.1:{n_plain}/status.json", [hello, json_])),
        "waiting-redis": ((f"http://127.0.0.1:{a_redis}/_antre/status?room=line", [f"Cookie: {redis_ticket}", json_]),
                          (f"http://127.0.0.1:{n_plain}/status.json", [f"Cookie: {redis_ticket}", json_])),
    }
    results = {name: {"antre": [], "nginx": []} for name in scenarios}
    splits = {name: {"antre": [], "nginx": []} for name in scenarios}
    # wrk straight to the origin, no server in between: CPU 0 then does
    # all the work it does behind either server (the load and the origin),
    # so this is as fast as any server in front could go here.
    ceiling = []
    redis_per = {}
    print(f"antre vs nginx {nginx_version()}: wrk -t1 -c{CONNECTIONS} -d{SECONDS}s on CPU {LOAD_CPU}, "
          f"servers on CPU {SERVER_CPU}, {ROUNDS} alternating rounds", flush=True)
    for r in range(ROUNDS):
        for name, (a, n) in scenarios.items():
            if ONLY and name not in ONLY:
                continue
            pair = [("antre", a), ("nginx", n)]
            if r % 2:
                pair.reverse()
            for who, (url, headers) in pair:
                headers = [f"Cookie: {h()}" if callable(h) else h for h in headers]
                before = redis_calls(redis_port) if who == "antre" and "redis" in name else None
                pid = servers[server_of(name)][0].pid if who == "antre" else front_worker
                cpu_before, started = cpu_seconds(pid), time.monotonic()
                split_before = cpu_split(SERVER_CPU)
                rate, p99 = wrk(url, headers, expect_ok=not (who == "antre" and "arrivals" in name))
                cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - started
                # The server's CPU as a whole (nothing else runs there):
                # user, system and softirq time a request.
                split = [(b - a) * 1e6 / (rate * wall) for a, b in zip(split_before, cpu_split(SERVER_CPU))]
                splits[name][who].append(split)
                if before is not None:
                    redis_per[name] = (redis_calls(redis_port) - before) / (rate * SECONDS)
                # The server's own CPU time per request, and how busy it
                # kept its CPU: a server below 100% was held back by the
                # load generator and origin on the other CPU, not by itself.
                per_request = cpu * 1e6 / (rate * wall)
                busy = cpu * 100 / wall
                results[name][who].append((rate, p99, per_request, busy))
                print(f"  round {r + 1} {name:<15} {who:<6} {rate:>10.0f} req/s  p99 {p99:.2f} ms  "
                      f"{per_request:5.1f} µs CPU a request, CPU {busy:.0f}% busy "
                      f"(CPU {SERVER_CPU}: user {split[0]:.1f}, system {split[1]:.1f}, softirq {split[2]:.1f} µs)",
                      flush=True)
            if name == "admitted":
                rate, p99 = wrk(f"http://127.0.0.1:{origin}/page")
                ceiling.append(rate)
                print(f"  round {r + 1} {'no front':<15} {'origin':<6} {rate:>10.0f} req/s  p99 {p99:.2f} ms", flush=True)

    # Idle connections: each antre measurement on a process of its own,
    # started afresh (same config, keys and state file), so that what one
    # measurement left behind is not counted in the next one's baseline.
    idle = {}
    plain_proc = servers["plain"][0]
    plain_proc.send_signal(signal.SIGTERM)
    plain_proc.wait(timeout=30)
    for name, port, proto, path, cookie in [
        ("idle-h1-admitted", a_plain, "h1", "/page", pass_cookie),
        ("idle-h1-admitted-nginx", n_plain, "h1", "/page", pass_cookie),
        ("idle-h1-waiting", a_plain, "h1", "/_antre/status?room=line", ticket),
        ("idle-h1-waiting-nginx", n_plain, "h1", "/status.json", ticket),
        ("idle-h2", a_plain, "h2", "/_antre/status?room=line", ticket),
        ("idle-h2-nginx", n_h2, "h2", "/status.json", ticket),
    ]:
        base = name.replace("-nginx", "")
        if ONLY and base not in ONLY and "idle" not in ONLY:
            continue
        fresh = None
        if name.endswith("-nginx"):
            pid = front_worker
        else:
            fresh = start([ANTRE, "run", "--config", f"{dir}/plain.toml"], SERVER_CPU, env=env,
                          stdout=subprocess.DEVNULL, stderr=open(f"{dir}/antre-{name}.log", "w"))
            wait_port(port)
            # One request first, so what serving one allocates is in the
            # baseline, as it is for nginx.
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie, "Accept": "application/json"}),
                    timeout=10).read()
            except urllib.error.HTTPError:
                pass
            pid = fresh.pid
        out = subprocess.run(
            ["taskset", "-c", LOAD_CPU, sys.executable, os.path.join(ROOT, "benches", "idle.py"),
             "--port", str(port), "--pid", str(pid), "--count", str(IDLE), "--proto", proto,
             "--path", path, "--cookie", cookie],
            capture_output=True, text=True, timeout=600,
        )
        if fresh is not None:
            fresh.send_signal(signal.SIGTERM)
            fresh.wait(timeout=30)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            continue
        idle[name] = json.loads(out.stdout)
        print(f"  {name:<24} {out.stdout.strip()}", flush=True)

    slot = nginx_slot_bytes(dir) if idle else 0
    print()
    print("| path | antre | nginx | ratio |")
    print("|---|---|---|---|")
    labels = {
        "admitted": "admitted visitor (pass) vs nginx `proxy_pass`, keep-alive upstream",
        "admitted-identity": "the same, nginx also telling the origin who the visitor is (X-Forwarded-*, Forwarded), as antre does",
        "admitted-tls": "the same over TLS 1.3 (rustls vs OpenSSL)",
        "waiting": "waiting visitor polling status vs nginx static file",
        "waiting-redis": "the same, Redis store",
        "arrivals": "new arrivals (a ticket each), memory store, vs nginx static file",
        "arrivals-redis": "new arrivals, Redis store, vs nginx static file",
    }
    for name, label in labels.items():
        a, n = results[name]["antre"], results[name]["nginx"]
        if not a or not n:
            continue
        ar, ap = statistics.median(x[0] for x in a), statistics.median(x[1] for x in a)
        nr, np_ = statistics.median(x[0] for x in n), statistics.median(x[1] for x in n)
        ac, nc = statistics.median(x[2] for x in a), statistics.median(x[2] for x in n)
        ab, nb = statistics.median(x[3] for x in a), statistics.median(x[3] for x in n)
        # Each round's two runs are back to back: the median of the rounds'
        # own ratios is not moved by the host's load changing between them.
        rate_ratio = statistics.median(x[0] / y[0] for x, y in zip(a, n))
        p99_ratio = statistics.median(x[1] / y[1] for x, y in zip(a, n))
        cpu_ratio = statistics.median(x[2] / y[2] for x, y in zip(a, n))
        print(f"| {label} | {fmt_rate(ar)} req/s, p99 {ap:.2f} ms, {ac:.1f} µs CPU a request ({ab:.0f}% busy) "
              f"| {fmt_rate(nr)} req/s, p99 {np_:.2f} ms, {nc:.1f} µs ({nb:.0f}% busy) "
              f"| **{rate_ratio:.2f}×**, p99 {p99_ratio:.2f}×, CPU a request {cpu_ratio:.2f}× |")
    if ceiling and results["admitted"]["nginx"]:
        top = statistics.median(ceiling)
        a, n = results["admitted"]["antre"], results["admitted"]["nginx"]
        print(f"| no server in front: wrk straight to the origin (the most a server in front could reach "
              f"here) | {fmt_rate(top)} req/s | | antre {statistics.median(x[0] / c for x, c in zip(a, ceiling)):.2f}×, "
              f"nginx {statistics.median(y[0] / c for y, c in zip(n, ceiling)):.2f}× of it |")
    for name, label in [("idle-h1-admitted", "idle HTTP/1.1 connection, admitted path"),
                        ("idle-h1-waiting", "idle HTTP/1.1 connection, waiting path"),
                        ("idle-h2", "idle HTTP/2 connection")]:
        a, n = idle.get(name), idle.get(name + "-nginx")
        if not a or not n:
            continue
        mine, theirs = a["per_connection_bytes"], n["per_connection_bytes"] + slot
        print(f"| {label}, {a['answered']} connections | {mine} B each, {a['idle_cpu_percent']}% CPU while idle; "
              f"{a['rss_before_kib'] // 1024} MiB before, {a['rss_holding_kib'] // 1024} MiB held, "
              f"{a['rss_after_kib'] // 1024} MiB after they close "
              f"| {theirs} B each ({n['per_connection_bytes']} B measured, {slot} B set aside per slot), "
              f"{n['idle_cpu_percent']}% CPU | **{mine / max(theirs, 1):.2f}×** |")
    for name, label in [("waiting-redis", "Redis commands per poll"), ("arrivals-redis", "Redis commands per arrival")]:
        if name in redis_per:
            print(f"| {label} | {redis_per[name]:.3f} | | |")

    # Where the server's CPU went, a request: what a server does in user
    # space is its own; the system and softirq time is mostly the kernel's
    # TCP work for the same four segments a request, whichever server.
    rows = [(name, label) for name, label in labels.items()
            if splits[name]["antre"] and splits[name]["nginx"]]
    if rows:
        print()
        print(f"| CPU {SERVER_CPU}, µs a request (medians) | antre user / system / softirq "
              f"| nginx user / system / softirq | user ratio |")
        print("|---|---|---|---|")
        for name, label in rows:
            a = [statistics.median(x[i] for x in splits[name]["antre"]) for i in range(3)]
            n = [statistics.median(x[i] for x in splits[name]["nginx"]) for i in range(3)]
            print(f"| {label} | {a[0]:.1f} / {a[1]:.1f} / {a[2]:.1f} | {n[0]:.1f} / {n[1]:.1f} / {n[2]:.1f} "
                  f"| {a[0] / max(n[0], 1e-9):.2f}× |")


def nginx_slot_bytes(dir):
    """What nginx sets aside per connection slot when it starts: each of
    `worker_connections` gets its connection and event structures up front,
    so connections that later open add little to its resident memory. Two
    idle workers, 1,024 and 19,990 slots, tell it apart."""
    rss = {}
    for slots in (1024, 19990):
        port = free_port()
        name = f"slots{slots}"
        conf = NGINX_MAIN.format(dir=dir, name=name, servers=f"server {{ listen 127.0.0.1:{port}; }}")
        conf = conf.replace("worker_connections 19990", f"worker_connections {slots}")
        with open(f"{dir}/{name}.conf", "w") as f:
            f.write(conf)
        proc = start(["nginx", "-p", dir, "-c", f"{dir}/{name}.conf"], SERVER_CPU)
        wait_port(port)
        time.sleep(0.5)
        with open(f"/proc/{nginx_worker(proc.pid)}/status") as f:
            rss[slots] = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    return round((rss[19990] - rss[1024]) * 1024 / (19990 - 1024))


def nginx_version():
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return out.split("/")[-1]


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        for d in WORKDIRS:
            if not os.environ.get("VS_KEEP"):
                shutil.rmtree(d, ignore_errors=True)
