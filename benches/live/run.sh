#!/usr/bin/env bash
# Reverse-proxy benchmark on loopback: meshtwin proxy vs HAProxy vs nginx in front of the same
# upstream (nginx answering a fixed 200), each with one worker thread, loaded by wrk; rounds are
# interleaved so drift hits all three alike. Also: resident memory idle and under load, and the
# meshtwin load generator's ceiling against the upstream on one core.
#
# Usage: benches/live/run.sh [rounds] [seconds]     (defaults: 3 rounds of 10 s)
# Needs root for apt-get the first time (installs wrk, haproxy, nginx). Results: a table on
# stdout and benches/live/results.txt.
set -euo pipefail
rounds=${1:-3}
secs=${2:-10}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for tool in wrk haproxy nginx; do
  command -v "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk haproxy nginx; break; }
done
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/meshtwin"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

UP=18080; MT=18081; HA=18082; NG=18083; ADMIN=18090
mkdir -p "$work/ng-up" "$work/ng-rp"
cat > "$work/ng-up/nginx.conf" <<CONF
worker_processes 1; daemon off; error_log /dev/null; pid $work/ng-up/pid;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UP; keepalive_requests 1000000; location / { return 200 "hello from upstream\n"; } } }
CONF
cat > "$work/ng-rp/nginx.conf" <<CONF
worker_processes 1; daemon off; error_log /dev/null; pid $work/ng-rp/pid;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NG; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HA
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:$UP
CONF
cat > "$work/meshtwin.ron" <<CONF
Proxy(
  listeners: [(name: "bench", bind: "127.0.0.1:$MT")],
  admin: "127.0.0.1:$ADMIN",
  endpoints: {"up": [(addr: "127.0.0.1:$UP", labels: {"version": "v1"})]},
)
CONF

nginx -c "$work/ng-up/nginx.conf" -p "$work/ng-up" & pids+=($!)
nginx -c "$work/ng-rp/nginx.conf" -p "$work/ng-rp" & pids+=($!)
haproxy -f "$work/haproxy.cfg" & pids+=($!)
"$bin" proxy --config "$work/meshtwin.ron" --workers 1 2>/dev/null & mt_pid=$!; pids+=($mt_pid)
sleep 1

rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
mt_idle=$(rss_kb "$mt_pid")

declare -A rps p99 peak
run() { # name port host
  local out
  out=$(wrk -t1 -c64 -d"${secs}s" --latency -H "Host: $3" "http://127.0.0.1:$2/")
  local r l
  r=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  l=$(echo "$out" | awk '$1=="99%" {print $2}')
  rps[$1]="${rps[$1]:-} $r"; p99[$1]="${p99[$1]:-} $l"
}
for round in $(seq "$rounds"); do
  for target in "meshtwin $MT up" "haproxy $HA up" "nginx $NG up"; do
    set -- $target
    if [ "$1" = meshtwin ]; then
      ( sleep $((secs / 2)); rss_kb "$mt_pid" > "$work/mt_load_$round" ) &
    fi
    run "$1" "$2" "$3"
  done
done
mt_load=$(cat "$work"/mt_load_* | sort -n | tail -1)

{
  echo "reverse proxy on loopback, wrk -t1 -c64 -d${secs}s, $rounds interleaved rounds, one worker each"
  printf '%-10s %-40s %-40s\n' proxy "req/s per round" "p99 per round"
  for n in meshtwin haproxy nginx; do printf '%-10s %-40s %-40s\n' "$n" "${rps[$n]}" "${p99[$n]}"; done
  echo "meshtwin resident memory: idle ${mt_idle} kB, under load ${mt_load} kB"
  lg=$(taskset -c 0 "$bin" load "http://127.0.0.1:$UP/" --rate 60000 --duration "${secs}s" -c 64 --quiet --json - \
       | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["generated"], r["totals"]["count"], r["totals"]["latency_ms"]["p99"])')
  set -- $lg
  echo "meshtwin load on one core against nginx, asked 60000 req/s: sent $1 in ${secs}s = $(( $1 / secs )) req/s, p99 $3 ms"
} | tee "$here/results.txt"
