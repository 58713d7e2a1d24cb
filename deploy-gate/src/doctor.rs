//! `pre-deploy doctor`: a self-test of the store and the sources before anything depends on
//! them. Each probe says what it found and what the tool will do about it.

use std::time::Instant;

use backup_core::{ByteStream, DynSnapshotter, Store, StoreExt, WriteMode};
use backup_objectstore::{StoreLock, error_chain};
use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;

use crate::scope::Scope;

/// Outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// Works as needed.
    Ok,
    /// Works, with a caveat the operator should know.
    Warn,
    /// Does not work: backups would fail.
    Fail,
}

/// One probe's result.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `store` or `source NAME`.
    pub subject: String,
    /// What was tried (`write`, `create-only`, `multipart`, …).
    pub name: String,
    /// How it went.
    pub status: ProbeStatus,
    /// What it found.
    pub found: String,
    /// What the tool will do about it (or what to do).
    pub action: String,
    /// How long it took.
    pub seconds: f64,
}

/// Every probe, in order.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The store's display name.
    pub store: String,
    /// The environment.
    pub environment: String,
    /// The probes.
    pub probes: Vec<Probe>,
}

impl DoctorReport {
    /// True when no probe failed.
    pub fn ok(&self) -> bool {
        self.probes.iter().all(|p| p.status != ProbeStatus::Fail)
    }
}

/// Size of the multipart probe: over one 10 MiB part, so the upload really is multipart.
const MULTIPART_PROBE_BYTES: usize = 11 * 1024 * 1024;
/// Clock skew worth a warning.
const SKEW_WARN_SECONDS: i64 = 30;

struct Recorder {
    probes: Vec<Probe>,
}

