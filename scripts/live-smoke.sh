#!/usr/bin/env bash
# Live smoke test with curl: a real `meshtwin proxy` on loopback, checked from outside with a
# real HTTP client (HTTP/1.1 and h2c). Usage: scripts/live-smoke.sh [path/to/meshtwin]
set -euo pipefail
bin=${1:-target/release/meshtwin}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/proxy.ron" <<RON
Proxy(
    listeners: [(name: "main", bind: "127.0.0.1:$port")],
    admin: "127.0.0.1:$admin",
    mesh: Mesh(virtual_services: [VirtualService(hosts: ["web"], http: [
        HttpRoute(name: "jason", match: [(headers: {"end-user": Exact("jason")})], direct_response: (status: 200, body: "v2")),
        HttpRoute(name: "old", match: [(uri: Prefix("/old"))], redirect: (uri: "/new")),
        HttpRoute(name: "all", direct_response: (status: 200, body: "v1")),
    ])]),
    endpoints: {"web": [(addr: "127.0.0.1:9", labels: {"version": "v1"})]},
)
RON
"$bin" proxy --config "$dir/proxy.ron" --workers 1 2>"$dir/proxy.log" &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.1; done

check() { # name expected actual
  if [ "$2" != "$3" ]; then echo "FAIL $1: expected [$2], got [$3]"; cat "$dir/proxy.log"; exit 1; fi
  echo "ok   $1"
}
check "default route" "v1" "$(curl -s -H 'Host: web' "http://127.0.0.1:$port/")"
check "header routing" "v2" "$(curl -s -H 'Host: web' -H 'end-user: jason' "http://127.0.0.1:$port/")"
check "redirect" "301 http://web/new" "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: web' "http://127.0.0.1:$port/old")"
check "no route" "404" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: nosuch' "http://127.0.0.1:$port/")"
check "h2c" "2 v1" "$(curl -s --http2-prior-knowledge -w ' ' -o "$dir/h2" "http://web:$port/" --resolve "web:$port:127.0.0.1" -w '%{http_version}'; echo -n ' '; cat "$dir/h2")"
check "metrics" "1" "$(curl -s "http://127.0.0.1:$admin/metrics" | grep -c 'meshtwin_route_requests_total{listener="main",route="web/jason",code="200"} 1')"
echo "live smoke: all ok"
