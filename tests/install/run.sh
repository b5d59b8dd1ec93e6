#!/usr/bin/env bash
# Install tests: each SDK is copied out of the checkout into a temporary folder, installed the way
# its doc says (docs/python.md, docs/typescript.md, docs/dotnet.md: "Install"), and the doc's first
# agent (the code block after its "first-agent" marker) runs from outside the checkout against a
# real bridge (`loom up` on free ports): it serves greeter.hello and calls it, printing "Hello, Ada!".
# Only the package registries of this machine are used (Debian's packages, npm, NuGet; no PyPI).
# The packages it built (wheel, npm tarball, .nupkg files) are left in .loom/install-test/.
# Usage: tests/install/run.sh [python] [ts] [dotnet]   (default: all three). Ends with "N passed, N failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
langs=("$@"); [ ${#langs[@]} -gt 0 ] || langs=(python ts dotnet)

# Debian's packages the Python route needs (PyPI is not reachable here); the log goes to .loom/.
need=()
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || need+=(python3-grpcio python3-protobuf)
/usr/bin/python3 -c 'import venv, ensurepip, setuptools, wheel' 2>/dev/null || need+=(python3-venv python3-setuptools python3-wheel)
/usr/bin/python3 -c 'import build' 2>/dev/null || need+=(python3-build)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (log: .loom/install-apt.log)"
  mkdir -p "$root/.loom"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } >"$root/.loom/install-apt.log" 2>&1 \
    || { tail -20 "$root/.loom/install-apt.log"; echo "install: 0 passed, 1 failed"; exit 1; }
fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/loom-install.XXXXXX")"
bridge_pid=""
keep="$root/.loom/install-test"
mkdir -p "$keep"
cleanup() {
  [ -n "$bridge_pid" ] && kill "$bridge_pid" 2>/dev/null && wait "$bridge_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# Copies checkout paths (files git knows, tracked or new; no build output) into a folder.
copy_out() {
  local dest="$1"; shift
  mkdir -p "$dest"
  if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$root" && git ls-files -z --cached --others --exclude-standard -- "$@" \
      | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -x -C "$dest"
  else
    (cd "$root" && tar --exclude=node_modules --exclude=dist --exclude=bin --exclude=obj --exclude=__pycache__ -cf - "$@") | tar -x -C "$dest"
  fi
}

# The fenced block after "<!-- first-agent" in a doc.
first_agent() {
  awk '/<!-- first-agent/ { armed = 1; next } armed && /^```/ { if (inside) exit; inside = 1; next } inside { print }' "$root/$1"
}

# --- a bridge ---------------------------------------------------------------------------------
cli="$root/bridge/Loom.Cli/bin/Release/net10.0/loom.dll"
[ -f "$cli" ] || "$root/loom" --help >/dev/null || { echo "install: the loom CLI does not build"; echo "install: 0 passed, 1 failed"; exit 1; }
dotnet "$cli" up --grpc-port 0 --http-port 0 --log-level Warning >"$tmp/bridge.log" 2>&1 &
bridge_pid=$!
for _ in $(seq 1 120); do
  grep -q "listening grpc=" "$tmp/bridge.log" && break
  kill -0 "$bridge_pid" 2>/dev/null || break
  sleep 0.5
done
LOOM_URL="$(sed -nE 's/.*listening grpc=(http:[^ ]+).*/\1/p' "$tmp/bridge.log" | head -1)"
if [ -z "$LOOM_URL" ]; then
  echo "install: the bridge did not start:"; cat "$tmp/bridge.log"; echo "install: 0 passed, 1 failed"; exit 1
fi
export LOOM_URL
echo "bridge at $LOOM_URL"

# --- Python: venv with Debian's grpcio/protobuf, pip install --no-build-isolation; a wheel -----
test_python() {
  local py=/usr/bin/python3
  "$py" -c 'import grpc, google.protobuf' || { echo "needs Debian's python3-grpcio and python3-protobuf"; return 1; }
  copy_out "$tmp/py" sdk-python || return 1
  cd "$tmp/py" || return 1
  # The documented offline route; PIP_NO_INDEX makes a missing dependency fail at once, not reach for PyPI.
  "$py" -m venv --system-site-packages .venv || return 1
  PIP_NO_INDEX=1 .venv/bin/pip install --no-build-isolation ./sdk-python || return 1
  mkdir app && cd app || return 1
  first_agent docs/python.md >hello.py
  local where
  where="$(env -u PYTHONPATH ../.venv/bin/python -c 'import loom; print(loom.__file__)')" || return 1
  case "$where" in "$tmp/py/.venv/"*) ;; *) echo "import loom found $where, not the installed package"; return 1 ;; esac
  local out; out="$(env -u PYTHONPATH timeout 60 ../.venv/bin/python hello.py)" || { echo "$out"; return 1; }
  echo "hello.py: $out"; [ "$out" = "Hello, Ada!" ] || return 1
  # The wheel (CI's build output): python -m build (Debian's python3-build) or pip wheel.
  cd "$tmp/py" || return 1
  if "$py" -c 'import build' 2>/dev/null; then
    "$py" -m build --no-isolation --wheel --outdir wheels ./sdk-python >wheel.log 2>&1 || { cat wheel.log; return 1; }
  else
    PIP_NO_INDEX=1 "$py" -m pip wheel --no-build-isolation --no-deps --wheel-dir wheels ./sdk-python >wheel.log 2>&1 || { cat wheel.log; return 1; }
  fi
  "$py" - wheels/loom_agents-*.whl <<'PY' || return 1
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"loom/__init__.py", "loom/py.typed", "loom/_proto/bridge_pb2.py", "loom/_proto/bridge_pb2.pyi", "loom/_proto/bridge_pb2_grpc.py", "loom/_proto/collaboration_pb2.py"}
missing = need - names
print("wheel:", sys.argv[1].rsplit("/", 1)[-1], "missing " + ", ".join(sorted(missing)) if missing else "complete")
sys.exit(1 if missing else 0)
PY
  cp wheels/loom_agents-*.whl "$keep/"
}

