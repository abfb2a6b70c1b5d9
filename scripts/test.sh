#!/usr/bin/env bash
# The README's second command: every check and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== cfn-lint template.yaml infra/events/webhook.yaml"
.venv/bin/cfn-lint template.yaml infra/events/webhook.yaml
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo build --bins (the functions' binaries, for the runtime emulator tests)"
cargo build --quiet --bins --workspace
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line over every test binary, so the total is plain to read.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
