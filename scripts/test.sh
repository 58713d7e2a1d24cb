#!/usr/bin/env bash
# The test command: installs prerequisites, then format check, clippy, docs, and every test of
# the workspace (unit and integration, against real PostgreSQL servers the harness starts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked --quiet
echo "== cargo test"
cargo test --workspace --all-features --locked
echo "== fuzz (a short run of every target; scripts/fuzz.sh for longer ones)"
FUZZ_SECONDS=${FUZZ_SECONDS:-15} scripts/fuzz.sh
