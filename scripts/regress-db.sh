#!/usr/bin/env bash
# PostgreSQL's own regression database as a cached test fixture (tests/src/regress.rs loads it).
#
# What `make installcheck-parallel` of the PostgreSQL 15 source leaves in the `regression`
# database: 600+ tables, partitioned and inheritance trees, functions in SQL, plpgsql and C,
# triggers, rules, RLS policies, domains, ranges, text search objects, foreign data wrappers...
#
#   1. the Debian source package of the installed postgresql-15 (a deb-src entry is added for the
#      Debian mirrors already configured; when the security mirror's index lists a version whose
#      files it does not serve yet, another listed version is used), under $root/src;
#   2. regress.so (src/test/regress/regress.c) and contrib/spi's autoinc.so and refint.so,
#      compiled against the installed server headers (postgresql-server-dev-15) into $root/lib,
#      where the C functions of the fixture point;
#   3. a throwaway cluster of the installed server (initdb as the `postgres` OS user, unix
#      socket only), and pg_regress on the source's parallel_schedule, with the pg_regress and
#      psql of the source's version when that is not the installed one (see below); failing
#      individual tests are fine (the server is newer than the tests), as long as the
#      `regression` database is left behind: pg_regress.log and regression.diffs are kept;
#   4. the tables that a plain pg_dump/pg_restore cannot reproduce are dropped (see below);
#   5. $root/regression.pgc (pg_dump -Fc), proven to restore to what it was taken from,
#      $root/roles.sql (pg_dumpall --roles-only) and $root/stamp (versions, counts, failed
#      tests); the cluster is stopped and removed.
#
# Idempotent: with the cache in place (same recipe) it prints one line and exits. --force
# rebuilds. About 75 s fresh on 2 cores (plus package installs the first time), instant cached.
set -euo pipefail

root=${PREDEPLOY_REGRESS_ROOT:-/opt/pre-deploy/regress}
pgbin=/usr/lib/postgresql/15/bin
pg_regress=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
# Bump when what goes into the cache changes (e.g. the list of dropped tables): stale caches
# are rebuilt.
recipe=1

archive=$root/regression.pgc
roles=$root/roles.sql
stamp=$root/stamp
log=$root/build.log

force=0
[ "${1:-}" = "--force" ] && force=1

say() { echo "regress-db: $*"; }
die() { echo "regress-db: $*" >&2; exit 1; }

cached() {
  [ "$force" = 0 ] && [ -s "$archive" ] && [ -s "$roles" ] && [ -f "$stamp" ] \
    && grep -qx "recipe=$recipe" "$stamp" \
    && [ -f "$root/lib/regress.so" ] && [ -f "$root/lib/autoinc.so" ] && [ -f "$root/lib/refint.so" ]
}
if cached; then
  say "cached: $(sed -n 's/^summary=//p' "$stamp")"
  exit 0
fi

# Root: it installs Debian packages and runs PostgreSQL as the postgres OS user.
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
[ -x "$pgbin/initdb" ] || die "$pgbin/initdb is missing: run scripts/setup.sh"
id -u postgres >/dev/null 2>&1 || die "the postgres OS user is missing (it comes with postgresql-15)"
mkdir -p "$root/src" "$root/lib"
# One build at a time; a run that waited finds the cache another one just built.
exec 9>"$root/.lock"
flock 9
if cached; then
  say "cached: $(sed -n 's/^summary=//p' "$stamp")"
  exit 0
fi
: >"$log"
started=$SECONDS

