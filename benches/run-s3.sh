#!/usr/bin/env bash
# One-command entry point for the S3 benchmark (issue 3): builds the release binaries
# (pre-deploy and the runner) and runs it. Arguments go to the runner (see benches/README.md):
#   benches/run-s3.sh                 # full run -> benches/REPORT.s3.md, report.s3.json
#   benches/run-s3.sh --quick         # tiny datasets -> benches/REPORT.s3-quick.md, ...
#   benches/run-s3.sh --only bucket   # one section (store|bucket)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p bins -p benches
target_dir="${CARGO_TARGET_DIR:-target}"
export BENCH_INVOCATION="benches/run-s3.sh${*:+ $*}"
exec "$target_dir/release/bench-s3" "$@"
