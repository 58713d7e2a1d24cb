//! Putting a restored database in place of another: the MySQL/MariaDB mechanics of
//! `pre-deploy restore`.
//!
//! MySQL has no `RENAME DATABASE`. The tables move instead, all in **one** `RENAME TABLE`
//! statement (atomic: another session sees either every old table or every new one, never a
//! mix): the target's tables to `<db>__predeploy_before_<time>`, the restored ones into the
//! target. What cannot move between databases is recreated around that statement: triggers (a
//! table with triggers cannot change database), views (a view cannot be renamed into another
//! database), stored routines and events (they belong to a database). So:
//!
//! 1. the definitions of both sides are read (`SHOW CREATE …`, with their `sql_mode`),
//! 2. triggers and views are dropped on both sides, routines and events in the target,
//! 3. the one `RENAME TABLE` moves the tables,
//! 4. the restored routines, views, triggers and events are created in the target, and the
//!    previous triggers, views and routines in the kept database (its events are not: they
//!    would run there; they are in the safety backup).
//!
//! Between steps 2 and 4 (milliseconds) a session can see the target without its triggers,
//! views, routines or events: only the table swap is atomic. A failure at any step undoes the
//! steps done (the restorer's undo), putting the previous tables and objects back.

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Row};

use crate::admin::MysqlAdmin;
use crate::config::MysqlSourceConfig;
use crate::inspector::quote_ident;
use crate::restore::MysqlSwapNames;
use crate::schema::MARKER_PREFIX;

/// The objects of one database that a swap moves or recreates.
#[derive(Debug, Clone, Default)]
pub struct DatabaseObjects {
    /// Base tables (and sequences), without pre-deploy's labels.
    pub tables: Vec<String>,
    /// Views: name and `CREATE VIEW` statement (unqualified).
    pub views: Vec<(String, String)>,
    /// Triggers in firing order: name, `sql_mode`, `CREATE TRIGGER` statement.
    pub triggers: Vec<(String, String, String)>,
    /// Routines: `PROCEDURE name` or `FUNCTION name`, `sql_mode`, `CREATE …` statement.
    pub routines: Vec<(String, String, String)>,
    /// Events: name, `sql_mode`, time zone, `CREATE EVENT` statement.
    pub events: Vec<(String, String, String, String)>,
}

/// A connection whose default database is `db` (so `SHOW CREATE VIEW` leaves its own tables
/// unqualified, and created objects land there).
async fn connect_to(config: &MysqlSourceConfig, db: &str) -> Result<Conn, String> {
    let opts = config
        .with_database(db)
        .connect_opts()
        .map_err(|e| e.to_string())?;
    let mut conn = Conn::new(opts)
        .await
        .map_err(|e| format!("cannot connect to database {db}: {e}"))?;
    // A session holding a table (an open transaction) must make a statement of the swap fail
    // in bounded time, not wait for the server's default of a year.
    conn.query_drop(format!(
        "SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"
    ))
    .await
    .map_err(|e| format!("setting lock_wait_timeout: {e}"))?;
    Ok(conn)
}

/// How long a statement of the swap waits for a table another session holds.
pub const LOCK_WAIT_SECONDS: u32 = 30;

impl DatabaseObjects {
    /// The triggers, views, routines and events of `self` that `other` does not have exactly.
    fn without(&self, other: &DatabaseObjects) -> DatabaseObjects {
        DatabaseObjects {
            tables: Vec::new(),
            views: self
                .views
                .iter()
                .filter(|v| !other.views.contains(v))
                .cloned()
                .collect(),
            triggers: self
                .triggers
                .iter()
                .filter(|t| !other.triggers.contains(t))
                .cloned()
                .collect(),
            routines: self
                .routines
                .iter()
                .filter(|r| !other.routines.contains(r))
                .cloned()
                .collect(),
            events: self
                .events
                .iter()
                .filter(|e| !other.events.contains(e))
                .cloned()
                .collect(),
        }
    }
}