# --- 1. the source package ------------------------------------------------------------------
# A deb-src twin of every deb entry that points at a Debian mirror (…/debian, …/debian-security),
# unless a deb-src entry is configured already.
src_list=/etc/apt/sources.list.d/pre-deploy-deb-src.sources
apt_files=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && [ "$f" != "$src_list" ] && apt_files+=("$f")
done
if [ ! -f "$src_list" ] \
  && ! grep -Eqs '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' /dev/null "${apt_files[@]}"; then
  {
    # deb822 stanzas: keep URIs/Suites/Components/Signed-By of the Debian ones.
    for f in "${apt_files[@]}"; do
      case "$f" in *.sources) ;; *) continue ;; esac
      awk 'function flush() {
             if (types ~ /(^| )deb( |$)/ && uris ~ /\/debian(-security)?\/?( |$)/) {
               print "Types: deb-src"; printf "%s", body; print ""
             }
             types = ""; uris = ""; body = ""
           }
           /^[[:space:]]*$/ { flush(); next }
           /^#/ { next }
           /^Types:/ { types = $0; sub(/^Types:[[:space:]]*/, "", types); next }
           /^URIs:/ { uris = $0 }
           { body = body $0 "\n" }
           END { flush() }' "$f"
    done
    # One-line format: deb [options] URI suite components...
    for f in "${apt_files[@]}"; do
      case "$f" in *.sources) continue ;; esac
      awk '$1 == "deb" {
             i = 2; if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
             if ($i !~ /\/debian(-security)?\/?$/) next
             printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", $i, $(i + 1)
             for (j = i + 2; j <= NF; j++) printf " %s", $j
             printf "\n\n"
           }' "$f"
    done
  } >"$src_list.tmp"
  grep -q '^URIs:' "$src_list.tmp" || { rm -f "$src_list.tmp"; die "no Debian mirror in /etc/apt/sources.list*: cannot add a deb-src entry"; }
  mv "$src_list.tmp" "$src_list"
fi

need=()
for pkg in dpkg-dev gcc postgresql-server-dev-15; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
say "building the regression database fixture (about 2 minutes; log: $log)"
apt-get update -qq >>"$log" 2>&1 || die "apt-get update failed (see $log)"
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >>"$log" 2>&1 \
    || die "apt-get install ${need[*]} failed (see $log)"
fi
[ -x "$pg_regress" ] || die "$pg_regress is missing (it comes with postgresql-client-15)"
incdir=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server 2>/dev/null || pg_config --includedir-server)
[ -f "$incdir/postgres.h" ] || die "server headers missing in $incdir (postgresql-server-dev-15)"

installed=$(dpkg-query -W -f='${Version}' postgresql-15)
# The installed version first, then the others the index lists, newest first.
versions=$( { echo "$installed"; apt-cache showsrc postgresql-15 2>/dev/null | sed -n 's/^Version: //p' | sort -Vr; } \
  | awk '!seen[$0]++')
