#!/usr/bin/env bash
# The one test command: installs what a fresh machine lacks, then runs every check and test.
# Usage: scripts/test.sh        (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dlq-healer-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi

step "test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
mkdir -p "$CARGO_TARGET_DIR"
cargo test --workspace 2>&1 | tee "$CARGO_TARGET_DIR/test-output.txt"

step "deployment checks: cfn-lint, checkov, template deployed into the emulator"
bash deploy/check.sh 2>&1 | tee "$CARGO_TARGET_DIR/deploy-check-output.txt"

passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$CARGO_TARGET_DIR/test-output.txt" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$CARGO_TARGET_DIR/test-output.txt" | awk '{s+=$6} END {print s+0}')
deploy_passed=$(grep -Eo '^[0-9]+ passed' "$CARGO_TARGET_DIR/deploy-check-output.txt" | tail -1 | awk '{print $1+0}')
echo
echo "all tests: $((passed + ${deploy_passed:-0})) passed, ${failed} failed"
