#!/usr/bin/env bash
# antre against nginx, side by side in one run on one machine: the admitted
# path (plain and TLS), the waiting path, new arrivals (memory store and
# Redis), Redis commands per poll and per arrival, and memory and CPU per
# idle keep-alive connection (HTTP/1.1 and HTTP/2). Installs what it needs
# (Debian packages: wrk, nginx, redis-server, openssl), builds the release
# binary, and prints the table. Bounded in time: about 12 minutes with the
# defaults. See benches/README.md for the options and the latest results.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v taskset >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    as_root=()
    [[ $(id -u) == 0 ]] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}"
fi
if [[ $(nproc) -lt 2 ]]; then
    echo "vs-nginx: needs two CPUs (the load on one, the server on the other)" >&2
    exit 1
fi
# Each idle connection is a file on both ends.
ulimit -n "$(ulimit -Hn)"

[[ -n ${ANTRE_BIN:-} ]] || cargo build --release --locked --bin antre
exec python3 benches/vs_nginx.py "$@"
