#!/usr/bin/env bash
# The README's second command: every check and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== cfn-lint template.yaml"
.venv/bin/cfn-lint template.yaml
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace
