#!/usr/bin/env bash
# Installs what leadflow's local run and tests need into the project: a virtualenv with the
# pinned emulator (moto) and template linter (cfn-lint). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! cmp -s requirements-dev.txt .venv/.installed 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  cp requirements-dev.txt .venv/.installed
fi
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
# Headless Chromium and its driver, for the browser test, and a Japanese font so pages and
# screenshots show Japanese (Debian's packages).
need=""
if ! command -v chromedriver >/dev/null && [ ! -x /usr/lib/chromium/chromedriver ]; then
  need="chromium chromium-driver"
fi
if command -v fc-list >/dev/null && [ -z "$(fc-list :lang=ja 2>/dev/null)" ] || ! command -v fc-list >/dev/null; then
  need="$need fonts-ipafont-gothic"
fi
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  else
    echo "note: install $need (Debian) for the browser test and Japanese text in screenshots" >&2
  fi
fi
