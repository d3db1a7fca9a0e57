#!/usr/bin/env bash
# Reverse-proxy benchmark on loopback: meshtwin proxy vs HAProxy vs nginx in front of the same
# upstream (nginx answering a fixed 200), each with one worker thread, loaded by wrk; rounds are
# interleaved so drift hits all alike. Also: resident memory idle and under load, the meshtwin
# load generator's ceiling against the upstream on one core, and its send lateness at 40k req/s.
#
# A fourth target, hyper-floor (live/examples/hyper_floor.rs), is a bare hyper 1.x proxy on
# meshtwin's stack (tokio current-thread, hyper's HTTP/1.1 server and client::conn, mimalloc)
# with nothing on top: no engine, routing, pool, metrics or timeouts. It is the floor for any
# proxy built on that stack, so it splits a gap to HAProxy into the stack's share and meshtwin's.
#
# Placement (2 cores): the proxy under test runs alone on CPU 1; wrk and the upstream share
# CPU 0. Besides req/s, each proxy's CPU time (user + system, from /proc) per request is
# reported: on a shared VM it is steadier than throughput, and it is what "≥ HAProxy's
# throughput with one worker" comes down to when the proxy's core is the bottleneck.
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
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p live --example hyper_floor
bin="$root/target/release/meshtwin"
floor="$root/target/release/examples/hyper_floor"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

UP=18080; MT=18081; HA=18082; NG=18083; FL=18084; ADMIN=18090
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

taskset -c 0 nginx -c "$work/ng-up/nginx.conf" -p "$work/ng-up" & pids+=($!)
taskset -c 1 nginx -c "$work/ng-rp/nginx.conf" -p "$work/ng-rp" & ng_pid=$!; pids+=($ng_pid)
taskset -c 1 haproxy -f "$work/haproxy.cfg" & ha_pid=$!; pids+=($ha_pid)
taskset -c 1 "$bin" proxy --config "$work/meshtwin.ron" --workers 1 2>/dev/null & mt_pid=$!; pids+=($mt_pid)
taskset -c 1 "$floor" "127.0.0.1:$FL" "127.0.0.1:$UP" & fl_pid=$!; pids+=($fl_pid)
sleep 1

rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
mt_idle=$(rss_kb "$mt_pid")

# CPU ticks (user + system) of a process and its children (nginx's worker is a child).
ticks() {
  local t=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

declare -A rps p99 cpu
run() { # name port host pid
  local out t0 t1 n
  t0=$(ticks "$4")
  out=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" --latency -H "Host: $3" "http://127.0.0.1:$2/")
  t1=$(ticks "$4")
  local r l
  r=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  l=$(echo "$out" | awk '$1=="99%" {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  rps[$1]="${rps[$1]:-} $r"; p99[$1]="${p99[$1]:-} $l"
  cpu[$1]="${cpu[$1]:-} $(python3 -c "print(f'{($t1 - $t0) * 1e6 / $hz / $n:.1f}')")"
}
for round in $(seq "$rounds"); do
  for target in "meshtwin $MT up $mt_pid" "haproxy $HA up $ha_pid" "nginx $NG up $ng_pid" \
                "hyper-floor $FL up $fl_pid"; do
    set -- $target
    if [ "$1" = meshtwin ]; then
      ( sleep $((secs / 2)); rss_kb "$mt_pid" > "$work/mt_load_$round" ) &
    fi
    run "$1" "$2" "$3" "$4"
  done
done
mt_load=$(cat "$work"/mt_load_* | sort -n | tail -1)

# Median of the values on stdin; wrk's latencies (us, ms, s) in ms.
median() {
  python3 -c '
import statistics, sys
def ms(x):
    for unit, k in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if x.endswith(unit):
            return float(x[: -len(unit)]) * k
    return float(x)
print(f"{statistics.median(ms(x) for x in sys.stdin.read().split()):.2f}")'
}
{
  echo "reverse proxy on loopback, wrk -t1 -c64 -d${secs}s, $rounds interleaved rounds, one worker each"
  echo "(proxy alone on CPU 1; wrk and upstream on CPU 0; CPU = proxy user+system µs per request)"
  printf '%-11s %-12s %-12s %-10s | %s\n' proxy "med req/s" "med p99 ms" "med CPU" "per round: req/s / p99 / CPU µs"
  for n in meshtwin haproxy nginx hyper-floor; do
    printf '%-11s %-12s %-12s %-10s | %s / %s / %s\n' "$n" "$(echo "${rps[$n]}" | median)" \
      "$(echo "${p99[$n]}" | median)" "$(echo "${cpu[$n]}" | median)" "${rps[$n]}" "${p99[$n]}" "${cpu[$n]}"
  done
  echo "meshtwin resident memory: idle ${mt_idle} kB, under load ${mt_load} kB"
  # The generator alone on CPU 1 (the proxies there are idle now), nginx on CPU 0: its send
  # timing at 40k req/s, then its ceiling.
  lat=""
  for i in $(seq "$rounds"); do
    lat="$lat $(taskset -c 1 "$bin" load "http://127.0.0.1:$UP/" --rate 40000 --duration "${secs}s" -c 32 2>&1 \
      | awk '/send lateness/ {print $(NF-2)}')"
  done
  echo "meshtwin load at 40000 req/s, send lateness p99 per run (µs):$lat"
  lg=$(taskset -c 1 "$bin" load "http://127.0.0.1:$UP/" --rate 60000 --duration "${secs}s" -c 64 --quiet --json - \
       | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["generated"], r["totals"]["count"], r["totals"]["latency_ms"]["p99"])')
  set -- $lg
  echo "meshtwin load alone on one core against nginx, asked 60000 req/s: sent $1 in ${secs}s = $(( $1 / secs )) req/s, p99 $3 ms"
} | tee "$here/results.txt"
