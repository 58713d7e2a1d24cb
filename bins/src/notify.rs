//! Alerts around a command (`[notify]`): the ping's `start` before it runs, then one event with
//! its outcome. A channel that fails is a warning, never another exit code.

use std::sync::Mutex;
use std::time::Instant;

use deploy_gate::{GateError, Notifier, NotifyEvent, Settings};

use crate::cli::{Cli, Command};

/// What a command learnt that its event reports: the backup it made, verified or restored.
#[derive(Debug, Default)]
pub struct Facts {
    inner: Mutex<FactValues>,
}

/// The values of [`Facts`].
#[derive(Debug, Default, Clone)]
pub struct FactValues {
    /// The backup the command made, verified or restored.
    pub backup_id: Option<String>,
    /// Its stored size.
    pub stored_bytes: Option<u64>,
    /// How long its snapshot took.
    pub snapshot_seconds: Option<f64>,
    /// The level its verification reached.
    pub level: Option<String>,
}

impl Facts {
    /// Records the backup the command is about.
    pub fn backup(&self, id: &str, stored_bytes: Option<u64>, snapshot_seconds: Option<f64>) {
        if let Ok(mut f) = self.inner.lock() {
            *f = FactValues {
                backup_id: Some(id.to_owned()),
                stored_bytes,
                snapshot_seconds,
                level: None,
            };
        }
    }

    /// Records the level the backup's verification reached.
    pub fn verified(&self, level: String) {
        if let Ok(mut f) = self.inner.lock() {
            f.level = Some(level);
        }
    }

    /// What was recorded.
    pub fn get(&self) -> FactValues {
        self.inner.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// The name of a command that sends alerts, `None` for the others (and for the walks of
/// `backup --all`, `verify --all` and `status`, which send one event per target themselves).
pub fn single_command(cli: &Cli) -> Option<&'static str> {
    match &cli.command {
        Command::Run { .. } => Some("run"),
        Command::Backup { all: false, .. } => Some("backup"),
        Command::Verify { all: false, .. } => Some("verify"),
        Command::Verify { all: true, .. } => crate::all::verify_walks(cli)
            .is_ok_and(|walks| !walks)
            .then_some("verify"),
        Command::Prune(_) => Some("prune"),
        Command::Restore(_) => Some("restore"),
        _ => None,
    }
}

/// An alert in the making: the notifier of one project/environment and when the command began.
pub struct Alert {
    notifier: Notifier,
    command: &'static str,
    project: Option<String>,
    environment: String,
    started: Instant,
}

impl Alert {
    /// The alert of `command` for `settings`, its ping `start` sent; `None` when no channel
    /// is configured.
    pub async fn start(
        command: &'static str,
        project: Option<String>,
        settings: &Settings,
    ) -> Option<Alert> {
        if settings.notify.is_empty() {
            return None;
        }
        let notifier = Notifier::new(settings.notify.clone());
        warn(&notifier.start().await);
        Some(Alert {
            notifier,
            command,
            project,
            environment: settings.environment.clone(),
            started: Instant::now(),
        })
    }

    /// Sends the outcome: `result` is the command's, `facts` what it recorded.
    pub async fn finish(self, result: &Result<u8, GateError>, facts: &Facts) {
        match result {
            Ok(code) => self.finish_with(*code, None, facts).await,
            Err(e) => self.finish_with(e.exit_code().code(), Some(e), facts).await,
        }
    }

    /// Sends the outcome of one target of a walk: its result and the detail its summary shows.
    pub async fn finish_target<T>(self, result: &Result<(T, serde_json::Value), GateError>) {
        let facts = Facts::default();
        match result {
            Ok((_, detail)) => {
                if let Some(id) = detail.get("id").and_then(serde_json::Value::as_str) {
                    facts.backup(
                        id,
                        detail
                            .get("stored_bytes")
                            .and_then(serde_json::Value::as_u64),
                        detail
                            .get("snapshot_seconds")
                            .and_then(serde_json::Value::as_f64),
                    );
                }
                self.finish_with(0, None, &facts).await;
            }
            Err(e) => {
                self.finish_with(e.exit_code().code(), Some(e), &facts)
                    .await
            }
        }
    }

    async fn finish_with(self, code: u8, error: Option<&GateError>, facts: &Facts) {
        let mut event = NotifyEvent::new(self.command, self.project, self.environment, code);
        if let Some(e) = error {
            event = event.with_error(error_chain(e), e.hint().map(str::to_owned));
        }
        let f = facts.get();
        event.backup_id = f.backup_id;
        event.stored_bytes = f.stored_bytes;
        event.snapshot_seconds = f.snapshot_seconds;
        event.duration_seconds = Some(self.started.elapsed().as_secs_f64());
        warn(&self.notifier.send(&event).await);
    }
}

/// The error with its causes, as `render::Output::error` prints it.
pub fn error_chain(e: &GateError) -> String {
    let mut chain = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !chain.contains(&s) {
            chain.push_str(": ");
            chain.push_str(&s);
        }
        cur = c.source();
    }
    chain
}

fn warn(warnings: &[String]) {
    for w in warnings {
        tracing::warn!("pre-deploy: warning: {w} (the exit code is not affected)");
    }
}

/// The alert of a single command: its settings resolved as the command will, without the
/// sources and the store (alerts need neither; `restore` reads `--source` differently);
/// `None` when they do not resolve (the command then fails and says why) or nothing is
/// configured.
pub async fn start_single(cli: &Cli, command: &'static str) -> Option<Alert> {
    let mut o = crate::overrides(cli, None);
    o.sources.clear();
    // Nor the store: the command resolves it (and warns about it) itself.
    o.store = Some(".".into());
    let workdir = std::env::current_dir().ok()?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let settings = Settings::resolve(&o, &env, &workdir).ok()?;
    let project = o.project.clone().or_else(|| env("PREDEPLOY_PROJECT"));
    Alert::start(command, project, &settings).await
}
