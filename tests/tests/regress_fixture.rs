//! PostgreSQL's own regression database (scripts/regress-db.sh) is a valid baseline: it loads
//! whole into a PostgreSQL 15 server, and a plain `pg_dump -Fc | pg_restore` round trip of it
//! comes back identical (schema dump, every table's content, sequences, large objects).

use predeploy_tests::compare::first_difference;
use predeploy_tests::pg::SUPERUSER;
use predeploy_tests::{PgServer, assert_same_database, regress, schema_dump};

/// Tables (ordinary and partitioned), rows of the ordinary tables (partitions included, each
/// row once) and functions (including procedures and aggregates) outside the system schemas.
fn counts(server: &PgServer, db: &str) -> (i64, i64, i64) {
    const USER_SCHEMAS: &str = "n.nspname !~ '^pg_' and n.nspname <> 'information_schema'";
    let out = server.psql(
        db,
        &format!(
            "select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where c.relkind in ('r', 'p') and {USER_SCHEMAS}),
                    (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                     where {USER_SCHEMAS})"
        ),
    );
    let Some((tables, functions)) = out.trim().split_once('|') else {
        panic!("unexpected counts {out:?}");
    };
    // One count(*) per table (\gexec), summed here: no xml functions, which some builds lack.
    let per_table = server.psql(
        db,
        &format!(
            "select format('select count(*) from only %I.%I', n.nspname, c.relname)
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where c.relkind = 'r' and {USER_SCHEMAS}
             \\gexec"
        ),
    );
    let rows = per_table
        .lines()
        .map(|n| n.parse::<i64>().expect("a row count"))
        .sum();
    (
        tables.parse().expect("a table count"),
        rows,
        functions.parse().expect("a function count"),
    )
}

#[test]
fn the_regression_database_loads_whole_and_round_trips_through_pg_dump() {
    let server = PgServer::start();
    assert_eq!(server.major_version(), 15);
    regress::load_regression(&server, "regression");

    let (tables, rows, functions) = counts(&server, "regression");
    assert!(tables > 500, "{tables} tables");
    assert!(rows > 100_000, "{rows} rows");
    // Exactly what the database held when scripts/regress-db.sh dumped it.
    let stamped = |key: &str| -> i64 {
        regress::stamp_value(key)
            .unwrap_or_else(|| panic!("{key}= in the fixture's stamp"))
            .parse()
            .expect("a number")
    };
    assert_eq!(
        (tables, rows, functions),
        (stamped("tables"), stamped("rows"), stamped("functions")),
        "tables, rows and functions as recorded when the fixture was built"
    );

    // Plain pg_dump -Fc of the loaded database, restored into a fresh one.
    let archive = tempfile::NamedTempFile::new().expect("temp file");
    let out = server
        .client_command("pg_dump")
        .args(["-Fc", "--no-password", "-f"])
        .arg(archive.path())
        .arg("-h")
        .arg(server.socket_dir())
        .args(["-p", &server.port().to_string(), "-U", SUPERUSER])
        .args(["-d", "regression"])
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump -Fc of the regression database failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.create_database_named("rt_copy");
    let out = server
        .client_command("pg_restore")
        .args(["--exit-on-error", "--no-password", "-j", "2", "-h"])
        .arg(server.socket_dir())
        .args(["-p", &server.port().to_string(), "-U", SUPERUSER])
        .args(["-d", "rt_copy"])
        .arg(archive.path())
        .output()
        .expect("run pg_restore");
    assert!(
        out.status.success(),
        "pg_restore of the regression database failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (a, b) = (
        schema_dump(&server, "regression"),
        schema_dump(&server, "rt_copy"),
    );
    assert!(a.len() > 100_000, "a schema dump of {} bytes", a.len());
    if let Some(diff) = first_difference(&a, &b) {
        panic!("pg_dump -s of the regression database and of its restore differ:\n{diff}");
    }
    // Schema again, and every table's content, the sequences and the large objects.
    assert_same_database(&server, "regression", &server, "rt_copy");
    assert_eq!(counts(&server, "rt_copy"), (tables, rows, functions));
}
