#!/usr/bin/env bash
# The whole test suite. Installs what it needs, runs every check, and fails on
# the first problem. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export RUSTUP_TOOLCHAIN=stable
# Builds are reused across runs and clones.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s ===\n' "$*"; }

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked

step "cargo test"
cargo test --workspace --locked --no-fail-fast

echo
echo "scripts/test.sh: all checks passed"
