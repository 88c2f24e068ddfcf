#!/usr/bin/env bash
# Load test of the release build on loopback: the origin alone, admitted
# visitors through antre, waiting visitors' polls, a storm of arrivals, and a
# 1 GiB upload with antre's peak memory. Bounded in requests and time.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load "$@"
