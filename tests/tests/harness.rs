//! The harness itself works: real servers start and stop, the fixture loads deterministically,
//! the comparison helpers see what they should, and the CLI runner captures what it should.

use std::net::TcpStream;
use std::time::Duration;

use predeploy_tests::compare::{self, LARGE_OBJECTS_KEY, SeqValue};
use predeploy_tests::fixtures::{self, VARIED_LARGE_OBJECT_BYTES, VARIED_ROW_COUNTS};
use predeploy_tests::{PgServer, cli, schema_dump, sequence_values, table_checksums, unused_port};

#[test]
fn varied_fixture_loads_and_compares_by_content() {
    let server = PgServer::start();
    assert_eq!(server.major_version(), 15);
    let first = server.create_database("rt");
    let second = server.create_database("rt");
    assert!(
        first.starts_with("rt_") && first != second,
        "{first} / {second}"
    );
    fixtures::load_varied(&server, &first);
    fixtures::load_varied(&server, &second);

    let sums = table_checksums(&server, &first);
    let mut expected: Vec<(String, i64)> = VARIED_ROW_COUNTS
        .iter()
        .map(|(t, n)| ((*t).to_owned(), *n))
        .collect();
    expected.push((LARGE_OBJECTS_KEY.to_owned(), 1));
    expected.sort();
    let got: Vec<(String, i64)> = sums.iter().map(|(t, s)| (t.clone(), s.rows)).collect();
    assert_eq!(
        got, expected,
        "tables and row counts of the varied database"
    );
    for (table, sum) in &sums {
        assert!(
            sum.md5.len() == 32 && sum.md5.bytes().all(|b| b.is_ascii_hexdigit()),
            "{table}: {sum:?}"
        );
    }
    let lo_size = server.psql(&first, "select length(lo_get(424242))");
    assert_eq!(lo_size.trim(), VARIED_LARGE_OBJECT_BYTES.to_string());

    // Deterministic: a second load gives the same content, sequences and schema.
    assert_eq!(sums, table_checksums(&server, &second));
    let seqs = sequence_values(&server, &first);
    assert_eq!(
        seqs.get("public.ticket_seq"),
        Some(&SeqValue {
            last_value: 5000,
            is_called: true
        })
    );
    assert_eq!(
        seqs.get("billing.invoice_number_seq"),
        Some(&SeqValue {
            last_value: 77,
            is_called: false
        })
    );
    assert!(seqs.contains_key("public.orders_id_seq"), "{seqs:?}");
    assert_eq!(seqs, sequence_values(&server, &second));

    let dump = schema_dump(&server, &first);
    for needle in [
        "CREATE TABLE public.customers (",
        "CREATE TABLE \"ünïcødé\".\"Bestellungen\" (",
        "\"größe\" numeric(6,2)",
        "CREATE TABLE public.\"商品\" (",
        "PARTITION BY RANGE (measured_on)",
        "CREATE MATERIALIZED VIEW public.status_counts",
        "CREATE TRIGGER invoices_audit",
        "CREATE TYPE public.order_status AS ENUM",
        "OWNER TO postgres",
    ] {
        assert!(dump.contains(needle), "schema dump lacks {needle:?}");
    }
    assert!(
        !dump.contains("\\restrict") && !dump.contains("-- Dumped "),
        "volatile lines left"
    );
    assert!(compare::first_difference(&dump, &schema_dump(&server, &second)).is_none());
    compare::assert_same_database(&server, &first, &server, &second);

    // A change in one row shows in that table only; a changed large object in its entry.
    server.psql(
        &second,
        "update \"ünïcødé\".\"Bestellungen\" set \"größe\" = 1 where \"Nr\" = 7",
    );
    server.psql(&second, "select lo_put(424242, 50000, '\\x00')");
    let changed = table_checksums(&server, &second);
    let differing: Vec<&String> = sums
        .keys()
        .filter(|k| sums.get(*k) != changed.get(*k))
        .collect();
    assert_eq!(differing, ["<large objects>", "ünïcødé.Bestellungen"]);
    assert_eq!(changed["ünïcødé.Bestellungen"].rows, 300);
    let mismatch = std::panic::catch_unwind(|| {
        compare::assert_same_database(&server, &first, &server, &second);
    });
    assert!(
        mismatch.is_err(),
        "assert_same_database must see the change"
    );
}