# --- TypeScript: npm pack -> install the tarball (tsc and tsx); npm install <folder> ------------
test_ts() {
  local npmq=(--no-audit --no-fund --loglevel=error)
  copy_out "$tmp/ts/a" sdk-js || return 1
  copy_out "$tmp/ts/b" sdk-js || return 1
  # 1. The tarball, packed from a fresh copy (prepare installs the build tools and builds dist/).
  (cd "$tmp/ts/a/sdk-js" && npm pack "${npmq[@]}" >../pack.log 2>&1) || { cat "$tmp/ts/a/pack.log"; return 1; }
  local tgz; tgz="$(ls "$tmp"/ts/a/sdk-js/loom-agents-sdk-*.tgz)" || return 1
  tar -tzf "$tgz" >"$tmp/ts/tarball.txt" && grep -qx "package/dist/mod.js" "$tmp/ts/tarball.txt" || { echo "the tarball has no dist/mod.js"; return 1; }
  cp "$tgz" "$keep/"
  mkdir -p "$tmp/ts/app" && cd "$tmp/ts/app" || return 1
  npm init -y >/dev/null && npm pkg set type=module || return 1
  npm install "${npmq[@]}" "$tgz" || return 1
  npm install "${npmq[@]}" --save-dev typescript @types/node tsx || return 1
  first_agent docs/typescript.md >hello.ts
  npx tsc --module nodenext --target es2022 --skipLibCheck --outDir dist hello.ts || return 1
  local out; out="$(timeout 60 node dist/hello.js)" || { echo "$out"; return 1; }
  echo "tsc + node dist/hello.js: $out"; [ "$out" = "Hello, Ada!" ] || return 1
  out="$(timeout 60 npx tsx hello.ts)" || { echo "$out"; return 1; }
  echo "npx tsx hello.ts: $out"; [ "$out" = "Hello, Ada!" ] || return 1
  # 2. npm install <folder> of another fresh copy: npm links it and runs its prepare script.
  mkdir -p "$tmp/ts/app2" && cd "$tmp/ts/app2" || return 1
  npm init -y >/dev/null && npm pkg set type=module || return 1
  npm install "${npmq[@]}" "$tmp/ts/b/sdk-js" 2>&1 | grep -v '^npm warn install-scripts' || true
  [ -f "$tmp/ts/b/sdk-js/dist/mod.js" ] || { echo "npm install <folder> did not build dist/"; return 1; }
  cp ../app/dist/hello.js . || return 1
  out="$(timeout 60 node hello.js)" || { echo "$out"; return 1; }
  echo "npm install <folder>, node hello.js: $out"; [ "$out" = "Hello, Ada!" ] || return 1
}

# --- .NET: dotnet pack -> a local folder feed -> dotnet add package in a new console project ----
test_dotnet() {
  copy_out "$tmp/dn/loom" proto core sdk-dotnet Directory.Build.props Directory.Packages.props global.json Loom.sln .editorconfig || return 1
  dotnet pack "$tmp/dn/loom/sdk-dotnet/Loom.Sdk.slnf" -c Release -o "$tmp/dn/loom-packages" -nologo -v quiet >"$tmp/dn/pack.log" 2>&1 </dev/null \
    || { tail -30 "$tmp/dn/pack.log"; return 1; }
  ls "$tmp"/dn/loom-packages/Loom.{Sdk,Core,Protocol}.0.1.0.nupkg >/dev/null || return 1
  cp "$tmp"/dn/loom-packages/*.nupkg "$keep/"
  # A package cache of its own: the machine's may hold an older Loom.Sdk 0.1.0.
  export NUGET_PACKAGES="$tmp/dn/nuget-packages"
  cd "$tmp/dn" && dotnet new console -n Hello -o Hello >/dev/null </dev/null || return 1
  cd Hello || return 1
  dotnet new nugetconfig >/dev/null </dev/null || return 1
  dotnet nuget add source ../loom-packages --name loom-local --configfile nuget.config >/dev/null || return 1
  dotnet add package Loom.Sdk --version 0.1.0 >add.log 2>&1 </dev/null || { tail -20 add.log; return 1; }
  first_agent docs/dotnet.md >Program.cs
  dotnet build -nologo -v quiet >build.log 2>&1 </dev/null || { grep -E "error|warn" build.log | head -20; return 1; }
  local out; out="$(timeout 60 dotnet run --no-build </dev/null)" || { echo "$out"; return 1; }
  echo "dotnet run: $out"; [ "$out" = "Hello, Ada!" ] || return 1
}

passed=0; failed=0
for lang in "${langs[@]}"; do
  echo "== install: $lang"
  start=$SECONDS
  if (set -o pipefail; "test_$lang") >"$tmp/$lang.log" 2>&1; then
    passed=$((passed + 1)); sed 's/^/   /' "$tmp/$lang.log" | grep -E "Hello|wheel:" ; echo "ok $lang ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); sed 's/^/   /' "$tmp/$lang.log" | tail -40; echo "FAIL $lang ($((SECONDS - start)) s)"
  fi
done
echo "install: $passed passed, $failed failed"
[ "$failed" = 0 ]
