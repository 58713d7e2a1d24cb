#!/usr/bin/env bash
# One-command entry point for the MySQL/MariaDB benchmark (issue 12): builds the release
# binaries (pre-deploy and the runner) and runs it. Arguments go to the runner (see
# benches/README.md):
#   benches/run-mysql.sh              # full run -> benches/REPORT.mysql.md, report.mysql.json
#   benches/run-mysql.sh --quick      # tiny datasets -> benches/REPORT.mysql-quick.md, ...
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p bins -p benches
target_dir="${CARGO_TARGET_DIR:-target}"
export BENCH_INVOCATION="benches/run-mysql.sh${*:+ $*}"
exec "$target_dir/release/bench-mysql" "$@"
