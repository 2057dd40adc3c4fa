#!/usr/bin/env bash
# Build the three Lambda bootstraps (healer, consumer, producer) as deployment zips:
#   target/lambda/<name>/bootstrap.zip
# Needs cargo-lambda (`pip install cargo-lambda`, which brings zig for cross-linking).
# Usage: scripts/build-lambdas.sh [--arm64]   (x86_64 by default)
# Profile: release-lambda (workspace Cargo.toml: fat LTO, one codegen unit, opt-level "s",
# stripped), for a smaller bootstrap and a shorter cold start; the first build of it takes many
# minutes. Cold start and size: `cargo run -p dlq-healer-lambda --example coldstart`.
# (`sam build` cannot select it: its rust-cargolambda method always passes --release, which
# cargo-lambda refuses beside --profile. There, override the release profile from the environment:
#   CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
#   CARGO_PROFILE_RELEASE_OPT_LEVEL=s sam build )
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-lambda >/dev/null 2>&1; then
  echo "cargo-lambda is not installed: pip install cargo-lambda" >&2
  exit 1
fi

arch=()
if [[ "${1:-}" == "--arm64" ]]; then
  arch=(--arm64)
fi

cargo lambda build --profile release-lambda --output-format zip "${arch[@]}" \
  -p dlq-healer-lambda --bin healer --bin consumer --bin producer

target_dir="${CARGO_TARGET_DIR:-target}"
for name in healer consumer producer; do
  ls -l "$target_dir/lambda/$name/bootstrap.zip"
done
