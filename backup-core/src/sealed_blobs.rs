//! Sealed blobs: how bucket and directory objects are stored when encryption is on.
//!
//! Unencrypted, an object's blob is named by the SHA-256 of its bytes (`blobs/sha256/…`), which
//! lets an observer of the store confirm a guessed file (hash it, look for the name) and see
//! that two stores hold the same file. Encrypted, a blob is:
//!
//! - **named** by HMAC-SHA-256 of the plaintext's SHA-256 under a secret, the *blob-name key*
//!   (`blobs/sealed/<2 hex>/<64 hex>`): without the secret a name says nothing about the bytes,
//!   and two stores (or two recipient sets) name the same file differently;
//! - **sealed**: its bytes age-encrypted to the recipients, like every other artifact.
//!
//! The blob-name key belongs to a recipient set (see [`Recipients::set_id`]) and is kept in the
//! store at `keys/blob-names/<set id>.age`, encrypted to that set. The first backup of a set
//! creates it (public recipients suffice); later backups read it with the installed identity, so
//! unchanged objects are not stored twice. A backup without an identity cannot read it: it names
//! its blobs with a key of its own (a warning says so), which is safe and only costs
//! deduplication. Changing the recipients starts a new set, so every blob a new backup references
//! can be opened by the new recipients.
//!
//! Restoring needs no blob-name key: the (encrypted) index names each object's blob.

use std::fmt;

use bytes::Bytes;
use hmac::{Hmac, Mac};

use crate::digest::Digest;
use crate::encryption::{Recipients, installed_identities};
use crate::error::{Error, Result};
use crate::layout;
use crate::store::{Store, StoreExt, WriteMode};

/// The field of a bucket source's manifest entry that records the recipient set its blobs are
/// sealed to (absent: plain `blobs/sha256/` blobs).
pub const SEALING_FIELD: &str = "blob_sealing";

/// The secret naming sealed blobs. Prints as its origin, never as its bytes.
#[derive(Clone)]
pub struct BlobNameKey {
    secret: [u8; 32],
    shared: bool,
}

impl fmt::Debug for BlobNameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobNameKey")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl BlobNameKey {
    /// A key from 32 secret bytes (`shared`: it is the recipient set's stored key).
    pub fn from_secret(secret: [u8; 32], shared: bool) -> Self {
        BlobNameKey { secret, shared }
    }

    /// A fresh random key, not stored anywhere.
    ///
    /// # Errors
    ///
    /// When the system's random source fails.
    pub fn random() -> Result<Self> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| {
            Error::io(
                "cannot draw a random blob-name key",
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok(BlobNameKey {
            secret,
            shared: false,
        })
    }

    /// Whether this is the recipient set's stored key (objects deduplicate against earlier
    /// backups), rather than one of this backup's own.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The store key of the sealed blob holding the bytes whose SHA-256 is `plaintext`.
    pub fn blob_key(&self, plaintext: &Digest) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        mac.update(b"pre-deploy sealed blob v1\n");
        mac.update(plaintext.as_bytes());
        layout::sealed_blob_key(&hex::encode(mac.finalize().into_bytes()))
    }
}

