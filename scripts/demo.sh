#!/usr/bin/env bash
# The main job on a local default: set up, start a throwaway PostgreSQL with sample data, run the
# gate around a sample deploy (scripts/deploy.sh), and show the result. Cleans up the server on
# exit; the backups stay in the printed directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" --demo   # only what the demo needs: PostgreSQL 15, zstd, the toolchain
cargo build --quiet --manifest-path "$root/Cargo.toml" -p bins --bin pre-deploy
bin="$root/target/debug/pre-deploy"
pg=/usr/lib/postgresql/15/bin

demo=$(mktemp -d /tmp/pre-deploy-demo.XXXXXX)
chmod 755 "$demo"
mkdir -p "$demo/pg" "$demo/app"
chown postgres:postgres "$demo/pg"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$pg/pg_ctl" -D "$demo/pg/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$demo/pg"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "== starting a throwaway PostgreSQL 15 on 127.0.0.1:$port"
as_pg "$pg/initdb" -D "$demo/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$pg/pg_ctl" -D "$demo/pg/data" -l "$demo/pg/log" -w \
  -o "-p $port -k $demo/pg -c listen_addresses=127.0.0.1" start >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:$port/shop"
psql -X -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE shop"
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<'SQL'
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, status text,
                     total numeric(10,2), created_at timestamptz DEFAULT now());
INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 1000) g;
INSERT INTO orders (customer_id, status, total, created_at)
SELECT 1 + g % 1000, (ARRAY['new','paid','shipped'])[1 + g % 3], (g % 500) + 0.99, now() - g * interval '1 minute'
FROM generate_series(1, 50000) g;
SQL

cd "$demo/app"
echo
echo "== pre-deploy run -- scripts/deploy.sh   (store: $demo/app/.pre-deploy)"
"$bin" run -- "$root/scripts/deploy.sh"
echo
echo "== pre-deploy list"
"$bin" list
echo
echo "== pre-deploy show last"
"$bin" show last
echo
echo "== pre-deploy verify last"
"$bin" verify last
echo
echo "== .last-deployment-backup"
cat .last-deployment-backup
echo
echo "demo done: backups are in $demo/app/.pre-deploy (the throwaway server is being stopped)"
