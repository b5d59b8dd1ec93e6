#!/usr/bin/env bash
# Paired end-to-end runs of two builds on one machine in one window: this checkout against another
# checkout (for example a git worktree of the commit before a change), rounds interleaved so drift
# hits both alike. Each side runs its own `loom up` and its own `loom bench` client.
# Usage: tests/Loom.Bench/paired.sh OTHER_CHECKOUT [ROUNDS] [SCENARIOS]
#   SCENARIOS: comma-separated from pubsub,rpc,paced,agents (default all four); AGENTS_ARGS adds options to agents (e.g. "--agents-per-connection 100")
# Prints one line per run and a median table at the end; the raw JSON stays in $PAIRED_OUT (a temp dir).
set -euo pipefail
other=$(cd "${1:?usage: paired.sh OTHER_CHECKOUT [ROUNDS] [SCENARIOS]}" && pwd)
rounds=${2:-3}
scenarios=${3:-pubsub,rpc,paced,agents}
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${PAIRED_OUT:-$(mktemp -d)}
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_bridge() { # $1 checkout -> sets url
  local log="$out/bridge.log"
  "$1/loom" up --grpc-port 0 --http-port 0 >"$log" 2>&1 &
  bridge=$!; pids+=("$bridge")
  for _ in $(seq 240); do grep -q 'listening grpc=' "$log" && break; sleep 0.5; done
  url=$(grep -o 'grpc=[^ ]*' "$log" | head -1 | cut -d= -f2)
  [ -n "$url" ] || { echo "the bridge of $1 did not start"; cat "$log"; exit 1; }
}
stop_bridge() { kill "$bridge" 2>/dev/null || true; wait "$bridge" 2>/dev/null || true; }

# Builds first, so no run pays for one.
for side in "$other" "$here"; do "$side/loom" --help >/dev/null; "$side/loom" bench --help >/dev/null 2>&1 || true; done

run() { # $1 side name, $2 checkout, $3 scenario, $4 round
  local file="$out/$1-$3-$4.json"
  case "$3" in
    agents) "$2/loom" bench agents --runs 1 ${AGENTS_ARGS:-} --json "$file" >/dev/null 2>"$out/err.log" ;;
    *)
      start_bridge "$2"
      case "$3" in
        pubsub) "$2/loom" bench pubsub --url "$url" --runs 1 --json "$file" >/dev/null 2>"$out/err.log" ;;
        rpc) "$2/loom" bench rpc --url "$url" --runs 3 --json "$file" >/dev/null 2>"$out/err.log" ;;
        paced) "$2/loom" bench paced --url "$url" --rates 1000 --seconds 5 --runs 1 --json "$file" >/dev/null 2>"$out/err.log" ;;
      esac
      stop_bridge ;;
  esac
  python3 - "$file" "$1" "$3" "$4" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
figures = "  ".join(f"{r['measure']}={r['median']:.1f}{r.get('unit', '')}" for r in doc["results"])
print(f"round {sys.argv[4]} {sys.argv[2]:5} {sys.argv[3]:7} {figures}", flush=True)
PY
}

for r in $(seq "$rounds"); do
  for s in ${scenarios//,/ }; do
    # Alternate which side goes first, so neither always runs on a warmer machine.
    if [ $((r % 2)) = 1 ]; then run other "$other" "$s" "$r"; run this "$here" "$s" "$r"; else run this "$here" "$s" "$r"; run other "$other" "$s" "$r"; fi
  done
done

python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    side, scenario, _ = os.path.basename(path)[:-5].split("-", 2)
    for r in json.load(open(path))["results"]:
        rows.setdefault((scenario, r["measure"], r.get("unit", "")), {}).setdefault(side, []).append(r["median"])
print("\n| scenario | figure | other (median of rounds) | this | this/other |\n|---|---|---:|---:|---:|")
for (scenario, name, unit), sides in rows.items():
    o = statistics.median(sides.get("other", [float("nan")])); t = statistics.median(sides.get("this", [float("nan")]))
    print(f"| {scenario} | {name} {unit} | {o:,.1f} ({min(sides.get('other', [o])):,.0f}–{max(sides.get('other', [o])):,.0f}) | {t:,.1f} ({min(sides.get('this', [t])):,.0f}–{max(sides.get('this', [t])):,.0f}) | {(t / o if o else float('nan')):.2f} |")
print(f"\nraw results: {sys.argv[1]}")
PY
