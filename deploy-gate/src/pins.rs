//! Pins: `pre-deploy pin ID` writes `pins/<id>.json`; retention never removes a pinned backup.
//! A manifest is never rewritten, so a pin is a separate object, removed by `unpin`.

use std::collections::BTreeSet;

use backup_core::{
    BackupId, Error as CoreError, MAX_DOCUMENT_SIZE, StoreExt, ToolInfo, WriteMode, layout,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{GateError, Result};
use crate::inventory::Inventory;

/// The format of pin records this version writes.
pub const PIN_FORMAT_VERSION: u32 = 1;

/// A pin, as stored in `pins/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinRecord {
    /// [`PIN_FORMAT_VERSION`] when written by this version.
    pub format_version: u32,
    /// The pinned backup.
    pub backup_id: BackupId,
    /// When it was pinned.
    pub pinned_at: Timestamp,
    /// Why, in the operator's words (`--note`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The host the pin was made on.
    pub host: String,
    /// The tool that wrote the record.
    pub tool: ToolInfo,
    /// Fields from newer versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What `pin` did.
#[derive(Debug, Clone, Serialize)]
pub struct PinOutcome {
    /// The pin in the store (the earlier one when the backup was already pinned).
    pub pin: PinRecord,
    /// True when the backup was already pinned (nothing was written).
    pub already_pinned: bool,
}

/// What `unpin` did.
#[derive(Debug, Clone, Serialize)]
pub struct UnpinOutcome {
    /// The backup.
    pub backup_id: BackupId,
    /// False when there was no pin to remove.
    pub was_pinned: bool,
}

impl Inventory<'_> {
    /// Pins a backup (`last` or an id), so retention never removes it. Pinning a pinned backup
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] when there is no such backup; [`GateError::Store`] when the pin
    /// cannot be written.
    pub async fn pin(&self, selector: &str, note: Option<String>) -> Result<PinOutcome> {
        let manifest = self.resolve(selector).await?;
        let id = manifest.id;
        let record = PinRecord {
            format_version: PIN_FORMAT_VERSION,
            backup_id: id.clone(),
            pinned_at: self.scope.clock.now(),
            note,
            host: self.scope.host.clone(),
            tool: ToolInfo::current(),
            extra: Map::new(),
        };
        let key = layout::pin_key(&id);
        let json = serde_json::to_vec_pretty(&record).map_err(|e| GateError::Internal {
            message: format!("cannot serialize the pin: {e}"),
        })?;
        match self
            .scope
            .store
            .put_bytes(&key, json.into(), WriteMode::CreateOnly)
            .await
        {
            Ok(()) => Ok(PinOutcome {
                pin: record,
                already_pinned: false,
            }),
            Err(CoreError::AlreadyExists { .. }) => Ok(PinOutcome {
                pin: self.read_pin(&id).await?.unwrap_or(record),
                already_pinned: true,
            }),
            Err(source) => Err(GateError::Store {
                context: format!("cannot pin {id}"),
                source,
            }),
        }
    }

    /// Removes the pin of a backup (`last` or an id; the backup itself need not exist any
    /// more). Unpinning a backup that is not pinned changes nothing.
    ///
    /// # Errors
    ///
    /// [`GateError::Usage`] for a malformed id; [`GateError::Store`] when the store fails.
    pub async fn unpin(&self, selector: &str) -> Result<UnpinOutcome> {
        let id = if selector == "last" || selector == "latest" {
            self.resolve(selector).await?.id
        } else {
            selector
                .parse()
                .map_err(|e: CoreError| GateError::usage(e.to_string()))?
        };
        let key = layout::pin_key(&id);
        let store_err = |source| GateError::Store {
            context: format!("cannot unpin {id}"),
            source,
        };
        let was_pinned = self
            .scope
            .store
            .head(&key)
            .await
            .map_err(store_err)?
            .is_some();
        if was_pinned {
            self.scope.store.delete(&key).await.map_err(store_err)?;
        }
        Ok(UnpinOutcome {
            backup_id: id,
            was_pinned,
        })
    }

    /// The pin of `id`, if it is pinned.
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the pin exists but cannot be read.
    pub async fn read_pin(&self, id: &BackupId) -> Result<Option<PinRecord>> {
        let key = layout::pin_key(id);
        let bytes = match self.scope.store.get_small(&key, MAX_DOCUMENT_SIZE).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(source) => {
                return Err(GateError::Store {
                    context: format!("cannot read the pin of {id}"),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| GateError::Store {
                context: format!("cannot read the pin of {id}"),
                source: CoreError::Format {
                    key,
                    what: "pin",
                    source,
                },
            })
    }

    /// The ids of every pinned backup in the store (any environment). A pin counts by its key
    /// alone, so a damaged pin record still protects its backup.
    ///
    /// # Errors
    ///
    /// [`GateError::Store`] when the store cannot be listed.
    pub async fn pinned_ids(&self) -> Result<BTreeSet<BackupId>> {
        let objects = self
            .scope
            .store
            .list(layout::PINS_DIR)
            .await
            .map_err(|source| GateError::Store {
                context: format!("cannot list the pins in {}", self.scope.store.name()),
                source,
            })?;
        Ok(objects
            .iter()
            .filter_map(|o| layout::pin_id(&o.key))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use backup_core::testkit::MemoryStore;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pin_and_unpin_are_idempotent_and_need_a_backup() {
        let store = Arc::new(MemoryStore::new());
        let owner = crate::Gate::new(store.clone(), "default", vec![], vec![]);
        let gate = owner.inventory();
        let err = gate.pin("last", None).await.expect_err("no backup");
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
        let id = crate::prune::tests::write_backup(
            store.as_ref(),
            "2026-11-01T00:00:00Z",
            "default",
            backup_core::BackupKind::Manual,
            Some(true),
        )
        .await;
        let first = gate
            .pin("last", Some("before the migration".into()))
            .await
            .expect("pins");
        assert!(!first.already_pinned);
        assert_eq!(first.pin.backup_id, id);
        let again = gate.pin(id.as_str(), None).await.expect("pins again");
        assert!(again.already_pinned);
        assert_eq!(again.pin.note.as_deref(), Some("before the migration"));
        assert_eq!(
            gate.pinned_ids().await.expect("lists"),
            BTreeSet::from([id.clone()])
        );
        assert!(gate.unpin(id.as_str()).await.expect("unpins").was_pinned);
        assert!(!gate.unpin(id.as_str()).await.expect("unpins").was_pinned);
        assert!(gate.pinned_ids().await.expect("lists").is_empty());
        assert!(gate.unpin("not-an-id").await.is_err());
    }
}
