#!/usr/bin/env bash
# Every speed target of issue 17 in one run, then one table of them all in benches/REPORT.md:
#   1. benches/run.sh            backup and verify sections (D0, D2, D2-half) -> REPORT.md, report.json
#   2. benches/run-s3.sh         S3 store and bucket sources on Garage       -> REPORT.s3.md, report.s3.json
#   3. benches/run-unchanged.sh  the gate re-run on unchanged D2, on a throwaway PostgreSQL 15
#                                cluster started here                         -> report.unchanged.json
#   4. bench-summary             the table "Issue 17: every target, one run" appended to REPORT.md
# Each step runs 5 counted rounds and reports medians; the machine's nproc is recorded. About
# 30 minutes on 2 cores. Needs what scripts/setup.sh installs (PostgreSQL 15, Garage, rclone,
# hyperfine).
#
#   benches/run-all.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p bins -p benches
target_dir="${CARGO_TARGET_DIR:-target}"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

benches/run.sh
benches/run-s3.sh

# The unchanged-database re-run needs D2 on a cluster nothing else writes to: no autovacuum, no
# timed checkpoint, no standby snapshots in the log (any of them would defeat the proof, as it
# should, and the run would take a new backup).
pg=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/bench-all.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/pg"
chown postgres:postgres "$work/pg" 2>/dev/null || true
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$pg/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$pg/initdb" -D "$work/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$pg/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off -c autovacuum=off -c wal_level=minimal -c max_wal_senders=0 -c checkpoint_timeout=1h" start >/dev/null
url="postgres://postgres@127.0.0.1:$port/d2"
psql -X -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE d2"
data="$root/../shared/data/mixed_dataset.sql"   # where benches/run.sh finds it too
[ -f "$data" ] || { echo "benches/run-all.sh: no $data" >&2; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -v rows=1500000 "$url" -c "select setseed(0.5)" -f "$data" >/dev/null
OUT_JSON="$root/benches/report.unchanged.json" TOOL="$target_dir/release/pre-deploy" \
  benches/run-unchanged.sh "$url" 5

"$target_dir/release/bench-summary" --since "$started"
