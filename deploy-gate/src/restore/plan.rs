//! [`Restores::plan_restore`]: the plan and its preflight (writes nothing), by the backend of the
//! source's kind.

use backup_core::{RestoreError, RestoreSetup};

use super::Restores;
use super::{RestorePlan, RestoreRequest, pick_source};
use crate::error::{GateError, Result};

impl Restores<'_> {
    /// Plans a restore and runs its preflight; writes nothing.
    ///
    /// # Errors
    ///
    /// - [`GateError::Usage`] (2): no such backup or source, a source kind that cannot be restored
    ///   yet, no target URL;
    /// - [`GateError::Preflight`] (5): the target is unreachable, client tools are missing,
    ///   not enough free space.
    pub async fn plan_restore(&self, request: &RestoreRequest) -> Result<RestorePlan> {
        let manifest = self.inventory().resolve_restorable(&request.backup).await?;
        // Hidden table details (`hide_table_names`) are read back for the restore's
        // comparison; without an identity the restore's verification refuses the backup.
        let manifest = match backup_core::encryption::installed_identities().is_some()
            && manifest
                .sources
                .iter()
                .any(backup_core::hidden_stats::is_hidden)
        {
            true => backup_verify::reveal_stats(self.scope().store.as_ref(), &manifest)
                .await
                .map_err(|why| GateError::Verification {
                    id: manifest.id.to_string(),
                    summary: format!("cannot read the encrypted table statistics: {why}"),
                })?,
            false => manifest,
        };
        let source = pick_source(&manifest, request.source.as_deref())?;
        let backend = self.scope().backends.for_kind(&source.kind);
        let Some((backend, restorer)) = backend.and_then(|b| Some((b, b.restorer()?))) else {
            let known: Vec<&str> = self
                .scope()
                .backends
                .backends()
                .iter()
                .filter(|b| b.restorer().is_some())
                .flat_map(|b| b.kinds().iter().copied())
                .collect();
            return Err(GateError::usage(format!(
                "source {} of backup {} is of kind {:?}: restoring it is not supported yet (this version restores {})",
                source.name,
                manifest.id,
                source.kind,
                known.join(", ")
            )));
        };
        let scheme = backend.schemes().first().copied().unwrap_or("");
        let url = match (
            &request.to,
            request.configured.iter().find(|s| s.name == source.name),
        ) {
            (Some(url), _) => url.clone(),
            (None, Some(spec)) => spec.url.clone(),
            (None, None) => {
                return Err(GateError::usage(format!(
                    "source {} of backup {} is not configured here: give the target with --to {scheme}…",
                    source.name, manifest.id
                )));
            }
        };
        if !backend.accepts(&url) {
            let given = url.split_once("://").map_or("not a URL", |(s, _)| s);
            return Err(GateError::usage(format!(
                "the restore target of source {} must be a {scheme} URL (got {given}://…)",
                source.name
            )));
        }
        let planned = restorer
            .plan(RestoreSetup {
                manifest: &manifest,
                source,
                target_url: &url,
                now: self.scope().clock.now(),
                terminate_connections: request.terminate_connections,
                temp_dir: request.temp_dir.as_deref(),
            })
            .await
            .map_err(restore_error)?;
        Ok(RestorePlan {
            backup_id: manifest.id.to_string(),
            backup_kind: manifest.kind,
            environment: self.scope().environment.clone(),
            source: source.name.to_string(),
            kind: source.kind.clone(),
            production: request.production,
            summary: planned.summary().clone(),
            planned,
        })
    }
}

/// A backend's restore failure as the gate's error, with its exit code.
pub(crate) fn restore_error(e: RestoreError) -> GateError {
    match e {
        RestoreError::Usage(message) => GateError::Usage { message },
        RestoreError::Damaged { id, summary } => GateError::Verification { id, summary },
        RestoreError::Preflight(source) => GateError::Preflight { source },
        RestoreError::Failed { message, target } => GateError::Restore { message, target },
    }
}
