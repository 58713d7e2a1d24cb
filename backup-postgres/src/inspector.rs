//! [`PgInspector`]: what the tool learns from the server over a normal connection: versions,
//! privileges, sizes, and, inside the dump's own MVCC snapshot, exact row counts and a schema
//! fingerprint.

use std::collections::{BTreeMap, BTreeSet};

use backup_core::{Error, Result, Sha256, SourceStats, TableStat};
use tokio_postgres::Client;

use crate::config::PgSourceConfig;
use crate::schema::SchemaListing;

/// A connection to one database, for inspection.
#[derive(Debug)]
pub struct PgInspector {
    pub(crate) client: Client,
    pub(crate) source_name: String,
}

/// Tables are counted this many per query (one round trip per batch).
const COUNT_BATCH: usize = 200;

/// User tables whose data pg_dump dumps: ordinary tables and partitions, outside the system
/// schemas, not owned by an extension.
const USER_TABLES: &str = "
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2";

/// Objects outside system schemas and not owned by an extension.
const USER_NAMESPACE: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";

impl PgInspector {
    /// Connects to `cfg`'s database.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] with a message saying what to check (server down, wrong
    /// password, missing database), never containing the password.
    pub async fn connect(cfg: &PgSourceConfig, source_name: &str) -> Result<Self> {
        cfg.open_tunnel(source_name).await?;
        let driver = cfg.driver_config()?;
        let tls = cfg.tls.connector()?;
        let (client, connection) = driver
            .connect(tls)
            .await
            .map_err(|e| connect_error(cfg, source_name, &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "inspection connection closed");
            }
        });
        Ok(PgInspector {
            client,
            source_name: source_name.to_owned(),
        })
    }

    pub(crate) fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        let detail = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        Error::SnapshotFailed {
            source_name: self.source_name.clone(),
            message: format!("{what}: {detail}"),
        }
    }

    /// Runs one statement; the error is the server's message.
    ///
    /// # Errors
    ///
    /// The server's message.
    pub async fn execute(&self, sql: &str) -> std::result::Result<(), String> {
        self.client.batch_execute(sql).await.map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        })
    }

    /// Databases whose name starts with `prefix`, with their comments.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn scratch_databases(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>> {
        let rows = self
            .client
            .query(
                "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE starts_with(datname, $1)",
                &[&prefix],
            )
            .await
            .map_err(|e| self.query_error("listing scratch databases", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Extensions the server can install (`pg_available_extensions`).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn available_extensions(&self) -> Result<BTreeSet<String>> {
        let rows = self
            .client
            .query("SELECT name::text FROM pg_available_extensions", &[])
            .await
            .map_err(|e| self.query_error("listing available extensions", &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The server's version string (`15.19 (Debian …)`) and major number.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn server_version(&self) -> Result<(String, u32)> {
        let row = self
            .client
            .query_one("SELECT current_setting('server_version'), current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| self.query_error("reading the server version", &e))?;
        let version: String = row.get(0);
        let num: i32 = row.get(1);
        Ok((version, u32::try_from(num / 10_000).unwrap_or(0)))
    }

    /// Whether the user may read role password hashes (superuser), and the database size.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn privileges_and_size(&self) -> Result<(bool, u64)> {
        let row = self
            .client
            .query_one(
                "SELECT rolsuper, pg_database_size(current_database()) FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| self.query_error("reading privileges", &e))?;
        Ok((row.get(0), u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)))
    }

    /// Which of `roles` do not exist on this server.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn missing_roles(&self, roles: &[String]) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT r FROM unnest($1::text[]) r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) ORDER BY 1",
                &[&roles],
            )
            .await
            .map_err(|e| self.query_error("looking up roles", &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// How this server renders a view body recorded elsewhere: the body is parsed into a
    /// temporary view (one statement, in a transaction rolled back at once) and rendered with
    /// `pg_get_viewdef`. Used to compare view bodies across major versions, which render the same
    /// query differently.
    ///
    /// # Errors
    ///
    /// The server's message when the body does not parse here.
    pub async fn render_view_body(&self, body: &str) -> std::result::Result<String, String> {
        let message = |e: tokio_postgres::Error| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        };
        self.client.batch_execute("BEGIN").await.map_err(message)?;
        let query = body.trim_end().trim_end_matches(';');
        // `execute` uses the extended protocol: exactly one statement, whatever the text holds.
        let rendered = match self
            .client
            .execute(
                &format!("CREATE TEMPORARY VIEW predeploy_rerendered_view AS {query}"),
                &[],
            )
            .await
        {
            Ok(_) => self
                .client
                .query_one(
                    "SELECT pg_get_viewdef('pg_temp.predeploy_rerendered_view'::regclass)",
                    &[],
                )
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(message),
            Err(e) => Err(message(e)),
        };
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(message)?;
        rendered
    }

    /// The server's data directory, when the user may read it and it is on this machine.
    pub async fn local_data_directory(&self) -> Option<std::path::PathBuf> {
        let row = self
            .client
            .query_one("SELECT current_setting('data_directory')", &[])
            .await
            .ok()?;
        let dir = std::path::PathBuf::from(row.get::<_, String>(0));
        dir.is_dir().then_some(dir)
    }

    /// User tables the connected role cannot read (pg_dump would fail on them).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn unreadable_tables(&self) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm') AND {USER_NAMESPACE}
               AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1 LIMIT 20"
        );
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| self.query_error("checking table privileges", &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Opens a `REPEATABLE READ` transaction and exports its snapshot for `pg_dump --snapshot`.
    /// Keep the inspector alive (and its transaction open) until pg_dump has finished.
    ///
    /// # Errors
    ///
    /// When the server refuses (e.g. a hot standby without `hot_standby_feedback` still works;
    /// a server that cannot export snapshots does not).
    pub async fn export_snapshot(&self) -> Result<String> {
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| self.query_error("starting the snapshot transaction", &e))?;
        let row = self
            .client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| self.query_error("exporting the snapshot", &e))?;
        Ok(row.get(0))
    }

    /// Ends the snapshot transaction.
    ///
    /// # Errors
    ///
    /// When the connection is lost.
    pub async fn end_snapshot(&self) -> Result<()> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| self.query_error("ending the snapshot transaction", &e))
    }

    /// Exact row counts, object counts, the schema listing and its fingerprints, read in the
    /// current transaction (the exported snapshot, when called after
    /// [`export_snapshot`](Self::export_snapshot)).
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn stats(&self) -> Result<(SourceStats, SchemaListing)> {
        let started = std::time::Instant::now();
        let tables = self.row_counts().await?;
        let object_counts = self.object_counts().await?;
        let counted = started.elapsed();
        let listing = self.schema_listing().await?;
        // The listing runs on every backup and every level-4 check: its cost is worth seeing.
        tracing::debug!(
            "{}: row counts in {:.2}s, schema listing ({} entries) in {:.2}s",
            self.source_name,
            counted.as_secs_f64(),
            listing.entries().len(),
            (started.elapsed() - counted).as_secs_f64()
        );
        let stats = SourceStats {
            tables,
            object_counts,
            schema_fingerprint: Some(listing.fingerprint()),
            privileges_fingerprint: Some(listing.privileges_fingerprint()),
            ..SourceStats::default()
        };
        Ok((stats, listing))
    }

    /// `count(*)` of every user table.
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn row_counts(&self) -> Result<Vec<TableStat>> {
        let rows = self
            .client
            .query(USER_TABLES, &[])
            .await
            .map_err(|e| self.query_error("listing tables", &e))?;
        let names: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut out = Vec::with_capacity(names.len());
        for batch in names.chunks(COUNT_BATCH) {
            let sql = batch
                .iter()
                .enumerate()
                .map(|(i, (s, t))| {
                    format!(
                        "SELECT {i} AS i, count(*) FROM ONLY {}.{}",
                        quote_ident(s),
                        quote_ident(t)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let counted = self
                .client
                .query(&sql, &[])
                .await
                .map_err(|e| self.query_error("counting rows", &e))?;
            let mut by_index = vec![0u64; batch.len()];
            for r in counted {
                let i: i32 = r.get(0);
                let n: i64 = r.get(1);
                if let Some(slot) = usize::try_from(i).ok().and_then(|i| by_index.get_mut(i)) {
                    *slot = u64::try_from(n).unwrap_or(0);
                }
            }
            out.extend(batch.iter().zip(by_index).map(|((s, t), rows)| TableStat {
                schema: s.clone(),
                name: t.clone(),
                rows,
            }));
        }
        Ok(out)
    }

    /// Counts of schema objects by kind.
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn object_counts(&self) -> Result<BTreeMap<String, u64>> {
        let sql = format!(
            "WITH rel AS (
               SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE {USER_NAMESPACE} AND NOT EXISTS (SELECT 1 FROM pg_depend d
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
             SELECT 'tables', count(*) FROM rel WHERE relkind IN ('r', 'p')
             UNION ALL SELECT 'views', count(*) FROM rel WHERE relkind = 'v'
             UNION ALL SELECT 'materialized_views', count(*) FROM rel WHERE relkind = 'm'
             UNION ALL SELECT 'sequences', count(*) FROM rel WHERE relkind = 'S'
             UNION ALL SELECT 'indexes', count(*) FROM rel WHERE relkind IN ('i', 'I')
             UNION ALL SELECT 'functions', count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE {USER_NAMESPACE} AND NOT EXISTS (SELECT 1 FROM pg_depend d
                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
             UNION ALL SELECT 'triggers', count(*) FROM pg_trigger WHERE NOT tgisinternal
             UNION ALL SELECT 'large_objects', count(*) FROM pg_largeobject_metadata
             UNION ALL SELECT 'extensions', count(*) FROM pg_extension WHERE extname <> 'plpgsql'
             UNION ALL SELECT 'schemas', count(*) FROM pg_namespace n WHERE {USER_NAMESPACE}"
        );
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| self.query_error("counting objects", &e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                )
            })
            .collect())
    }

    /// The first recipe of the schema fingerprint (`v1:`), kept to compare restores of backups
    /// recorded with it. It hashes the generated names of foreign keys that partitions inherit
    /// (which a restore renames) and leaves out view bodies: new backups record
    /// [`SchemaListing::fingerprint`] (`v2:`) instead.
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn schema_fingerprint_v1(&self) -> Result<String> {
        let not_ext = |class: &str, col: &str| {
            format!(
                "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{class}'::regclass AND d.objid = {col} AND d.deptype = 'e')"
            )
        };
        let rel_ext = not_ext("pg_class", "c.oid");
        let queries = [
            format!("SELECT 'schema', n.nspname FROM pg_namespace n WHERE {USER_NAMESPACE} ORDER BY 2"),
            format!(
                "SELECT 'rel', n.nspname, c.relname, c.relkind::text, c.relpersistence::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE {USER_NAMESPACE} AND c.relkind IN ('r','p','v','m','S','f') AND {rel_ext} ORDER BY 2, 3"
            ),
            format!(
                "SELECT 'col', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                        a.attnotnull::text, a.attgenerated::text, coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                 WHERE {USER_NAMESPACE} AND c.relkind IN ('r','p','v','m','f') AND a.attnum > 0 AND NOT a.attisdropped AND {rel_ext}
                 ORDER BY 2, 3, a.attnum"
            ),
            format!(
                "SELECT 'con', n.nspname, c.relname, co.conname, co.contype::text, pg_get_constraintdef(co.oid)
                 FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE {USER_NAMESPACE} AND co.contype <> 'n' AND {rel_ext} ORDER BY 2, 3, 4"
            ),
            format!(
                "SELECT 'idx', n.nspname, c.relname, pg_get_indexdef(c.oid) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE {USER_NAMESPACE} AND c.relkind IN ('i','I') AND {rel_ext} ORDER BY 2, 3"
            ),
            format!(
                "SELECT 'fn', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind::text,
                        format_type(p.prorettype, NULL), md5(coalesce(p.prosrc, ''))
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE {USER_NAMESPACE} AND {} ORDER BY 2, 3, 4",
                not_ext("pg_proc", "p.oid")
            ),
            format!(
                "SELECT 'trg', n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE NOT t.tgisinternal AND {USER_NAMESPACE} ORDER BY 2, 3, 4"
            ),
            format!(
                "SELECT 'type', n.nspname, t.typname, t.typtype::text,
                        coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), ''),
                        CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END
                 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE {USER_NAMESPACE} AND t.typtype IN ('e','d','r','m') AND {} ORDER BY 2, 3",
                not_ext("pg_type", "t.oid")
            ),
            "SELECT 'pol', schemaname::text, tablename::text, policyname::text, cmd, permissive FROM pg_policies ORDER BY 2, 3, 4".to_owned(),
            "SELECT 'ext', extname::text FROM pg_extension ORDER BY 2".to_owned(),
        ];
        let mut h = Sha256::new();
        for sql in &queries {
            let rows = self
                .client
                .query(sql.as_str(), &[])
                .await
                .map_err(|e| self.query_error("reading the schema", &e))?;
            for row in rows {
                for i in 0..row.len() {
                    let v: Option<String> = row.get(i);
                    h.update(v.as_deref().unwrap_or("\u{0}").as_bytes());
                    h.update(b"\x1f");
                }
                h.update(b"\n");
            }
        }
        Ok(format!("v1:{}", h.finish()))
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A connection failure in words that say what to check. Never includes the password.
fn connect_error(cfg: &PgSourceConfig, source_name: &str, e: &tokio_postgres::Error) -> Error {
    let location = cfg.location();
    let message = if let Some(db) = e.as_db_error() {
        match db.code().code() {
            "28P01" => format!(
                "password authentication failed for user {:?} at {location}; check the password in the source URL, PGPASSWORD or ~/.pgpass",
                cfg.user
            ),
            "28000" if db.message().contains("no encryption") => format!(
                "the server at {location} accepts only TLS connections: {}; set sslmode=require \
                 (or verify-full with sslrootcert=… to check its certificate) in the source URL or PGSSLMODE",
                db.message()
            ),
            "28000" => format!(
                "the server refused user {:?} at {location}: {}; check pg_hba.conf and the user name",
                cfg.user,
                db.message()
            ),
            "3D000" => format!("database {:?} does not exist at {location}", cfg.dbname),
            _ => format!("cannot connect to {location}: {}", db.message()),
        }
    } else {
        let mut chain = e.to_string();
        let mut cur = std::error::Error::source(e);
        while let Some(c) = cur {
            chain.push_str(": ");
            chain.push_str(&c.to_string());
            cur = c.source();
        }
        let hint = if chain.contains("password missing") {
            "; the server wants a password: put it in the source URL, PGPASSWORD or ~/.pgpass"
        } else if chain.contains("invalid peer certificate") {
            "; the server's certificate was not accepted: check sslrootcert (the CA that signed \
             it) and, with sslmode=verify-full, that the host name in the URL is one the \
             certificate names"
        } else if chain.contains("server does not support TLS") {
            "; the server does not offer TLS: enable ssl on the server, or lower sslmode"
        } else if chain.contains("channel binding") {
            "; channel_binding=require needs TLS and SCRAM authentication on the server"
        } else if let Some(d) = &cfg.docker {
            &format!(
                "; {d} has the address {} here: does the server listen on all addresses inside \
                 the container (listen_addresses = '*'), and can this machine reach the \
                 container's network (rootless Docker and Docker Desktop keep it apart)?",
                cfg.host
            )
        } else if cfg.via.is_some() {
            "; is the server running, and are its host and port in the URL the ones the jump \
             host reaches it by?"
        } else {
            "; is the server running and reachable from here?"
        };
        format!("cannot connect to {location}: {chain}{hint}")
    };
    Error::SourceUnavailable {
        source_name: source_name.to_owned(),
        message,
    }
}
