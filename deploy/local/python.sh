#!/usr/bin/env bash
# Makes sure the Python environment of the SDK tests (tests/sdk) exists: python3 with venv
# (Debian's python3-venv is installed when missing), a venv at .venv-sdk/ in the repository
# root, and tests/sdk/requirements.txt installed in it. Skips the install when the
# requirements have not changed since the last one (a stamp holds their hash).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv="$root/.venv-sdk"
requirements="$root/tests/sdk/requirements.txt"
stamp="$venv/.requirements.sha256"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

venv_works() {
  local probe
  probe=$(mktemp -d)
  if python3 -m venv "$probe/v" >/dev/null 2>&1 && [ -x "$probe/v/bin/python" ] \
    && "$probe/v/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$probe"
    return 0
  fi
  rm -rf "$probe"
  return 1
}

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && "$venv/bin/python" -c 'import importlib.metadata as m; [m.version(p) for p in ("mixpeek", "pytest", "schemathesis")]' >/dev/null 2>&1; then
  echo "Python SDK test environment is up to date ($venv)"
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1 || ! venv_works; then
  version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  as_root apt-get update -qq
  packages=(python3 python3-venv python3-pip)
  if [ -n "$version" ] && apt-cache show "python$version-venv" >/dev/null 2>&1; then
    packages+=("python$version-venv")
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  venv_works || { echo "python3 -m venv still does not work" >&2; exit 1; }
fi

if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
echo "$want" >"$stamp"
echo "Python SDK test environment is ready ($venv)"
