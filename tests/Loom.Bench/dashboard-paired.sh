#!/usr/bin/env bash
# The bridge's pub/sub throughput with the dashboard closed and open, rounds interleaved: each run
# starts this checkout's `loom up` and runs `loom bench pubsub --url` against it; "open" has a
# headless chromium showing the overview and an unfiltered live tail (two live SSE streams) for the
# whole run. With BASE_CHECKOUT (a checkout from before the dashboard, e.g. a git worktree of that
# commit), a third side runs that build's bridge: the cost of the dashboard's recording itself.
# Usage: tests/Loom.Bench/dashboard-paired.sh [ROUNDS] [BASE_CHECKOUT]
# BENCH_ARGS adds options to the bench (e.g. "--events 300000"). Needs chromium (/usr/bin/chromium or
# LOOM_CHROMIUM). Prints one line per run and a median table.
set -euo pipefail
rounds=${1:-5}
base=${2:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${PAIRED_OUT:-$(mktemp -d)}
chromium=${LOOM_CHROMIUM:-/usr/bin/chromium}
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_bridge() { # $1 checkout -> sets url, http, bridge
  local log="$out/bridge.log"
  "$1/loom" up --grpc-port 0 --http-port 0 >"$log" 2>&1 &
  bridge=$!; pids+=("$bridge")
  for _ in $(seq 240); do grep -q 'listening grpc=' "$log" && break; sleep 0.5; done
  url=$(grep -o 'grpc=[^ ]*' "$log" | head -1 | cut -d= -f2)
  http=$(grep -o 'http=[^ ]*' "$log" | head -1 | cut -d= -f2)
  [ -n "$url" ] || { echo "the bridge of $1 did not start"; cat "$log"; exit 1; }
}

open_dashboard() { # two headless chromiums (one target each): the overview and the live tail; waits for both streams
  pages=()
  for view in "" "#/events"; do
    rm -rf "$out/profile${#pages[@]}"
    "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
      --disable-component-update --disable-sync --user-data-dir="$out/profile${#pages[@]}" "$http/$view" >>"$out/chromium.log" 2>&1 &
    pages+=($!); pids+=($!)
  done
  for _ in $(seq 120); do
    # Connected; then SETTLE seconds (default 10) for the browsers' start-up work to end.
    curl -s "$http/v1/overview" | grep -q '"clients":[2-9]' && { sleep "${SETTLE:-10}"; return 0; }
    sleep 0.5
  done
  echo "the dashboard did not connect its two streams"; exit 1
}

run() { # $1 side (closed|open|base), $2 round
  local file="$out/$1-pubsub-$2.json" checkout="$here"
  [ "$1" = base ] && checkout="$base"
  start_bridge "$checkout"
  [ "$1" = open ] && open_dashboard
  "$checkout/loom" bench pubsub --url "$url" --runs 1 ${BENCH_ARGS:-} --json "$file" >/dev/null 2>"$out/err.log"
  if [ "$1" = open ]; then for p in "${pages[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; fi
  kill "$bridge" 2>/dev/null || true; wait "$bridge" 2>/dev/null || true
  python3 - "$file" "$1" "$2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print(f"round {sys.argv[3]} {sys.argv[2]:6} " + "  ".join(f"{r['measure']}={r['median']:.1f}{r.get('unit', '')}" for r in doc["results"]), flush=True)
PY
}

for side in "$here" ${base:+"$base"}; do "$side/loom" --help >/dev/null; "$side/loom" bench --help >/dev/null 2>&1 || true; done
sides=(closed open); [ -n "$base" ] && sides+=(base)
for r in $(seq "$rounds"); do
  # Rotate which side goes first, so none always runs on a warmer machine.
  for i in $(seq 0 $((${#sides[@]} - 1))); do run "${sides[$(((i + r) % ${#sides[@]}))]}" "$r"; done
done

python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    side = os.path.basename(path).split("-", 1)[0]
    for r in json.load(open(path))["results"]:
        rows.setdefault((r["measure"], r.get("unit", "")), {}).setdefault(side, []).append(r["median"])
sides = [s for s in ("base", "closed", "open") if any(s in v for v in rows.values())]
print("\n| figure | " + " | ".join(f"{s} (median, min–max)" for s in sides) + " | open/closed |\n|---|" + "---:|" * (len(sides) + 1))
for (name, unit), by in rows.items():
    cells = [f"{statistics.median(by[s]):,.1f} ({min(by[s]):,.0f}–{max(by[s]):,.0f})" if s in by else "" for s in sides]
    ratio = statistics.median(by["open"]) / statistics.median(by["closed"]) if "open" in by and "closed" in by else float("nan")
    print(f"| {name} {unit} | " + " | ".join(cells) + f" | {ratio:.2f} |")
print(f"\nraw results: {sys.argv[1]}")
PY
