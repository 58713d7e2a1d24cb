#!/usr/bin/env bash
# A sample deploy for the demo: a schema migration on the database pre-deploy just backed up.
# pre-deploy runs it only after a verified backup, with PREDEPLOY_BACKUP_ID in its environment.
set -euo pipefail
echo "deploy: the backup protecting this deploy is ${PREDEPLOY_BACKUP_ID:?run me through pre-deploy run}"
psql -X -q -v ON_ERROR_STOP=1 "${DATABASE_URL:?}" <<'SQL'
ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped_at timestamptz;
UPDATE orders SET shipped_at = created_at + interval '2 days' WHERE status = 'shipped';
SQL
echo "deploy: migration applied"
