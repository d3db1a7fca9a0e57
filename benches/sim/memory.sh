#!/usr/bin/env bash
# Peak memory and wall time of the simulator on three large meshes, 2 s of load plus the drain:
#   fanout N   — one caller that calls N services in parallel on every request;
#   chain N    — a call chain through N services;
#   instances N — N instances behind one service.
# Usage: benches/sim/memory.sh [MESHTWIN] (default target/release/meshtwin); sizes with
# FANOUT=3000 CHAIN=3000 INSTANCES=30000. Prints one line per case: peak RSS (MB), wall (s),
# requests generated.
set -euo pipefail
bin=${1:-target/release/meshtwin}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
FANOUT=${FANOUT:-3000} CHAIN=${CHAIN:-3000} INSTANCES=${INSTANCES:-30000}

python3 - "$dir" "$FANOUT" "$CHAIN" "$INSTANCES" <<'PY'
import sys
d, fanout, chain, instances = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lat = 'latency: Exponential(mean: "1ms")'

def scenario(services, host, rate):
    return f'''Scenario(
    seed: 1,
    duration: "2s",
    drain: "5s",
    network: (latency: Constant("100us")),
    services: {{
{services}
    }},
    mesh: Mesh(),
    workload: [OpenLoop(host: "{host}", rate: {rate}, requests: [(path: "/")])],
)
'''

leaf = lambda name: f'        "{name}": Service(versions: {{"v1": (instances: 1, workers: 64, {lat})}}),'
calls = ", ".join(f'Call(host: "s{i}")' for i in range(fanout))
front = f'        "front": Service(versions: {{"v1": (instances: 1, workers: 64, {lat})}}, calls: [Parallel([{calls}])]),'
open(f"{d}/fanout.ron", "w").write(scenario("\n".join([front] + [leaf(f"s{i}") for i in range(fanout)]), "front", 20))

links = []
for i in range(chain):
    nxt = f', calls: [Call(host: "c{i+1}")]' if i + 1 < chain else ""
    links.append(f'        "c{i}": Service(versions: {{"v1": (instances: 1, workers: 64, {lat})}}{nxt}),')
open(f"{d}/chain.ron", "w").write(scenario("\n".join(links), "c0", 20))

big = f'        "big": Service(versions: {{"v1": (instances: {instances}, workers: 4, {lat})}}),'
open(f"{d}/instances.ron", "w").write(scenario(big, "big", 2000))
PY

for case in fanout chain instances; do
  /usr/bin/time -f "%M %e" -o "$dir/time" "$bin" run "$dir/$case.ron" --json "$dir/$case.json" --quiet >/dev/null
  read -r kb secs <"$dir/time"
  generated=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['generated'])" "$dir/$case.json")
  printf '%-10s peak %6.0f MB  wall %6.2f s  generated %s\n' "$case" "$((kb / 1024))" "$secs" "$generated"
done
