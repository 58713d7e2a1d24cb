//! Test restores into a throwaway local cluster ([`LocalCluster`]) instead of a production
//! server: started for one archive, given the backup's roles, stopped and removed afterwards.

use std::process::Stdio;

use crate::command::{CLEARED_ENV, connection_env};
use crate::{GLOBALS_FORMAT, LocalCluster, PgTools, parse_major};
use backup_core::{SourceManifest, Store};

use backup_verify::{Consumer, read_pass};

/// The server binaries of a throwaway local cluster for `source`'s backup: its server major
/// or, unless `same_major_only`, the nearest newer one installed.
///
/// # Errors
///
/// Why there are none, with the package to install.
pub(crate) async fn scratch_server(
    source: &SourceManifest,
    pg_bin_dir: Option<&std::path::Path>,
    same_major_only: bool,
) -> Result<PgTools, String> {
    let major = source
        .server_version
        .as_deref()
        .and_then(parse_major)
        .unwrap_or(0);
    let server = LocalCluster::find_server(major, pg_bin_dir)
        .await
        .filter(|s| !same_major_only || (major > 0 && s.major == major));
    server.ok_or_else(|| {
        if same_major_only {
            format!(
                "this machine has no PostgreSQL {major} server binaries (initdb, pg_ctl, postgres) for a throwaway scratch cluster: install postgresql-{major} here to keep test restores off the source's server"
            )
        } else {
            format!(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) of version {major} or newer are installed here for a local scratch server: install the server package (e.g. postgresql-{major}) or give --verify-restore-url"
            )
        }
    })
}

/// Starts a local cluster with `server`'s binaries (see [`scratch_server`]) and creates the
/// backup's roles in it from its globals dump, so owners and grants can be proven.
///
/// # Errors
///
/// Why there is none: the server did not start.
pub(crate) async fn start_scratch_cluster(
    store: &dyn Store,
    source: &SourceManifest,
    server: &PgTools,
    temp_dir: Option<&std::path::Path>,
) -> Result<LocalCluster, String> {
    let cluster = LocalCluster::start(server, temp_dir)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(globals) = source.artifacts.iter().find(|a| a.format == GLOBALS_FORMAT) {
        create_roles(store, globals, &cluster).await;
    }
    Ok(cluster)
}

/// Replays the globals dump (roles, tablespaces) into the cluster. Statements that fail (the
/// `postgres` role exists already, a tablespace directory is missing) are skipped: what is
/// missing then shows up as "owners and grants not proven".
async fn create_roles(
    store: &dyn Store,
    globals: &backup_core::ArtifactMeta,
    cluster: &LocalCluster,
) {
    let config = cluster.config();
    let Some(bin_dir) = config.bin_dir.clone() else {
        return;
    };
    let Ok(env) = connection_env(&config) else {
        return;
    };
    let mut cmd = tokio::process::Command::new(bin_dir.join("psql"));
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    let child = cmd
        .envs(env)
        .args(["-X", "-q", "-d", "postgres", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return;
    };
    let Some(mut stdin) = child.stdin.take() else {
        return;
    };
    let (pass, _) = tokio::join!(
        async {
            let r = read_pass(store, globals, true, Consumer::Writer(&mut stdin)).await;
            drop(stdin);
            r
        },
        child.wait()
    );
    if let Err(e) = pass {
        tracing::debug!("could not replay the roles into the local scratch server: {e}");
    }
}