/// The blob-name key of `recipients` in `store`: read with the installed identity, created when
/// the store has none, or (without a usable identity) a key of this backup's own.
///
/// # Errors
///
/// The store's error when the key cannot be looked up or stored (the store is down).
pub async fn blob_name_key(store: &dyn Store, recipients: &Recipients) -> Result<BlobNameKey> {
    let key = layout::blob_name_key_key(&recipients.set_id());
    for _attempt in 0..2 {
        match store.get_small(&key, 64 * 1024).await {
            Ok(sealed) => return open_stored(&key, &sealed).await,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let fresh = BlobNameKey::random()?;
        let sealed = recipients
            .seal(hex::encode(fresh.secret).as_bytes())
            .map_err(|e| Error::io("cannot encrypt the blob-name key", e))?;
        match store
            .put_bytes(&key, Bytes::from(sealed), WriteMode::CreateOnly)
            .await
        {
            Ok(()) => {
                tracing::info!("created the blob-name key {key} for this recipient set");
                return Ok(BlobNameKey {
                    shared: true,
                    ..fresh
                });
            }
            // Another backup created it first: read theirs.
            Err(Error::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    own_key(&key, "it could not be created or read")
}

/// The stored key opened with the installed identity, or this backup's own key.
async fn open_stored(key: &str, sealed: &[u8]) -> Result<BlobNameKey> {
    let Some(ids) = installed_identities() else {
        return own_key(
            key,
            "there is no age identity to open it with (set PREDEPLOY_AGE_IDENTITY_FILE or [encryption] identity_file)",
        );
    };
    let opened = match ids.open_bytes(sealed).await {
        Ok(plain) => parse_secret(&plain).ok_or_else(|| "it is not a blob-name key".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match opened {
        Ok(secret) => Ok(BlobNameKey::from_secret(secret, true)),
        Err(why) => own_key(key, &why),
    }
}

/// A fresh key of this backup's own, with a warning saying what it costs.
fn own_key(key: &str, why: &str) -> Result<BlobNameKey> {
    tracing::warn!(
        "cannot use the blob-name key {key}: {why}; this backup names its encrypted blobs with a \
         key of its own, so every object is stored again instead of deduplicated"
    );
    BlobNameKey::random()
}

fn parse_secret(plain: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(plain).ok()?.trim();
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::Identities;
    use crate::testkit::MemoryStore;
    use age::secrecy::ExposeSecret;

    fn recipients_and_identity(dir: &std::path::Path) -> (Recipients, Identities) {
        use std::os::unix::fs::PermissionsExt;
        let id = age::x25519::Identity::generate();
        let path = dir.join("key.txt");
        std::fs::write(&path, id.to_string().expose_secret()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (
            Recipients::parse(&[id.to_public().to_string()]).expect("recipient"),
            Identities::from_file(&path).expect("identity"),
        )
    }

    #[test]
    fn names_are_keyed_and_say_nothing_of_the_plain_digest() {
        let d = Digest::of(b"guessable file");
        let a = BlobNameKey::from_secret([1; 32], true);
        let b = BlobNameKey::from_secret([2; 32], true);
        assert_eq!(a.blob_key(&d), a.blob_key(&d));
        assert_ne!(a.blob_key(&d), b.blob_key(&d));
        assert!(layout::is_sealed_blob_key(&a.blob_key(&d)));
        assert!(!a.blob_key(&d).contains(&d.hex()));
        assert!(!format!("{a:?}").contains("1, 1"));
    }

    /// One test, as it installs process-wide identities.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stored_key_is_created_once_and_read_back_with_the_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (recipients, identities) = recipients_and_identity(dir.path());
        let store = MemoryStore::new();
        let d = Digest::of(b"x");

        crate::encryption::install_identities(None);
        let first = blob_name_key(&store, &recipients).await.expect("created");
        assert!(first.is_shared());
        let stored_key = layout::blob_name_key_key(&recipients.set_id());
        let stored = store.get_all(&stored_key).await.expect("stored");
        assert!(stored.starts_with(b"age-encryption.org/v1"));
        assert!(!String::from_utf8_lossy(&stored).contains(&hex::encode(first.secret)));

        // Without an identity the stored key cannot be read: a key of its own.
        let keyless = blob_name_key(&store, &recipients).await.expect("own key");
        assert!(!keyless.is_shared());
        assert_ne!(keyless.blob_key(&d), first.blob_key(&d));

        crate::encryption::install_identities(Some(identities));
        let again = blob_name_key(&store, &recipients).await.expect("read");
        assert!(again.is_shared());
        assert_eq!(again.blob_key(&d), first.blob_key(&d));

        // Another recipient set has a key of its own.
        let (others, _) = recipients_and_identity(tempfile::tempdir().expect("dir").path());
        assert_ne!(others.set_id(), recipients.set_id());
        crate::encryption::install_identities(None);
    }
}
