#!/usr/bin/env bash
# Installs what the browser tests need (console/ and examples/browser/):
# Debian's chromium at /usr/bin/chromium (as root, when missing) and
# playwright-core, pinned by tools/browser/package-lock.json, with npm ci.
# Idempotent: a second run changes nothing and takes a second or two.
# Without root and without chromium it says so and leaves the tests to
# skip (or to fail, with JETWAY_REQUIRE_TOOLS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-browser: chromium, node or npm missing and not root with apt-get: install them (Debian: chromium nodejs npm)" >&2
    exit 1
  fi
  pkgs=()
  [ -x /usr/bin/chromium ] || pkgs+=(chromium)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  echo "install-browser: apt-get install ${pkgs[*]}"
  apt_install "${pkgs[@]}"
fi

# npm ci removes node_modules and installs again: skip it when what is
# there is what the lock file pins.
lock=tools/browser/package-lock.json
have=tools/browser/node_modules/.package-lock.json
if [ -f "$have" ] && cmp -s <(node -e 'const l=require(process.argv[1]);console.log(JSON.stringify(l.packages["node_modules/playwright-core"]))' "./$lock") \
  <(node -e 'const l=require(process.argv[1]);console.log(JSON.stringify(l.packages["node_modules/playwright-core"]))' "./$have"); then
  :
else
  (cd tools/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version), playwright-core $(node -p 'require("./tools/browser/node_modules/playwright-core/package.json").version')"