fn cell(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

async fn show(conn: &mut Conn, sql: String, column: usize, what: &str) -> Result<Row, String> {
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| format!("reading the definition of {what}: {e}"))?;
    let row = row.ok_or_else(|| format!("{what} vanished"))?;
    if cell(&row, column).is_none() {
        return Err(format!(
            "the definition of {what} cannot be read (the user needs the privileges to see it)"
        ));
    }
    Ok(row)
}

/// Reads what [`DatabaseObjects`] holds for database `db`.
///
/// # Errors
///
/// A message naming what could not be read.
pub async fn read_objects(config: &MysqlSourceConfig, db: &str) -> Result<DatabaseObjects, String> {
    let mut conn = connect_to(config, db).await?;
    let r = read_with(&mut conn, db).await;
    let _ = conn.disconnect().await;
    r
}

async fn read_with(conn: &mut Conn, db: &str) -> Result<DatabaseObjects, String> {
    // Views are recreated in another database: their own database's qualifier must go (the
    // server leaves it out for the current database, but not always for every reference).
    let qualifier = format!("{}.", quote_ident(db));
    let list = |e: mysql_async::Error| format!("listing the objects: {e}");
    let mut out = DatabaseObjects::default();
    let tables: Vec<String> = conn
        .query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
        )
        .await
        .map_err(list)?;
    out.tables = tables
        .into_iter()
        .filter(|t| !t.starts_with(MARKER_PREFIX))
        .collect();
    let views: Vec<String> = conn
        .query("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME")
        .await
        .map_err(list)?;
    for v in views {
        let what = format!("view {v}");
        let row = show(
            conn,
            format!("SHOW CREATE VIEW {}", quote_ident(&v)),
            1,
            &what,
        )
        .await?;
        out.views
            .push((v, cell(&row, 1).unwrap_or_default().replace(&qualifier, "")));
    }
    let triggers: Vec<String> = conn
        .query(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
        )
        .await
        .map_err(list)?;
    for t in triggers {
        let what = format!("trigger {t}");
        let row = show(
            conn,
            format!("SHOW CREATE TRIGGER {}", quote_ident(&t)),
            2,
            &what,
        )
        .await?;
        out.triggers.push((
            t,
            cell(&row, 1).unwrap_or_default(),
            cell(&row, 2).unwrap_or_default(),
        ));
    }
    let routines: Vec<(String, String)> = conn
        .query(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
        )
        .await
        .map_err(list)?;
    for (kind, name) in routines {
        let what = format!("{} {name}", kind.to_lowercase());
        let row = show(
            conn,
            format!("SHOW CREATE {kind} {}", quote_ident(&name)),
            2,
            &what,
        )
        .await?;
        out.routines.push((
            format!("{kind} {}", quote_ident(&name)),
            cell(&row, 1).unwrap_or_default(),
            cell(&row, 2).unwrap_or_default(),
        ));
    }
    let events: Vec<String> = conn
        .query("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE() ORDER BY EVENT_NAME")
        .await
        .map_err(list)?;
    for e in events {
        let what = format!("event {e}");
        let row = show(
            conn,
            format!("SHOW CREATE EVENT {}", quote_ident(&e)),
            3,
            &what,
        )
        .await?;
        out.events.push((
            e,
            cell(&row, 1).unwrap_or_default(),
            cell(&row, 2).unwrap_or_default(),
            cell(&row, 3).unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// Which objects [`drop_objects`] and [`create_objects`] handle.
#[derive(Debug, Clone, Copy)]
pub struct Kinds {
    /// Triggers and views (they block a table move).
    pub triggers_and_views: bool,
    /// Routines.
    pub routines: bool,
    /// Events.
    pub events: bool,
}

/// Every kind.
pub const ALL: Kinds = Kinds {
    triggers_and_views: true,
    routines: true,
    events: true,
};

/// Drops `objects`' triggers, views, routines and events (as `kinds` says) from database `db`.
///
/// # Errors
///
/// The first statement that failed.
pub async fn drop_objects(
    config: &MysqlSourceConfig,
    db: &str,
    objects: &DatabaseObjects,
    kinds: Kinds,
) -> Result<(), String> {
    let mut conn = connect_to(config, db).await?;
    let q = quote_ident(db);
    let mut statements = Vec::new();
    if kinds.triggers_and_views {
        for (t, _, _) in &objects.triggers {
            statements.push(format!("DROP TRIGGER IF EXISTS {q}.{}", quote_ident(t)));
        }
        for (v, _) in &objects.views {
            statements.push(format!("DROP VIEW IF EXISTS {q}.{}", quote_ident(v)));
        }
    }
    if kinds.routines {
        for (r, _, _) in &objects.routines {
            // `PROCEDURE `name`` → `DROP PROCEDURE IF EXISTS db.`name``
            if let Some((kind, name)) = r.split_once(' ') {
                statements.push(format!("DROP {kind} IF EXISTS {q}.{name}"));
            }
        }
    }
    if kinds.events {
        for (e, _, _, _) in &objects.events {
            statements.push(format!("DROP EVENT IF EXISTS {q}.{}", quote_ident(e)));
        }
    }
    let mut result = Ok(());
    for sql in statements {
        if let Err(e) = conn.query_drop(&sql).await {
            result = Err(format!("{sql}: {e}"));
            break;
        }
    }
    let _ = conn.disconnect().await;
    result
}

/// Creates `objects`' routines, views, triggers and events (as `kinds` says) in database `db`,
/// each with its `sql_mode` (and time zone for events). Views are created in dependency order
/// (one that fails waits until no other can be created).
///
/// # Errors
///
/// The first statement that failed for good.
pub async fn create_objects(
    config: &MysqlSourceConfig,
    db: &str,
    objects: &DatabaseObjects,
    kinds: Kinds,
) -> Result<(), String> {
    let mut conn = connect_to(config, db).await?;
    let r = create_with(&mut conn, objects, kinds).await;
    let _ = conn.disconnect().await;
    r
}

async fn with_mode(conn: &mut Conn, mode: &str, sql: &str) -> Result<(), String> {
    conn.exec_drop("SET SESSION sql_mode = ?", (mode,))
        .await
        .map_err(|e| format!("SET sql_mode: {e}"))?;
    conn.query_drop(sql).await.map_err(|e| e.to_string())
}

async fn create_with(
    conn: &mut Conn,
    objects: &DatabaseObjects,
    kinds: Kinds,
) -> Result<(), String> {
    let original: Option<String> = conn
        .query_first("SELECT @@SESSION.sql_mode")
        .await
        .map_err(|e| e.to_string())?;
    if kinds.routines {
        for (name, mode, sql) in &objects.routines {
            with_mode(conn, mode, sql)
                .await
                .map_err(|e| format!("creating {name}: {e}"))?;
        }
    }
    if kinds.triggers_and_views {
        let mut pending: Vec<&(String, String)> = objects.views.iter().collect();
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut last_error = String::new();
            for view in &pending {
                if let Err(e) = conn.query_drop(&view.1).await {
                    last_error = format!("creating view {}: {e}", view.0);
                    failed.push(*view);
                }
            }
            if failed.len() == pending.len() {
                return Err(last_error);
            }
            pending = failed;
        }
        for (name, mode, sql) in &objects.triggers {
            with_mode(conn, mode, sql)
                .await
                .map_err(|e| format!("creating trigger {name}: {e}"))?;
        }
    }
    if kinds.events {
        for (name, mode, zone, sql) in &objects.events {
            conn.exec_drop("SET SESSION time_zone = ?", (zone,))
                .await
                .map_err(|e| format!("creating event {name}: {e}"))?;
            with_mode(conn, mode, sql)
                .await
                .map_err(|e| format!("creating event {name}: {e}"))?;
        }
    }
    if let Some(mode) = original {
        let _ = conn.exec_drop("SET SESSION sql_mode = ?", (mode,)).await;
    }
    Ok(())
}

/// The one `RENAME TABLE` statement that moves `out_tables` from `db` to `aside` and
/// `in_tables` from `from` into `db` (the moves out first, so names never collide).
pub fn rename_statement(
    db: &str,
    aside: &str,
    out_tables: &[String],
    from: &str,
    in_tables: &[String],
) -> Option<String> {
    let (d, a, f) = (quote_ident(db), quote_ident(aside), quote_ident(from));
    let moves: Vec<String> = out_tables
        .iter()
        .map(|t| format!("{d}.{q} TO {a}.{q}", q = quote_ident(t)))
        .chain(
            in_tables
                .iter()
                .map(|t| format!("{f}.{q} TO {d}.{q}", q = quote_ident(t))),
        )
        .collect();
    (!moves.is_empty()).then(|| format!("RENAME TABLE {}", moves.join(", ")))
}

/// One swap of a restored database into the target, and its undo.
#[derive(Debug)]
pub(crate) struct MysqlSwap {
    pub(crate) config: MysqlSourceConfig,
    pub(crate) names: MysqlSwapNames,
    pub(crate) target_existed: bool,
    /// The target's objects before the swap.
    pub(crate) old: DatabaseObjects,
    /// The restored database's objects.
    pub(crate) new: DatabaseObjects,
    /// Whether the kept database (or, for a target that did not exist, the target) was created
    /// by this swap.
    pub(crate) aside_created: bool,
    /// Whether anything in the target or the new database was dropped or moved.
    pub(crate) touched: bool,
    /// Whether the `RENAME TABLE` ran.
    pub(crate) renamed: bool,
}

const MOVABLE: Kinds = Kinds {
    triggers_and_views: true,
    routines: false,
    events: false,
};

impl MysqlSwap {
    /// Steps 1–4 of the module docs; returns the sessions terminated.
    pub(crate) async fn run(&mut self, terminate: bool) -> Result<u64, String> {
        let n = &self.names;
        tracing::info!("restore: swapping {} into {}", n.restoring, n.target);
        let mut admin = MysqlAdmin::connect(&self.config, "restore")
            .await
            .map_err(|e| e.to_string())?;
        let result = self.run_with(&mut admin, terminate).await;
        admin.close().await;
        result
    }

    async fn run_with(&mut self, admin: &mut MysqlAdmin, terminate: bool) -> Result<u64, String> {
        let n = self.names.clone();
        let _ = admin
            .execute(
                "setting the lock wait",
                &format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"),
            )
            .await;
        let mut terminated = 0;
        if self.target_existed {
            let sessions = admin
                .sessions_on(&n.target)
                .await
                .map_err(|e| e.to_string())?;
            if !sessions.is_empty() {
                if !terminate {
                    return Err(format!(
                        "{} session(s) connected to {} meanwhile: pass --terminate-connections to end them for the swap",
                        sessions.len(),
                        n.target
                    ));
                }
                terminated = admin
                    .terminate_sessions(&n.target)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.old = read_objects(&self.config, &n.target).await?;
        }
        self.new = read_objects(&self.config, &n.restoring).await?;
        let charset = charset_of_database(
            admin,
            if self.target_existed {
                &n.target
            } else {
                &n.restoring
            },
        )
        .await;
        let kept = admin
            .create_work_database(
                if self.target_existed {
                    &n.before
                } else {
                    &n.target
                },
                charset.as_ref(),
                &format!("tables of {} before a restore", n.target),
            )
            .await
            .map_err(|e| e.to_string())?;
        // The kept database (or the new target) is the operator's now, not a work leftover.
        kept.keep();
        self.aside_created = true;
        if !self.target_existed {
            // Created for the restore: the label table goes, the target holds data only.
            let _ = admin
                .execute(
                    "removing the label",
                    &format!(
                        "DROP TABLE IF EXISTS {}.{}",
                        quote_ident(&n.target),
                        quote_ident(crate::admin::LABEL_TABLE)
                    ),
                )
                .await;
        }
        // 2. What cannot move: triggers and views on both sides, routines and events in the
        // target.
        self.touched = true;
        drop_objects(&self.config, &n.restoring, &self.new, MOVABLE).await?;
        if self.target_existed {
            drop_objects(&self.config, &n.target, &self.old, ALL).await?;
        }
        // 3. The one atomic statement.
        if let Some(sql) = rename_statement(
            &n.target,
            &n.before,
            &self.old.tables,
            &n.restoring,
            &self.new.tables,
        ) {
            admin
                .execute("moving the tables", &sql)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.renamed = true;
        // 4. The restored objects in the target; the previous ones (but events) kept aside.
        create_objects(&self.config, &n.target, &self.new, ALL).await?;
        if self.target_existed {
            let aside = Kinds {
                triggers_and_views: true,
                routines: true,
                events: false,
            };
            if let Err(e) = create_objects(&self.config, &n.before, &self.old, aside).await {
                tracing::warn!(
                    "could not recreate the previous triggers, views or routines in {}: {e}",
                    n.before
                );
            }
        }
        Ok(terminated)
    }

    /// Puts the target back as it was: the restored objects dropped, the tables moved back, the
    /// previous objects recreated; the kept database dropped when it was made by this swap.
    pub(crate) async fn undo(&self) -> Result<(), String> {
        let mut admin = MysqlAdmin::connect(&self.config, "restore")
            .await
            .map_err(|e| e.to_string())?;
        let _ = admin
            .execute(
                "setting the lock wait",
                &format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"),
            )
            .await;
        let result = self.undo_with(&mut admin).await;
        admin.close().await;
        result
    }

    async fn undo_with(&self, admin: &mut MysqlAdmin) -> Result<(), String> {
        let n = &self.names;
        let aside = if self.target_existed {
            &n.before
        } else {
            &n.target
        };
        if !self.touched {
            // Nothing was dropped or moved: only the database this swap created goes.
            if self.aside_created {
                admin
                    .drop_database(aside)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        let exists = admin
            .database_exists(&n.target)
            .await
            .map_err(|e| e.to_string())?;
        if !self.renamed {
            // The tables never moved: drop what is not the target's own, recreate what of its
            // own is missing (statements that never ran change nothing).
            if exists && self.target_existed {
                let now = read_objects(&self.config, &n.target).await?;
                drop_objects(&self.config, &n.target, &now.without(&self.old), ALL).await?;
                create_objects(&self.config, &n.target, &self.old.without(&now), ALL).await?;
            }
        } else {
            // Every trigger in the target and the kept database blocks the move back.
            if exists {
                let now = read_objects(&self.config, &n.target).await?;
                drop_objects(&self.config, &n.target, &now, ALL).await?;
            }
            if self.target_existed
                && admin
                    .database_exists(&n.before)
                    .await
                    .map_err(|e| e.to_string())?
            {
                let kept = read_objects(&self.config, &n.before).await?;
                drop_objects(&self.config, &n.before, &kept, ALL).await?;
            }
            // The restored tables back to the new database, the previous ones home.
            if let Some(sql) = rename_statement(
                &n.target,
                &n.restoring,
                &self.new.tables,
                &n.before,
                &self.old.tables,
            ) {
                admin
                    .execute("moving the tables back", &sql)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if self.target_existed {
                create_objects(&self.config, &n.target, &self.old, ALL).await?;
            }
        }
        if self.aside_created {
            admin
                .drop_database(aside)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

async fn charset_of_database(admin: &mut MysqlAdmin, db: &str) -> Option<(String, String)> {
    let rows = admin
        .rows(
            "reading the character set",
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            db,
        )
        .await
        .ok()?;
    let row = rows.first()?;
    let get = |i| match row.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    Some((get(0)?, get(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_moves_the_old_tables_out_first() {
        let sql = rename_statement(
            "app",
            "app__predeploy_before_x",
            &["a".into(), "b`c".into()],
            "app__predeploy_restore_y",
            &["a".into()],
        )
        .expect("moves");
        assert_eq!(
            sql,
            "RENAME TABLE `app`.`a` TO `app__predeploy_before_x`.`a`, `app`.`b``c` TO `app__predeploy_before_x`.`b``c`, `app__predeploy_restore_y`.`a` TO `app`.`a`"
        );
        assert!(rename_statement("a", "b", &[], "c", &[]).is_none());
    }
}
