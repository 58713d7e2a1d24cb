#!/usr/bin/env bash
# Encryption's cost on a backup (issue 16): `pre-deploy backup --verify-level checksum` of the
# same database with and without `[encryption] recipients`, alternating (plain, encrypted,
# plain, …) so a slow phase of the shared machine hits both; median wall time of each and the
# ratio (target ≤ 1.10×). Prints a Markdown line for benches/REPORT.encryption.md.
#
#   benches/run-encryption.sh URL [ROUNDS]
#
# URL: a PostgreSQL database loaded with the dataset (e.g. D2: psql -v rows=1500000 -c
# "select setseed(0.5)" -f shared/data/mixed_dataset.sql). TOOL: the pre-deploy binary
# (default target/release/pre-deploy).
set -euo pipefail
url=${1:?usage: benches/run-encryption.sh URL [ROUNDS]}
rounds=${2:-5}
tool=${TOOL:-target/release/pre-deploy}
[ -x "$tool" ] || { echo "no $tool: cargo build --release -p bins" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A public recipient is all a backup needs; the matching identity is not used here.
cat > "$work/enc.toml" <<'EOF'
[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
EOF
: > "$work/plain.toml"
one() { # one timed backup: $1 = plain|enc; prints seconds
  rm -rf "$work/store-$1"
  local t0 t1
  t0=$(date +%s.%N)
  "$tool" --config "$work/$1.toml" --store "$work/store-$1" --source "db=$url" \
    backup --verify-level checksum --json -q > "$work/out-$1.json"
  t1=$(date +%s.%N)
  grep -q '"passed":true\|"passed": true' "$work/out-$1.json" || { echo "backup $1 failed" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
one plain > /dev/null; one enc > /dev/null   # warm-up
: > "$work/plain.txt"; : > "$work/enc.txt"
for _ in $(seq "$rounds"); do
  one plain >> "$work/plain.txt"
  one enc >> "$work/enc.txt"
done
p=$(median < "$work/plain.txt"); e=$(median < "$work/enc.txt")
size_p=$(du -sb "$work/store-plain" | cut -f1); size_e=$(du -sb "$work/store-enc" | cut -f1)
ratio=$(echo "scale=3; $e / $p" | bc)
echo "plain: $(tr '\n' ' ' < "$work/plain.txt")" >&2
echo "enc:   $(tr '\n' ' ' < "$work/enc.txt")" >&2
echo "| $(date -u +%Y-%m-%d) | $(nproc) cores | ${rounds} rounds | plain ${p} s | encrypted ${e} s | **${ratio}×** | stored ${size_p} → ${size_e} bytes |"
