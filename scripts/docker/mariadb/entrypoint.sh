#!/bin/sh
# Initialises the datadir on the first start (mariadb-install-db, then MARIADB_USER with the
# password MARIADB_PASSWORD and every privilege from any host, and MARIADB_DATABASE, in bootstrap
# mode: nothing listens yet), then runs mariadbd in the foreground on 0.0.0.0:3306. The password
# comes from the environment only, never from an argv.
set -eu
data=/var/lib/mysql
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if [ ! -e "$data/.predeploy-init" ]; then
  mariadb-install-db --user=mysql --datadir="$data" --skip-test-db >/dev/null
  if [ -n "${MARIADB_USER:-}" ]; then
    user=$(printf '%s' "$MARIADB_USER" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
    pw=$(printf '%s' "${MARIADB_PASSWORD:-}" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
    db=$(printf '%s' "${MARIADB_DATABASE:-$MARIADB_USER}" | sed 's/`/``/g')
    {
      echo "FLUSH PRIVILEGES;"
      printf "CREATE USER '%s'@'%%' IDENTIFIED BY '%s';\n" "$user" "$pw"
      printf "GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%' WITH GRANT OPTION;\n" "$user"
      printf 'CREATE DATABASE `%s`;\n' "$db"
    } | mariadbd --user=mysql --datadir="$data" --bootstrap --skip-networking >/dev/null
  fi
  touch "$data/.predeploy-init"
fi
echo "entrypoint: starting MariaDB"
exec mariadbd --user=mysql --datadir="$data" --bind-address=0.0.0.0 --port=3306 \
  --socket=/run/mysqld/mysqld.sock --skip-name-resolve
