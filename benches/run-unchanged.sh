#!/usr/bin/env bash
# The gate re-run on a database nobody touched (issue 17, item 2): the wall time of
# `pre-deploy run -- true` when it deploys on the newest restore-verified backup instead of
# taking a new one, side by side with a bare `pg_dump -Fc > /dev/null` of the same database (what
# the seed scripts pay on every run) and with `psql -c 'SELECT 1'` (one connection: the floor of
# anything that asks the server). Alternating (run, pg_dump, psql, run, …) so a slow phase of the
# shared machine hits all three; medians. Target: the re-run < 1 s. Prints a Markdown line for
# benches/REPORT.unchanged.md (the last column: the first, fresh run, backup and level 4, once).
#
#   benches/run-unchanged.sh URL [ROUNDS]
#
# URL: a PostgreSQL database loaded with the dataset (e.g. D2: psql -v rows=1500000 -c
# "select setseed(0.5)" -f shared/data/mixed_dataset.sql), on a cluster nothing else writes to
# while this runs (any write defeats the proof, as it should). TOOL: the pre-deploy binary
# (default target/release/pre-deploy). OUT_JSON: also write the medians there as JSON (for
# benches/run-all.sh's summary).
set -euo pipefail
url=${1:?usage: benches/run-unchanged.sh URL [ROUNDS]}
rounds=${2:-5}
tool=$(realpath "${TOOL:-target/release/pre-deploy}")
[ -x "$tool" ] || { echo "no $tool: cargo build --release -p bins" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
gate() { # $@: extra flags; the run's --json on stdout
  "$tool" --store "$work/store" --source "db=$url" run --json -q "$@" -- true
}
seconds() { # runs "$@" and prints its wall time
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$work/last.out"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
reused() { grep -q '"unchanged": *"' "$work/last.out"; }

# Settle the cluster (no dead pg_statistic rows for the first reads to prune, a checkpoint, 30 s
# for the background writer's last log record), then take backups until one is reusable: the
# first read after a load may still write (hint bits on clusters with data checksums).
psql -q "$url" -c 'VACUUM ANALYZE' -c 'VACUUM' -c 'CHECKPOINT'
sleep 30
for attempt in 1 2 3; do
  first=$(seconds gate --fresh)
  seconds gate > /dev/null
  if reused; then break; fi
  [ "$attempt" = 3 ] && { echo "no run reused a backup: $(cat "$work/last.out")" >&2; exit 1; }
  sleep 30
done

: > "$work/run.txt"; : > "$work/dump.txt"; : > "$work/psql.txt"
for _ in $(seq "$rounds"); do
  seconds gate >> "$work/run.txt"
  reused || { echo "a re-run took a new backup: $(cat "$work/last.out")" >&2; exit 1; }
  seconds sh -c "pg_dump -Fc '$url' > /dev/null" >> "$work/dump.txt"
  seconds psql -qAt "$url" -c 'SELECT 1' >> "$work/psql.txt"
done
r=$(median < "$work/run.txt"); d=$(median < "$work/dump.txt"); p=$(median < "$work/psql.txt")
f3() { printf '%.3f' "$1"; }
echo "run:     $(tr '\n' ' ' < "$work/run.txt")" >&2
echo "pg_dump: $(tr '\n' ' ' < "$work/dump.txt")" >&2
echo "psql:    $(tr '\n' ' ' < "$work/psql.txt")" >&2
echo "| $(date -u +%Y-%m-%d) | $(nproc) cores | ${rounds} rounds | **$(f3 "$r") s** | $(f3 "$d") s | **$(f3 "$(echo "scale=6; $r / $d" | bc)")×** | $(f3 "$p") s | $(f3 "$(echo "scale=6; $r / $p" | bc)")× | $(f3 "$first") s |"
if [ -n "${OUT_JSON:-}" ]; then
  printf '{"date": "%s", "nproc": %s, "rounds": %s, "run_s": %s, "pg_dump_s": %s, "psql_s": %s, "first_s": %s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$rounds" "$(f3 "$r")" "$(f3 "$d")" "$(f3 "$p")" "$(f3 "$first")" > "$OUT_JSON"
fi