srcdir=""
for v in $versions; do
  upstream=${v#*:}; upstream=${upstream%-*}
  dir=$root/src/postgresql-15-$upstream
  if [ -f "$dir/.extracted-$v" ]; then srcdir=$dir; version=$v; break; fi
  # `apt-get source` downloads (the security mirror can list files it does not serve yet: 404)
  # and unpacks with dpkg-source; nothing is built.
  rm -rf "$dir"
  if (cd "$root/src" && apt-get source -q "postgresql-15=$v") >>"$log" 2>&1 && [ -d "$dir/src/test/regress" ]; then
    touch "$dir/.extracted-$v"; srcdir=$dir; version=$v; break
  fi
  echo "regress-db: source $v not available, trying another listed version" >>"$log"
done
[ -n "$srcdir" ] || die "apt-get source postgresql-15 failed for every listed version ($(echo "$versions" | tr '\n' ' ')); see $log"
regress_src=$srcdir/src/test/regress

# The test driver (pg_regress and the psql it runs) of the source's own version: the scripts are
# written for it. psql 15.19 changed how it skips the in-line data of a COPY ... FROM STDIN that
# fails before the copy starts (CVE-2026-6464); the 15.18 scripts lack the `\.` lines that need,
# so a newer psql reads the next statements as data and whole tests (rowsecurity, generated,
# copy2, privileges...) go missing. The server under test stays the installed one.
client_bindir=$pgbin
if [ "$version" != "$installed" ]; then
  client_root=$root/client-$version
  if [ ! -x "$client_root/usr/lib/postgresql/15/bin/psql" ]; then
    rm -rf "$client_root" "$root/src/client-deb" && mkdir -p "$root/src/client-deb"
    if (cd "$root/src/client-deb" && apt-get download -q "postgresql-client-15=$version") >>"$log" 2>&1; then
      dpkg-deb -x "$root/src/client-deb"/postgresql-client-15_*.deb "$client_root"
    fi
  fi
  if [ -x "$client_root/usr/lib/postgresql/15/bin/psql" ] \
    && "$client_root/usr/lib/postgresql/15/bin/psql" --version >/dev/null 2>&1; then
    client_bindir=$client_root/usr/lib/postgresql/15/bin
    pg_regress=$client_root/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
  else
    echo "regress-db: no postgresql-client-15 $version; pg_regress runs with the installed psql" >>"$log"
  fi
fi

# --- 2. the C libraries the tests load ------------------------------------------------------
cflags=(-O2 -fPIC -shared -fno-strict-aliasing -fwrapv -I"$incdir")
gcc "${cflags[@]}" -o "$root/lib/regress.so" "$regress_src/regress.c" >>"$log" 2>&1 || die "building regress.so failed (see $log)"
for lib in autoinc refint; do
  # -DREFINT_VERBOSE as contrib/spi/Makefile builds it: the triggers test expects its notices.
  gcc "${cflags[@]}" -DREFINT_VERBOSE -o "$root/lib/$lib.so" "$srcdir/contrib/spi/$lib.c" >>"$log" 2>&1 || die "building $lib.so failed (see $log)"
done
chmod 755 "$root" "$root/lib" "$root/lib"/*.so

# --- 3. the throwaway cluster and pg_regress -------------------------------------------------
work=$(mktemp -d /tmp/predeploy-regress.XXXXXX)
chown postgres: "$work"
port=$((54000 + RANDOM % 1000))
as_pg() { runuser -u postgres -- env -u PGHOST -u PGPORT -u PGDATABASE -u PGUSER -u PGPASSWORD LC_ALL=C TZ=UTC "$@"; }
cleanup() {
  as_pg "$pgbin/pg_ctl" -D "$work/data" stop -m immediate -w >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
as_pg "$pgbin/initdb" -D "$work/data" -U postgres -E UTF8 --no-locale --no-sync -A trust >>"$log" 2>&1 \
  || die "initdb failed (see $log)"
mkdir -p "$work/sock" "$work/out" && chown postgres: "$work/sock" "$work/out"
# The settings pg_regress gives its own temp instance (max_prepared_transactions for the
# prepared_xacts test), plus speed.
as_pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/server.log" -w -t 120 \
  -o "-p $port -k $work/sock -c listen_addresses='' -c fsync=off -c full_page_writes=off \
      -c synchronous_commit=off -c max_prepared_transactions=2 -c max_connections=100" start >>"$log" 2>&1 \
  || { cat "$work/server.log" >>"$log" 2>/dev/null; die "the throwaway server did not start (see $log)"; }

psql_c() { as_pg "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$work/sock" -p "$port" -U postgres "$@"; }

# No --use-existing: like `make installcheck`, pg_regress (re)creates `regression` from template0
# with the per-database settings the expected outputs assume (lc_*, bytea_output...).
set +e
(cd "$work/out" && as_pg "$pg_regress" --bindir="$client_bindir" --dlpath="$root/lib" \
  --inputdir="$regress_src" --outputdir="$work/out" --schedule="$regress_src/parallel_schedule" \
  --max-concurrent-tests=20 --host="$work/sock" --port="$port") >"$root/pg_regress.log" 2>&1
regress_rc=$?
set -e
cp "$work/out/regression.diffs" "$root/regression.diffs" 2>/dev/null || rm -f "$root/regression.diffs"
failed_tests=$(sed -n 's/^[[:space:]]*\([a-z_0-9]*\)[[:space:]]*\.\.\. FAILED.*/\1/p' "$root/pg_regress.log" | tr '\n' ' ')
summary_line=$(grep -E 'tests (passed|failed)|All [0-9]+ tests passed' "$root/pg_regress.log" | tail -1 | sed 's/^[[:space:]=]*//; s/[[:space:]=.]*$//')
psql_c -d regression -c "select 1" >/dev/null 2>&1 \
  || die "pg_regress left no regression database (exit $regress_rc; see $root/pg_regress.log)"

# --- 4. what plain dump/restore cannot reproduce ---------------------------------------------
# Found by the round trip check below (schema, per-table content and column order of this
# database against a pg_restore of its archive), and the same list PostgreSQL's own
# dump/restore test keeps (src/test/perl/PostgreSQL/Test/AdjustDump.pm, PG 18):
# - Inheritance children whose columns are in another order than a restore creates them (a
#   restore puts the inherited columns first): columns were added to their parent after they
#   existed, or they were created with their own columns and attached with ALTER TABLE ...
#   INHERIT. Their rows read back with the columns in another order (a compare by content
#   fails) and for some `pg_dump -s` of the original and of the restored database differ:
#     b_star, c_star, d_star, e_star, f_star   create_misc: ALTER TABLE a_star* ADD COLUMN a
#     test_type_diff_c                         alter_table: ALTER TABLE test_type_diff ADD COLUMN f2
#     test_type_diff2_c1, test_type_diff2_c2   alter_table: (int_four, int_eight, int_two) ...
#                                              INHERIT test_type_diff2 (int_two, int_four, int_eight)
#     gtestxx_4                                generated: (b, a) ... INHERIT gtest1 (a, b)
#     renamecolumnchild, renamecolumnanother   alter_table: a column added to renamecolumn after
#                                              (empty tables; only their column order differs)
# - mvtest_bb (matview test) is a materialized view left stale on purpose (its base table
#   changed after its last refresh); a restore refreshes it, so it is refreshed here instead
#   of dropped.
drop_tables=(public.b_star public.c_star public.d_star public.e_star public.f_star
  public.test_type_diff_c public.test_type_diff2_c1 public.test_type_diff2_c2 public.gtestxx_4
  public.renamecolumnchild public.renamecolumnanother)
psql_c -d regression -c "drop table $(IFS=,; echo "${drop_tables[*]}") cascade" \
  -c "refresh materialized view public.mvtest_bb" >>"$log" 2>&1 \
  || die "dropping ${drop_tables[*]} failed (see $log)"

# --- 5. the cache, proven to restore to what it was taken from -------------------------------
psql_c -d regression -c "vacuum analyze" >>"$log" 2>&1 || true
as_pg "$pgbin/pg_dump" -Fc -h "$work/sock" -p "$port" -U postgres -d regression >"$work/regression.pgc" 2>>"$log" \
  || die "pg_dump of the regression database failed (see $log)"
as_pg "$pgbin/pg_dumpall" --roles-only -h "$work/sock" -p "$port" -U postgres >"$work/roles.sql" 2>>"$log" \
  || die "pg_dumpall --roles-only failed (see $log)"
chown postgres: "$work/regression.pgc"
psql_c -d postgres -c "create database regression_rt template template0" >>"$log" 2>&1 \
  || die "creating the database for the round trip check failed (see $log)"
as_pg "$pgbin/pg_restore" --exit-on-error -h "$work/sock" -p "$port" -U postgres -d regression_rt "$work/regression.pgc" >>"$log" 2>&1 \
  || die "the archive does not restore (see $log)"
schema_of() {
  as_pg "$pgbin/pg_dump" -s -h "$work/sock" -p "$port" -U postgres -d "$1" | grep -Ev '^\\(un)?restrict '
}
# Per table: rows and an md5 over the rows' text (independent of physical order; the text
# follows the column order, so a table whose columns come back in another order differs).
content_of() {
  psql_c -d "$1" -F '|' <<'SQL'
set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres';
set extra_float_digits = 1; set bytea_output = 'hex'; set lc_monetary = 'C'; set lc_numeric = 'C';
select format('select %L, count(*), coalesce(md5(string_agg(h, %L order by h collate "C")), md5(%L)) '
              'from (select md5(t::text) as h from only %I.%I t) s',
              n.nspname || '.' || c.relname, '', '', n.nspname, c.relname)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'm') and (c.relkind <> 'm' or c.relispopulated)
  and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
order by n.nspname, c.relname
\gexec
SQL
}
# The order of every table's columns (a restore puts inherited columns first).
columns_of() {
  psql_c -d "$1" -F '|' -c "select c.oid::regclass::text, string_agg(a.attname, ',' order by a.attnum)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid
    where c.relkind in ('r', 'p', 'm', 'v', 'f') and a.attnum > 0 and not a.attisdropped
      and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
    group by 1 order by 1"
}
columns_of regression >"$work/columns.orig"
columns_of regression_rt >"$work/columns.rt"
schema_of regression >"$work/schema.orig"
schema_of regression_rt >"$work/schema.rt"
content_of regression >"$work/content.orig"
content_of regression_rt >"$work/content.rt"
same=1
diff -u "$work/schema.orig" "$work/schema.rt" >"$root/roundtrip.diff" || same=0
diff -u "$work/content.orig" "$work/content.rt" >>"$root/roundtrip.diff" || same=0
diff -u "$work/columns.orig" "$work/columns.rt" >>"$root/roundtrip.diff" || same=0
if [ "$same" = 0 ]; then
  die "a pg_dump/pg_restore round trip of the regression database differs (see $root/roundtrip.diff)"
