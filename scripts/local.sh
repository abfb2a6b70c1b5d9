#!/usr/bin/env bash
# The README's first command: set up, then run leadflow locally (emulator, resources from
# template.yaml, demo configuration, the intake API and demo page on http://127.0.0.1:3000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --quiet -p leadflow-local -- "$@"
