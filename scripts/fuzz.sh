#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of every parser of stored or user input:
# manifests, verification records, lock leases, bucket index lines, ids, digests, schema
# listings (stored_records); source, store and bucket URLs and the whole settings resolution of
# --source/--store (urls); the config file, levels, durations, retention rules and time zones
# (config_and_rules); stored MySQL dumps through the level-3 scanner and the replay filter
# (dump_streams). A crash is a failure: its input is saved under fuzz/artifacts/TARGET/.
#   scripts/fuzz.sh              # every target for FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=15 scripts/fuzz.sh urls
# cargo fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(stored_records urls config_and_rules dump_streams)
cargo fuzz build -O
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  out=$(cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 2>&1) || {
    echo "$out" | tail -40
    echo "fuzz: $t crashed; the input is under fuzz/artifacts/$t/" >&2
    exit 1
  }
  echo "fuzz: $t: $(echo "$out" | grep -o 'Done [0-9]* runs in [0-9]* second(s)' | tail -1), corpus $(ls "corpus/$t" | wc -l) inputs"
done