impl Recorder {
    fn add(&mut self, subject: &str, name: &str, t: Instant, r: (ProbeStatus, String, String)) {
        let (status, found, action) = r;
        self.probes.push(Probe {
            subject: subject.to_owned(),
            name: name.to_owned(),
            status,
            found,
            action,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
}

fn ok(found: impl Into<String>, action: impl Into<String>) -> (ProbeStatus, String, String) {
    (ProbeStatus::Ok, found.into(), action.into())
}

fn fail(e: &dyn std::error::Error, action: impl Into<String>) -> (ProbeStatus, String, String) {
    (ProbeStatus::Fail, error_chain(e), action.into())
}

/// The probes of `doctor` over a [`Scope`] and its sources: see [`crate::Gate::doctor`].
#[derive(Debug, Clone, Copy)]
pub struct Doctor<'g> {
    pub(crate) scope: &'g Scope,
    pub(crate) snapshotters: &'g [DynSnapshotter],
}

impl Doctor<'_> {
    /// Runs every probe against the store and the sources. Writes only under `.probe/` and
    /// removes what it wrote.
    pub async fn run(&self) -> DoctorReport {
        let mut rec = Recorder { probes: Vec::new() };
        let store = self.scope.store.as_ref();
        let key = format!(
            ".probe/doctor-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        );
        let payload = Bytes::from_static(b"pre-deploy doctor probe");

        let t = Instant::now();
        let before = Timestamp::now();
        let wrote = store
            .put_bytes(&key, payload.clone(), WriteMode::Overwrite)
            .await;
        let after = Timestamp::now();
        let writable = wrote.is_ok();
        rec.add(
            "store",
            "write",
            t,
            match &wrote {
                Ok(()) => ok("a small object was written", "backups can be stored"),
                Err(e) => fail(
                    e,
                    "fix the store's location, credentials or permissions; run/backup refuse \
                     with exit 5 until this passes",
                ),
            },
        );
        if !writable {
            return self.finish_doctor(rec).await;
        }

        let t = Instant::now();
        let read = store.get_all(&key).await;
        rec.add(
            "store",
            "read",
            t,
            match read {
                Ok(b) if b == payload => ok("read back the same bytes", "backups can be verified"),
                Ok(_) => (
                    ProbeStatus::Fail,
                    "read back different bytes than were written".into(),
                    "the store corrupts data: do not use it".into(),
                ),
                Err(e) => fail(
                    &e,
                    "grant read access: verification reads every artifact back",
                ),
            },
        );

        let t = Instant::now();
        let listed = store.list(".probe/").await;
        rec.add(
            "store",
            "list",
            t,
            match &listed {
                Ok(l) if l.iter().any(|o| o.key == key) => ok(
                    "the new object is listed at once",
                    "listing backups and locks works",
                ),
                Ok(_) => (
                    ProbeStatus::Fail,
                    "the object just written is not listed (listing is not read-after-write \
                     consistent)"
                        .into(),
                    "locks cannot work on this store; use another store".into(),
                ),
                Err(e) => fail(
                    e,
                    "grant list access: backups and locks are found by listing",
                ),
            },
        );

        // Clock skew: the store's time of the write against ours around it.
        if let Ok(l) = &listed
            && let Some(obj) = l.iter().find(|o| o.key == key)
        {
            let t = Instant::now();
            let skew = if obj.last_modified < before {
                -before.duration_since(obj.last_modified).as_secs()
            } else if obj.last_modified > after {
                obj.last_modified.duration_since(after).as_secs()
            } else {
                0
            };
            let found = format!("the store's clock is {skew:+}s from this machine's");
            rec.add(
                "store",
                "clock skew",
                t,
                if skew.abs() > SKEW_WARN_SECONDS {
                    (
                        ProbeStatus::Warn,
                        found,
                        "lock expiry is judged in the store's time, so locking still works; \
                         backup ids and ages use this machine's clock: fix its time (NTP)"
                            .into(),
                    )
                } else {
                    ok(found, "nothing to do")
                },
            );
        }

        let t = Instant::now();
        let deleted = store.delete(&key).await;
        rec.add(
            "store",
            "delete",
            t,
            match deleted {
                Ok(()) => ok(
                    "the probe object was removed",
                    "retention can remove old backups",
                ),
                Err(e) => fail(
                    &e,
                    "backups would be refused: the lock, failed-backup cleanup and prune all \
                     delete objects (an object under .probe/ was left behind)",
                ),
            },
        );

        let t = Instant::now();
        let create_only = store.detect_create_only().await;
        rec.add(
            "store",
            "create-only writes",
            t,
            match create_only {
                Ok(true) => ok(
                    "honoured: a second create-only write of a key is refused",
                    "manifests and verification records are written create-only",
                ),
                Ok(false) => (
                    ProbeStatus::Warn,
                    "not honoured: the server silently overwrites (Garage does)".into(),
                    "create-only writes check for the key first (a race could still overwrite, \
                     but keys are unique per backup); the lock does not depend on it"
                        .into(),
                ),
                Err(e) => fail(
                    &e,
                    "the store refused a conditional write; check its permissions",
                ),
            },
        );

        let t = Instant::now();
        let mp_key = format!("{key}-multipart");
        let chunk = Bytes::from(vec![0x5a; 1024 * 1024]);
        let chunks = MULTIPART_PROBE_BYTES / chunk.len();
        let data: ByteStream = Box::pin(futures::stream::iter(
            (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        ));
        let multipart = match store.put_stream(&mp_key, data).await {
            Ok(n) => match store.head(&mp_key).await {
                Ok(Some(info)) if info.size == n => Ok(n),
                Ok(other) => Err(format!(
                    "the upload reported {n} bytes, the store {other:?}"
                )),
                Err(e) => Err(error_chain(&e)),
            },
            Err(e) => Err(error_chain(&e)),
        };
        let _ = store.delete(&mp_key).await;
        let seconds = t.elapsed().as_secs_f64();
        rec.add(
            "store",
            "multipart upload",
            t,
            match multipart {
                Ok(n) => ok(
                    format!(
                        "{} MiB in parts of 10 MiB at {:.0} MiB/s",
                        n / (1024 * 1024),
                        n as f64 / (1024.0 * 1024.0) / seconds.max(0.001)
                    ),
                    "artifacts stream up with bounded memory; failed uploads are aborted",
                ),
                Err(e) => (
                    ProbeStatus::Fail,
                    e,
                    "large artifacts cannot be stored: check the store's multipart permissions \
                     (s3:AbortMultipartUpload, s3:ListMultipartUploadParts)"
                        .into(),
                ),
            },
        );

        if store.capabilities().local
            && let Some(backup_objectstore::StoreUrl::Local(dir)) = &self.scope.store_url
        {
            let t = Instant::now();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o777);
            rec.add(
                "store",
                "permissions",
                t,
                match mode {
                    Ok(m) if m & 0o077 == 0 => ok(
                        format!("{} is {m:o}", dir.display()),
                        "only its owner can read the dumps",
                    ),
                    Ok(m) => (
                        ProbeStatus::Warn,
                        format!("{} is {m:o}: others can read the dumps", dir.display()),
                        format!("run `chmod 700 {}`", dir.display()),
                    ),
                    Err(e) => fail(&e, "check the directory"),
                },
            );
        }
        self.finish_doctor(rec).await
    }

    async fn finish_doctor(&self, mut rec: Recorder) -> DoctorReport {
        let t = Instant::now();
        let lock = StoreLock::new(
            self.scope.store.clone(),
            &self.scope.environment,
            self.scope.lock_ttl,
        );
        rec.add(
            "store",
            "lock",
            t,
            match lock.holders().await {
                Ok(h) if h.is_empty() => ok(
                    format!("environment {} is not locked", self.scope.environment),
                    "a run can start now",
                ),
                Ok(h) => {
                    // By this machine's clock (the lease's own expiry); a run judges it in the
                    // store's time, so this is a forecast, not the verdict.
                    let now = Timestamp::now();
                    let (expired, live): (Vec<_>, Vec<_>) =
                        h.iter().partition(|l| l.expires_at < now);
                    let describe = |ls: &[&backup_objectstore::Lease]| {
                        ls.iter()
                            .map(|l| l.describe())
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    if live.is_empty() {
                        (
                            ProbeStatus::Warn,
                            format!(
                                "only expired leases of runs that stopped: {}",
                                describe(&expired)
                            ),
                            "a run now takes them over and reports it".into(),
                        )
                    } else {
                        (
                            ProbeStatus::Warn,
                            format!("held by {}", describe(&live)),
                            "a run now would exit 6 (or wait with --wait-lock)".into(),
                        )
                    }
                }
                Err(e) => fail(&e, "locks need list and read access under locks/"),
            },
        );
        for s in self.snapshotters {
            let t = Instant::now();
            let subject = format!("source {}", s.source_name());
            let r = match s.preflight().await {
                Ok(p) => {
                    let mut found = format!("{} at {}", s.kind(), s.location());
                    if let Some(v) = &p.server_version {
                        found.push_str(&format!(", server {v}"));
                    }
                    if let Some(tool) = &p.tool {
                        found.push_str(&format!(", {tool}"));
                    }
                    for n in &p.notes {
                        found.push_str(&format!("; {n}"));
                    }
                    ok(found, "it can be backed up")
                }
                Err(e) => fail(
                    &e,
                    "fix the source; run/backup refuse with exit 5 until this passes",
                ),
            };
            rec.add(&subject, "preflight", t, r);
        }
        DoctorReport {
            store: self.scope.store.name().to_owned(),
            environment: self.scope.environment.clone(),
            probes: rec.probes,
        }
    }
}
