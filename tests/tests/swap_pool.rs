//! The name swap of a restore under a connection pool that reconnects as soon as its sessions
//! are terminated (issue 14): new connections are refused while the names change, so the swap
//! and the swap back succeed every time, and connections are allowed again afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backup_postgres::{PgAdmin, PgSourceConfig, ProcessEnv, SwapNames};
use predeploy_tests::PgServer;

/// Connects to `db` over and over (as a pool does), holding each session for a moment, until
/// `stop`; counts the sessions it got.
async fn reconnecting_pool(
    config: PgSourceConfig,
    stop: Arc<AtomicBool>,
    sessions: Arc<AtomicU64>,
) {
    let driver = config.driver_config().expect("config");
    while !stop.load(Ordering::Relaxed) {
        // No pause after a refused connection: reconnect at once, as an eager pool does.
        if let Ok((client, connection)) = driver.connect(tokio_postgres::NoTls).await {
            let conn = tokio::spawn(connection);
            if client.simple_query("SELECT 1").await.is_ok() {
                sessions.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(client);
            let _ = conn.await;
        }
    }
}

fn allows_connections(server: &PgServer, db: &str) -> String {
    server
        .psql(
            "postgres",
            &format!("SELECT datallowconn FROM pg_database WHERE datname = '{db}'"),
        )
        .trim()
        .to_owned()
}

#[test]
fn the_swap_succeeds_under_a_reconnecting_pool_and_leaves_connections_allowed() {
    let server = PgServer::start();
    let target = server.create_database("pool");
    let names = SwapNames::new(&target, "20261201t000000z_abcdef", "20261201t000001z");
    server.create_database_named(&names.restoring);
    server.psql(
        &target,
        "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('old')",
    );
    server.psql(
        &names.restoring,
        "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('restored')",
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let config = PgSourceConfig::from_url(&server.url(&target), &ProcessEnv).expect("url");
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(AtomicU64::new(0));
        let pools: Vec<_> = (0..16)
            .map(|_| {
                tokio::spawn(reconnecting_pool(
                    config.clone(),
                    stop.clone(),
                    sessions.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let admin = PgAdmin::connect(&config, "db", &[&target])
            .await
            .expect("admin");
        for round in 0..5 {
            admin
                .swap(&names, true, true)
                .await
                .unwrap_or_else(|e| panic!("swap {round} under the pool: {e}"));
            admin
                .swap_back(&names, true)
                .await
                .unwrap_or_else(|e| panic!("swap back {round} under the pool: {e}"));
        }
        stop.store(true, Ordering::Relaxed);
        for p in pools {
            p.await.expect("pool task");
        }
        assert!(
            sessions.load(Ordering::Relaxed) > 10,
            "the pool really connected in between"
        );
    });
    for db in [&target, &names.restoring] {
        assert_eq!(
            allows_connections(&server, db),
            "t",
            "{db} accepts connections again"
        );
    }
    assert_eq!(server.psql(&target, "SELECT v FROM marker").trim(), "old");
}
