#!/usr/bin/env bash
# A parallel dump (issue 17, item 4): `[postgres] dump_jobs = N` against one stream, side by
# side on the same database, alternating every round (so a slow phase of the shared machine hits
# all commands), medians of wall time and the tool's peak RSS. Prints a Markdown report (for
# benches/REPORT.parallel.md) on stdout.
#
#   benches/run-parallel.sh URL [ROUNDS] [JOBS]
#
# URL: a PostgreSQL database loaded with the dataset (D2: psql -v rows=1500000 -c
# "select setseed(0.5)" -f shared/data/mixed_dataset.sql). TOOL: the pre-deploy binary (default
# target/release/pre-deploy). JOBS: the workers of the parallel runs (default 2).
#
# Per round: the floors (`pg_dump -Fc -Z0` to /dev/null, `pg_dump -Fd -jN -Z0` to a directory),
# `pg_dump -Fc` (what the default gate is measured against), and the tool's backup at
# `--verify-level checksum` and with its default level 4, each with one stream and with N jobs.
set -euo pipefail
url=${1:?usage: benches/run-parallel.sh URL [ROUNDS] [JOBS]}
rounds=${2:-5}
jobs=${3:-2}
tool=$(realpath "${TOOL:-target/release/pre-deploy}")
[ -x "$tool" ] || { echo "no $tool: cargo build --release -p bins" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/one" "$work/par"
printf '[postgres]\ndump_jobs = 1\n' > "$work/one/predeploy.toml"
printf '[postgres]\ndump_jobs = %s\n' "$jobs" > "$work/par/predeploy.toml"

timed() { # name cmd…: appends "wall_s max_rss_kib" to $work/NAME.txt
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" > "$work/last.out" 2> "$work/last.err" \
    || { echo "$name failed:" >&2; cat "$work/last.err" >&2; exit 1; }
  cat "$work/time.out" >> "$work/$name.txt"
}
tool_backup() { # dir level: the command line of a backup run in $work/DIR (its predeploy.toml)
  echo env -C "$work/$1" "$tool" --store "$work/$1/store" --source "db=$url" backup -q --json --verify-level "$2"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$2" '{print $c}' "$work/$1.txt" | median; }

names=(floor_one floor_par pg_dump_fc tool_one tool_par default_one default_par)
for round in $(seq "$rounds"); do
  echo "round $round/$rounds" >&2
  timed floor_one pg_dump -Fc -Z0 --no-sync -f /dev/null "$url"
  timed tool_par $(tool_backup par checksum)
  timed default_one $(tool_backup one restore)
  timed floor_par pg_dump -Fd -Z0 --no-sync -j "$jobs" -f "$work/fd" "$url"
  rm -rf "$work/fd"
  timed tool_one $(tool_backup one checksum)
  timed default_par $(tool_backup par restore)
  timed pg_dump_fc sh -c "pg_dump -Fc '$url' > /dev/null"
  rm -rf "$work/one/store" "$work/par/store"
done

declare -A wall rss
for n in "${names[@]}"; do
  wall[$n]=$(col "$n" 1)
  rss[$n]=$(col "$n" 2)
done
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }
mib() { echo "scale=1; $1 / 1024" | bc | sed 's/^\./0./'; }
tables=$(psql -X -qAt "$url" -c "SELECT count(*) || ' tables; largest ' || string_agg(rel, ', ') FROM (SELECT c.relname || ' ' || pg_size_pretty(pg_table_size(c.oid)) AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY pg_table_size(c.oid) DESC LIMIT 3) t")
total=$(psql -X -qAt "$url" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")

cat <<EOF
## Parallel dump: $jobs jobs against one stream ($(date -u +%Y-%m-%d), nproc $(nproc))

Database: $total ($tables). $rounds rounds, alternating; medians of wall time; the tool's peak
RSS (GNU time, the pre-deploy process; pg_dump and pg_restore run as their own processes).

| command | wall s | peak RSS MiB |
|---|---:|---:|
| \`pg_dump -Fc -Z0 -f /dev/null\` (floor, one stream) | ${wall[floor_one]} | |
| \`pg_dump -Fd -Z0 -j $jobs\` (floor, $jobs workers) | ${wall[floor_par]} | |
| \`pg_dump -Fc > /dev/null\` (bare default) | ${wall[pg_dump_fc]} | |
| backup, \`--verify-level checksum\`, one stream | ${wall[tool_one]} | $(mib "${rss[tool_one]}") |
| backup, \`--verify-level checksum\`, \`dump_jobs = $jobs\` | ${wall[tool_par]} | $(mib "${rss[tool_par]}") |
| backup with level 4 (default), one stream | ${wall[default_one]} | $(mib "${rss[default_one]}") |
| backup with level 4 (default), \`dump_jobs = $jobs\` | ${wall[default_par]} | $(mib "${rss[default_par]}") |

| ratio | value |
|---|---:|
| pg_dump's own gain: floor with $jobs workers / one stream | $(ratio "${wall[floor_par]}" "${wall[floor_one]}") |
| backup: \`dump_jobs = $jobs\` / one stream | $(ratio "${wall[tool_par]}" "${wall[tool_one]}") |
| backup with $jobs jobs / its floor (\`pg_dump -Fd -j $jobs\`) | $(ratio "${wall[tool_par]}" "${wall[floor_par]}") |
| default gate: \`dump_jobs = $jobs\` / one stream | $(ratio "${wall[default_par]}" "${wall[default_one]}") |
| default gate with $jobs jobs / bare \`pg_dump -Fc\` (item 1's target: ≤ 0.6) | $(ratio "${wall[default_par]}" "${wall[pg_dump_fc]}") |
| default gate, one stream / bare \`pg_dump -Fc\` | $(ratio "${wall[default_one]}" "${wall[pg_dump_fc]}") |

Raw rounds (wall s, peak RSS KiB):

\`\`\`text
$(for n in "${names[@]}"; do printf '%-12s %s\n' "$n" "$(awk '{printf "%s/%s  ", $1, $2}' "$work/$n.txt")"; done)
\`\`\`
EOF