fi
rm -f "$root/roundtrip.diff"

counts=$(psql_c -d regression -F ' ' -c "
  select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'p') and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'),
         (select sum((xpath('/row/n/text()', query_to_xml(format('select count(*) as n from only %I.%I',
                      n.nspname, c.relname), false, true, '')))[1]::text::bigint)
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r' and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'),
         (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where n.nspname !~ '^pg_' and n.nspname <> 'information_schema')")
read -r tables rows functions <<<"$counts"
role_list=$(psql_c -d postgres -c "select string_agg(rolname, ' ' order by rolname) from pg_roles where rolname !~ '^pg_' and rolname <> 'postgres'")
# Roles other than the bootstrap superuser that own something (relations, functions, types,
# schemas) after the drops above.
owners=$(psql_c -d regression -c "select string_agg(distinct r.rolname || ':' || o.what, ' ')
  from (select relowner as owner, 'relation' as what from pg_class
        union all select proowner, 'function' from pg_proc
        union all select typowner, 'type' from pg_type
        union all select nspowner, 'schema' from pg_namespace) o
  join pg_roles r on r.oid = o.owner where r.rolname <> 'postgres'")
cp "$work/roles.sql" "$roles.tmp" && mv "$roles.tmp" "$roles"
cp "$work/regression.pgc" "$archive.tmp" && mv "$archive.tmp" "$archive"
summary="$tables tables, $rows rows, $functions functions; PostgreSQL source $version; pg_regress: ${summary_line:-exit $regress_rc}${failed_tests:+ (${failed_tests% })}"
cat >"$stamp" <<EOF
recipe=$recipe
source_version=$version
server_version=$installed
built=$(date -u +%FT%TZ)
seconds=$((SECONDS - started))
pg_regress_exit=$regress_rc
failed_tests=${failed_tests% }
pg_regress_client=$client_bindir
tables=$tables
rows=$rows
functions=$functions
roles=$role_list
owners=$owners
summary=$summary
EOF
say "$summary ($((SECONDS - started)) s)"
