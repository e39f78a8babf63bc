#!/usr/bin/env bash
# Install headless Chromium (Debian's `chromium`) for tests/test_report.py, which loads the HTML
# report in it and checks console errors, the DOM and the images. Idempotent: does nothing when
# /usr/bin/chromium already runs. Needs root (CI runs scripts/ci/*.sh as root).
set -euo pipefail

works() { [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; }

if ! works || ! fc-list 2>/dev/null | grep -qi dejavu; then
  if [ "$(id -u)" != 0 ]; then
    echo "chromium: must run as root to install Debian's chromium (or run: sudo apt-get install chromium)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  pkgs="chromium fonts-dejavu-core"
  apt-get install -y -q $pkgs >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q $pkgs >/dev/null; }
fi

# Smoke test: the headless browser starts and renders a page (what the test needs).
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
out=$(timeout 60 /usr/bin/chromium --headless --no-sandbox --disable-gpu --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$profile" --dump-dom 'data:text/html,<p id=ok>chromium-ok</p>' 2>/dev/null || true)
if ! grep -q chromium-ok <<<"$out"; then
  echo "chromium: installed but headless rendering failed" >&2
  exit 1
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1) ready"