#[test]
fn tcp_connections_need_the_password() {
    let server = PgServer::start();
    let db = server.create_database("auth");
    let url = server.url(&db);
    assert_eq!(
        url,
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            server.password(),
            server.port()
        )
    );
    assert!(server.password().len() >= 16);
    let who = server
        .try_psql_url(
            &url,
            "select current_user, current_database(), inet_server_addr()",
        )
        .expect("the superuser URL connects over TCP");
    assert_eq!(who.trim(), format!("postgres|{db}|127.0.0.1"));

    let wrong = server
        .try_psql_url(
            &server.url_with("postgres", "wrong password", &db),
            "select 1",
        )
        .expect_err("a wrong password must not connect");
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    let no_user = server
        .try_psql_url(
            &server.url_with("nobody", server.password(), &db),
            "select 1",
        )
        .expect_err("an unknown user must not connect");
    assert!(
        no_user.contains("password authentication failed"),
        "{no_user}"
    );

    // Special characters in user and password survive the URL (percent-encoded).
    server.psql(
        &db,
        "create role \"we:ird@user\" login password 'p@ss:w/rd %?#'",
    );
    let url = server.url_with("we:ird@user", "p@ss:w/rd %?#", &db);
    assert!(
        url.contains("we%3Aird%40user:p%40ss%3Aw%2Frd%20%25%3F%23@"),
        "{url}"
    );
    let who = server
        .try_psql_url(&url, "select current_user")
        .expect("encoded URL connects");
    assert_eq!(who.trim(), "we:ird@user");

    // The Rust client the tool uses understands the URL too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&server.url(&db), tokio_postgres::NoTls)
            .await
            .expect("tokio-postgres connects with url()");
        let task = tokio::spawn(connection);
        let row = client
            .query_one("select 40 + 2", &[])
            .await
            .expect("a query");
        assert_eq!(row.get::<_, i32>(0), 42);
        drop(client);
        let _ = task.await;
        let err = tokio_postgres::connect(
            &server.url_with("postgres", "nope", &db),
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("a wrong password must not connect");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{err:?}"
        );
    });
}

#[test]
fn stop_makes_connections_fail_and_restart_brings_the_data_back() {
    let mut server = PgServer::start();
    let db = server.create_database("stop");
    server.psql(
        &db,
        "create table kept (v text); insert into kept values ('still here')",
    );
    let port = server.port();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    server.stop();
    server.stop(); // idempotent
    assert!(!server.is_running());
    let err = server
        .try_psql(&db, "select 1")
        .expect_err("no server on the socket");
    assert!(
        err.contains("No such file or directory") || err.contains("connect"),
        "{err}"
    );
    let err = server
        .try_psql_url(&server.url(&db), "select 1")
        .expect_err("no server on TCP");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.psql(&db, "select v from kept"), "still here\n");
}

#[test]
fn drop_stops_the_server_and_removes_its_files() {
    let server = PgServer::start();
    let port = server.port();
    let data_dir = server.data_dir().to_path_buf();
    let socket_dir = server.socket_dir().to_path_buf();
    assert!(data_dir.join("PG_VERSION").is_file());
    drop(server);
    assert!(
        !data_dir.exists() && !socket_dir.exists(),
        "temp dirs removed"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn shared_server_hands_out_separate_databases() {
    let server = PgServer::shared();
    let a = server.create_database("shared");
    let b = server.create_database("shared");
    assert_ne!(a, b);
    server.create_database_named("Named DB \"with\" quotes");
    let listed = server.psql("postgres", "select datname from pg_database order by 1");
    for name in [a.as_str(), b.as_str(), "Named DB \"with\" quotes"] {
        assert!(listed.lines().any(|l| l == name), "{name} in {listed}");
    }
    assert!(std::ptr::eq(server, PgServer::shared()));
}

#[test]
fn psql_file_passes_variables() {
    let server = PgServer::shared();
    let db = server.create_database("file");
    let dir = tempfile::tempdir().expect("a temp dir");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "create table t as select generate_series(1, :rows) as i;\n",
    )
    .expect("write the script");
    server.psql_file(&db, &script, &[("rows", "7")]);
    assert_eq!(server.psql(&db, "select count(*), sum(i) from t"), "7|28\n");
    let failed = std::panic::catch_unwind(|| server.psql(&db, "select * from missing_table"));
    assert!(failed.is_err(), "psql() panics on SQL errors");
}

#[test]
fn unused_port_has_no_listener() {
    let port = unused_port();
    assert_ne!(port, 0);
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_err()
    );
}

#[test]
fn mixed_dataset_script_is_found() {
    if let Some(path) = fixtures::mixed_dataset_sql() {
        assert!(
            path.ends_with("shared/data/mixed_dataset.sql"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn run_captures_code_and_streams() {
    let out =
        cli::run(std::process::Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    out.assert_code(3);
    let killed = std::panic::catch_unwind(|| {
        cli::run(std::process::Command::new("sh").args(["-c", "kill -9 $$"]))
    });
    assert!(killed.is_err(), "a signal is a panic");
}

#[test]
fn pre_deploy_binary_is_built_and_runs_with_a_clean_environment() {
    let mut cmd = cli::pre_deploy();
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        if key == "PREDEPLOY_FRESH" {
            // The one variable the harness sets: every run takes a new backup.
            assert_eq!(value.and_then(|v| v.to_str()), Some("1"));
        } else if key == "DATABASE_URL" || key.starts_with("PG") || key.starts_with("PREDEPLOY_") {
            assert!(value.is_none(), "{key} must be removed");
        }
    }
    assert!(cli::binary().is_file());
    let out = cli::run(cmd.arg("--help"));
    assert!(out.code == 0 || out.code == 2, "{out:?}");
}
