#!/usr/bin/env bash
# Runs every Loom test: .NET (xunit), the official-client interop suites (Python grpcio,
# Node grpc-js), and whatever SDK suites exist. Installs what the tests need by itself.
# Usage: tests/run-all.sh            (from anywhere)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export DOTNET_ThreadPool_UnfairSemaphoreSpinLimit="${DOTNET_ThreadPool_UnfairSemaphoreSpinLimit:-0}"
logs="$root/.loom/test-logs"
mkdir -p "$logs"

# Passed, failed and skipped of a Python or Node suite's log, as "P F S": pytest's last summary
# line ("1 failed, 60 passed, 2 skipped, 1 error in 4.2s"; errors count as failed), node:test's
# TAP totals ("# pass 12", "# fail 0", "# cancelled 0" as failed, "# skipped 1" and "# todo 0" as
# skipped), or tests/install's "install: N passed, N failed".
counts() {
  local log="$1" line p=0 f=0 s=0
  line="$(grep -E "^[= ]*[0-9]+ (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)(, [0-9]+ [a-z]+)* in [0-9.]+s" "$log" | tail -1)"
  if [ -n "$line" ]; then
    of() { grep -oE "[0-9]+ ($1)\b" <<<"$line" | grep -oE "[0-9]+" | awk '{ n += $1 } END { print n + 0 }'; }
    p=$(of passed); f=$(( $(of failed) + $(of "errors?") )); s=$(of skipped)
  elif grep -qE "^# (pass|fail) [0-9]+" "$log"; then
    tap() { sed -nE "s/^# ($1) ([0-9]+)\s*$/\2/p" "$log" | tail -1 | awk '{ n += $1 } END { print n + 0 }'; }
    p=$(tap pass); f=$(( $(tap fail) + $(tap cancelled) )); s=$(( $(tap "skip|skipped") + $(tap todo) ))
  else
    p=$(grep -oE "[0-9]+ passed" "$log" | tail -1 | grep -oE "[0-9]+"); f=$(grep -oE "[0-9]+ failed" "$log" | tail -1 | grep -oE "[0-9]+")
  fi
  echo "${p:-0} ${f:-0} ${s:-0}"
}
[ "${1:-}" = "--counts" ] && { cd "$OLDPWD" && counts "$2"; exit 0; } # tests/run-all.sh --counts LOG: checks the parsing on a saved log

# --- prerequisites (what every suite below needs; apt-get's output goes to a log) ---------------
need_apt=()
/usr/bin/python3 -c 'import grpc, google.protobuf, pytest' 2>/dev/null || need_apt+=(python3-grpcio python3-protobuf python3-pytest)
/usr/bin/python3 -c 'import pytest_asyncio' 2>/dev/null || need_apt+=(python3-pytest-asyncio)
/usr/bin/python3 -c 'import mypy' 2>/dev/null || need_apt+=(python3-mypy)
command -v black >/dev/null && command -v flake8 >/dev/null || need_apt+=(black flake8) # sdk-python/run-tests.sh's format and lint checks
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -x /usr/bin/grpc_python_plugin ] || need_apt+=(protobuf-compiler-grpc)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
[ -x /usr/bin/chromium ] || need_apt+=(chromium) # the dashboard's browser tests (Loom.Dashboard.Tests; Playwright drives it, no browser download)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing: ${need_apt[*]} (apt-get output: ${logs#"$root/"}/apt.log)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"; } >"$logs/apt.log" 2>&1 \
    || { tail -20 "$logs/apt.log"; echo "could not install ${need_apt[*]} (full output: ${logs#"$root/"}/apt.log)"; exit 1; }
fi

passed=0; failed=0; skipped=0; suites_failed=()
add() { passed=$((passed + ${1:-0})); failed=$((failed + ${2:-0})); skipped=$((skipped + ${3:-0})); }

# --- build once, so the bridge the interop suites start is the one under test --------------
echo "== build"
if ! dotnet build Loom.sln -c Release -nologo -v minimal >"$logs/build.log" 2>&1; then
  grep -E "error|warning" "$logs/build.log" | sort -u | head -50
  echo "build failed"; echo "tests: 0 passed, 1 failed"; exit 1
fi
./loom --help >/dev/null 2>&1 || { echo "loom CLI does not start"; echo "tests: 0 passed, 1 failed"; exit 1; }

# C# layout per .editorconfig (`dotnet format whitespace Loom.sln` fixes it). Python (black, flake8)
# and TypeScript (prettier) are checked by their SDKs' run-tests.sh below.
echo "== format (dotnet format whitespace --verify-no-changes)"
if dotnet format whitespace Loom.sln --verify-no-changes -v q >"$logs/format.log" 2>&1; then
  add 1
else
  head -20 "$logs/format.log"; suites_failed+=("dotnet-format"); add 0 1
fi

# --- .NET --------------------------------------------------------------------------------
for proj in tests/Loom.*.Tests/*.csproj; do
  name="$(basename "$(dirname "$proj")")"
  echo "== $name"
  dotnet test "$proj" -c Release --no-build -nologo --logger "console;verbosity=minimal" 2>&1 | tee "$logs/$name.log" | grep -vE "^\s*$"
  line="$(grep -E "^(Passed|Failed)!" "$logs/$name.log" | tail -1)"
  p=$(sed -nE 's/.*Passed: *([0-9]+).*/\1/p' <<<"$line"); f=$(sed -nE 's/.*Failed: *([0-9]+).*/\1/p' <<<"$line"); s=$(sed -nE 's/.*Skipped: *([0-9]+).*/\1/p' <<<"$line")
  if [ -z "$line" ]; then suites_failed+=("$name"); f=1; fi
  [ "${f:-0}" != 0 ] && suites_failed+=("$name")
  add "${p:-0}" "${f:-0}" "${s:-0}"
done

# --- Python and Node suites: interop with the official gRPC clients, then the SDKs, then each
# SDK installed from a copy outside the checkout (tests/install) ------------------------------
for runner in tests/interop/python/run.sh tests/interop/node/run.sh sdk-python/run-tests.sh sdk-js/run-tests.sh examples/trio/researcher/run-tests.sh examples/trio/planner/run-tests.sh tests/install/run.sh; do
  [ -f "$runner" ] || continue
  name="$(dirname "$runner")"
  echo "== $name"
  bash "$runner" 2>&1 | tee "$logs/$(echo "$name" | tr / _).log"
  rc=${PIPESTATUS[0]}
  log="$logs/$(echo "$name" | tr / _).log"
  read -r p f s < <(counts "$log")
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  [ "$rc" != 0 ] && suites_failed+=("$name")
  add "$p" "$f" "$s"
done

echo
[ ${#suites_failed[@]} -gt 0 ] && echo "failing suites: ${suites_failed[*]}"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ ${#suites_failed[@]} = 0 ]
