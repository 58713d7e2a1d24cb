#!/bin/sh
# Creates POSTGRES_USER (superuser, scram password POSTGRES_PASSWORD) and POSTGRES_DB on the first
# start, in single-user mode (nothing listens yet), then runs the server in the foreground.
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/15/main
conf=/etc/postgresql/15/main/postgresql.conf
mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
if [ -n "${POSTGRES_USER:-}" ] && [ ! -e "$data/.predeploy-init" ]; then
  pw=$(printf '%s' "${POSTGRES_PASSWORD:-}" | sed "s/'/''/g")
  {
    printf "CREATE ROLE \"%s\" LOGIN SUPERUSER PASSWORD '%s';\n" "$POSTGRES_USER" "$pw"
    printf "CREATE DATABASE \"%s\" OWNER \"%s\";\n" "${POSTGRES_DB:-$POSTGRES_USER}" "$POSTGRES_USER"
  } | runuser -u postgres -- "$bin/postgres" --single -D "$data" -c config_file="$conf" postgres >/dev/null
  touch "$data/.predeploy-init"
fi
echo "entrypoint: starting PostgreSQL"
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c config_file="$conf"
