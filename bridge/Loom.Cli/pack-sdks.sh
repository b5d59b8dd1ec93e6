#!/usr/bin/env bash
# Packs the SDKs into one folder, the way they would be published:
#   python  loom_agents-VERSION-py3-none-any.whl    (python3 -m build --no-isolation --wheel)
#   ts      loom-agents-sdk-VERSION.tgz             (npm pack: ships the compiled dist/)
#   dotnet  Loom.Sdk, Loom.Core, Loom.Protocol .nupkg (dotnet pack sdk-dotnet/Loom.Sdk.slnf)
# The folder is then a local package source: pip --find-links, an npm file: dependency, a NuGet
# folder feed. `loom new` uses it (LOOM_PACKAGES, default .loom/packages) and calls this script.
#
# Usage: loom pack [--out DIR] [--release] [python] [ts] [dotnet]   (default: all three)
#   --out DIR   where the packages go (default: .loom/packages in this checkout)
#   --release   .NET packages keep the version of the sources (0.1.0). Without it they are
#               0.1.0-dev.gHASH, HASH naming the sources, because NuGet caches a package by id and
#               version for good (~/.nuget/packages): a rebuilt 0.1.0 would never reach a project
#               that already restored 0.1.0. Python and npm packages always keep the source version.
# A package whose sources did not change since the last run into the same folder is not rebuilt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/.loom/packages"
release=0
langs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] && [ -n "$2" ] || { echo "loom pack: --out needs a value: a directory path (see 'loom pack --help')" >&2; exit 2; }
      out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; [ -n "$out" ] || { echo "loom pack: --out needs a value: a directory path (see 'loom pack --help')" >&2; exit 2; }; shift ;;
    --release) release=1; shift ;;
    python|ts|dotnet) langs+=("$1"); shift ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "loom pack: unknown option '$1' (expected --out DIR, --release; see 'loom pack --help')" >&2; exit 2 ;;
    *) echo "loom pack: LANGUAGE: expected one of python, ts, dotnet, got '$1'" >&2; exit 2 ;;
  esac
done
[ ${#langs[@]} -gt 0 ] || langs=(python ts dotnet)
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
log="$out/.pack.log"

# A hash of the files a package is built from (paths and contents), bin/obj/node_modules/dist aside.
sources_hash() {
  (cd "$root" && find "$@" -type f \
      -not -path '*/bin/*' -not -path '*/obj/*' -not -path '*/node_modules/*' -not -path '*/dist/*' \
      -not -path '*/build/*' -not -path '*/__pycache__/*' -not -path '*/.mypy_cache/*' -not -name '*.egg-info' \
      -not -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12
}

# up_to_date NAME HASH FILE-GLOB: the last run into $out packed NAME from the same sources.
up_to_date() {
  [ -f "$out/.$1.sources" ] && [ "$(cat "$out/.$1.sources")" = "$2" ] && compgen -G "$out/$3" >/dev/null
}

fail() { echo "pack-sdks: $1 failed; its output:" >&2; tail -40 "$log" >&2; exit 1; }

pack_python() {
  local hash; hash="$(sources_hash sdk-python/pyproject.toml sdk-python/README.md sdk-python/src)"
  if up_to_date python "$hash" 'loom_agents-*.whl'; then echo "pack-sdks: python wheel up to date"; return; fi
  local py=/usr/bin/python3; [ -x "$py" ] || py=python3
  local tmp; tmp="$(mktemp -d)"
  # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
  (cd "$root/sdk-python" && cp -r pyproject.toml README.md src "$tmp/")
  rm -f "$out"/loom_agents-*.whl
  if "$py" -c 'import build' 2>/dev/null; then
    "$py" -m build --no-isolation --wheel --outdir "$out" "$tmp" >"$log" 2>&1 || { rm -rf "$tmp"; fail "python -m build"; }
  else
    "$py" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$out" "$tmp" >"$log" 2>&1 || { rm -rf "$tmp"; fail "pip wheel"; }
  fi
  rm -rf "$tmp"
  echo "$hash" >"$out/.python.sources"
  echo "pack-sdks: $(cd "$out" && ls loom_agents-*.whl)"
}

pack_ts() {
  local hash; hash="$(sources_hash sdk-js/package.json sdk-js/package-lock.json sdk-js/README.md sdk-js/tsconfig.json sdk-js/tsconfig.base.json sdk-js/scripts sdk-js/src)"
  if up_to_date ts "$hash" 'loom-agents-sdk-*.tgz'; then echo "pack-sdks: npm tarball up to date"; return; fi
  # The build tools come from the committed lock file; npm pack runs the package's prepare
  # script (a clean build of dist/) in a copy, so the checkout's own dist/ is left alone.
  if [ ! -d "$root/sdk-js/node_modules" ] || [ "$root/sdk-js/package-lock.json" -nt "$root/sdk-js/node_modules/.package-lock.json" ]; then
    (cd "$root/sdk-js" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >"$log" 2>&1 || fail "npm ci in sdk-js"
  fi
  local tmp; tmp="$(mktemp -d)"
  (cd "$root/sdk-js" && cp -r package.json package-lock.json README.md tsconfig.json tsconfig.base.json scripts src "$tmp/")
  ln -s "$root/sdk-js/node_modules" "$tmp/node_modules"
  rm -f "$out"/loom-agents-sdk-*.tgz
  (cd "$tmp" && npm pack --pack-destination "$out" --loglevel=error) >"$log" 2>&1 || { rm -rf "$tmp"; fail "npm pack"; }
  rm -rf "$tmp"
  echo "$hash" >"$out/.ts.sources"
  echo "pack-sdks: $(cd "$out" && ls loom-agents-sdk-*.tgz)"
}

pack_dotnet() {
  local hash; hash="$(sources_hash proto core sdk-dotnet Directory.Build.props Directory.Packages.props global.json)"
  local version=""
  if [ "$release" = 0 ]; then
    version="$(sed -nE 's|.*<Version>([^<]+)</Version>.*|\1|p' "$root/Directory.Build.props" | head -1)-dev.g$hash"
  fi
  if up_to_date dotnet "$hash.$release" 'Loom.Sdk.*.nupkg'; then echo "pack-sdks: .NET packages up to date"; return; fi
  # Build as the solution does (no version override, so nothing is rebuilt twice), then pack the
  # built assemblies under the package version.
  dotnet build "$root/sdk-dotnet/Loom.Sdk.slnf" -c Release -nologo -v quiet >"$log" 2>&1 </dev/null || fail "dotnet build"
  rm -f "$out"/Loom.Sdk.*.nupkg "$out"/Loom.Core.*.nupkg "$out"/Loom.Protocol.*.nupkg
  dotnet pack "$root/sdk-dotnet/Loom.Sdk.slnf" -c Release --no-build -o "$out" -nologo -v quiet \
    ${version:+"-p:PackageVersion=$version"} >"$log" 2>&1 </dev/null || fail "dotnet pack"
  echo "$hash.$release" >"$out/.dotnet.sources"
  echo "pack-sdks: $(cd "$out" && ls Loom.*.nupkg | tr '\n' ' ')"
}

for lang in "${langs[@]}"; do
  "pack_$lang"
done
