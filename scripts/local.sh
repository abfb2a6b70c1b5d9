#!/usr/bin/env bash
# The README's first command: set up, build every function's binary, then run leadflow locally:
# the emulator, resources from template.yaml, demo configuration, and the real functions under
# the Lambda Runtime API emulator behind http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bins -p intake -p scoring -p process -p leadflow-local
exec "${CARGO_TARGET_DIR:-target}/debug/leadflow-local" "$@"
