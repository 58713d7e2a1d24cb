#!/usr/bin/env bash
# One-command entry point for the benchmark (backup and verify sections): builds the release
# binaries (pre-deploy and the runner) and runs the runner. Arguments go to the runner (see
# benches/README.md), e.g.
#   benches/run.sh                # full run (D2 at 1.5M rows; long) -> benches/REPORT.md, report.json
#   benches/run.sh --quick        # smoke run with tiny datasets  -> benches/REPORT.quick.md, ...
#   benches/run.sh --only verify  # one section (verify|backup)    -> benches/REPORT.verify.md, ...
set -euo pipefail
cd "$(dirname "$0")/.."

baselines_only=false
for arg in "$@"; do
    [[ "$arg" == "--baselines-only" ]] && baselines_only=true
done

# hyperfine times the D0 fixed overhead (Debian package; installed here, not by
# scripts/setup.sh, because only this benchmark uses it).
if ! $baselines_only && ! command -v hyperfine >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y -qq hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
    else
        echo "benches/run.sh: hyperfine is missing: apt-get install hyperfine" >&2
        exit 1
    fi
fi

if $baselines_only; then
    # Debug mode: the tool is not run, so it need not build.
    cargo build --release -p benches
else
    cargo build --release -p bins -p benches
fi

target_dir="${CARGO_TARGET_DIR:-target}"
export BENCH_INVOCATION="benches/run.sh${*:+ $*}"
exec "$target_dir/release/bench-backup" "$@"
