//! Encryption at rest with [age](https://age-encryption.org) (X25519 recipients).
//!
//! Artifacts are zstd-compressed, then age-encrypted, then hashed while they stream into the
//! store (see [`crate::pipeline`]): the manifest's sha256 is of the ciphertext, so level 1
//! checks the stored bytes without a key. Reading past level 1 (decompression, the archive,
//! test restores, restores) needs an identity: the process-wide slot filled by
//! [`install_identities`] (the gate fills it from `[encryption] identity_file` or
//! `PREDEPLOY_AGE_IDENTITY_FILE`).
//!
//! The manifest stays plaintext. It records that the artifacts are encrypted and the
//! fingerprints of the recipients (a truncated SHA-256 of each public recipient string; never a
//! key): see [`ManifestEncryption`].
//!
//! Secret keys never leave this module: [`Identities`] prints as the file it came from and the
//! fingerprints of its public keys.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use age::x25519;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncRead};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{ArtifactMeta, Manifest};

/// The value of an artifact's `encryption` field when it is age-encrypted.
pub const AGE: &str = "age";
/// The key of an artifact's (and the manifest's) encryption field.
pub const FIELD: &str = "encryption";
/// The variable naming an identity file; overrides `[encryption] identity_file`.
pub const IDENTITY_FILE_VAR: &str = "PREDEPLOY_AGE_IDENTITY_FILE";

/// The fingerprint of a public recipient (`age1…`): `age-fp:` and the first 16 hex digits of
/// the SHA-256 of the recipient string. It names a key without revealing anything usable.
pub fn fingerprint(recipient: &str) -> String {
    let hex = Digest::of(recipient.trim().as_bytes()).hex();
    format!("age-fp:{}", &hex[..16])
}

/// Public recipients every new artifact is encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
    strings: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.strings).finish()
    }
}

impl Recipients {
    /// Parses `age1…` recipient strings.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for an empty list or a string that is not an X25519 recipient.
    pub fn parse(list: &[String]) -> Result<Self> {
        if list.is_empty() {
            return Err(Error::Invalid {
                what: "[encryption] recipients",
                value: String::new(),
                reason: "give at least one age1… recipient".into(),
            });
        }
        let mut keys = Vec::new();
        let mut strings = Vec::new();
        for raw in list {
            let s = raw.trim();
            let key = x25519::Recipient::from_str(s).map_err(|e| Error::Invalid {
                what: "age recipient",
                value: s.to_owned(),
                reason: format!(
                    "{e} (expected an X25519 recipient such as age1…, from age-keygen -y)"
                ),
            })?;
            keys.push(key);
            strings.push(s.to_owned());
        }
        Ok(Recipients { keys, strings })
    }

    /// The recipients' fingerprints, in order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.strings.iter().map(|s| fingerprint(s)).collect()
    }

    /// Wraps `out` so that what is written to it is encrypted to these recipients. Call
    /// `finish()` on the returned writer to write the last chunk and get `out` back.
    ///
    /// # Errors
    ///
    /// When the age header cannot be written.
    pub fn encrypt_to<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
        encryptor.wrap_output(out)
    }

    /// `data` encrypted to these recipients, whole (for small objects).
    ///
    /// # Errors
    ///
    /// When age cannot write its header (never for valid recipients).
    pub fn seal(&self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut w = self.encrypt_to(Vec::with_capacity(data.len() + 512))?;
        w.write_all(data)?;
        w.finish()
    }

    /// An identifier of the recipient set (order and repetition ignored): the first 16 hex
    /// digits of the SHA-256 of the sorted fingerprints. It names the set's blob-name secret
    /// (see [`crate::sealed_blobs`]) and reveals no more than the fingerprints do.
    pub fn set_id(&self) -> String {
        let mut fps = self.fingerprints();
        fps.sort();
        fps.dedup();
        Digest::of(fps.join("\n").as_bytes()).hex()[..16].to_owned()
    }
}

/// Secret X25519 identities read from an identity file (the format `age-keygen` writes).
#[derive(Clone)]
pub struct Identities {
    keys: Vec<x25519::Identity>,
    origin: PathBuf,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("file", &self.origin)
            .field("fingerprints", &self.fingerprints())
            .finish()
    }
}

impl Identities {
    /// Reads an identity file, refusing one that group or others can read.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when the file is missing, readable by group or others (the message
    /// says `chmod 600`), or holds no X25519 identity; the message never quotes the file's
    /// contents.
    pub fn from_file(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let invalid = |reason: String| Error::Invalid {
            what: "age identity file",
            value: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(format!(
                "it is readable by group or others (mode {mode:04o}): run chmod 600 {}",
                path.display()
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
        let ids = Self::parse(&text).map_err(invalid)?;
        Ok(Identities {
            keys: ids,
            origin: path.to_path_buf(),
        })
    }

    /// Parses the text of an identity file (`AGE-SECRET-KEY-1…` lines, `#` comments).
    fn parse(text: &str) -> std::result::Result<Vec<x25519::Identity>, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The line itself is a secret: name it by number only.
            let key = x25519::Identity::from_str(line).map_err(|_| {
                format!(
                    "line {} is not an X25519 age identity (AGE-SECRET-KEY-1…)",
                    n + 1
                )
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("it holds no age identity (AGE-SECRET-KEY-1…)".into());
        }
        Ok(keys)
    }

    /// The file the identities were read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Fingerprints of the identities' public recipients (see [`fingerprint`]).
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint(&k.to_public().to_string()))
            .collect()
    }

    /// Decrypts `input` (an age file) as it is read.
    ///
    /// # Errors
    ///
    /// An `io::Error` saying why the header could not be opened (no matching identity, not an
    /// age file, a damaged header).
    pub async fn decrypt<'r, R>(
        &self,
        input: R,
    ) -> io::Result<Box<dyn AsyncRead + Unpin + Send + 'r>>
    where
        R: AsyncBufRead + Unpin + Send + 'r,
    {
        let decryptor = age::Decryptor::new_async_buffered(input.compat())
            .await
            .map_err(|e| io::Error::other(format!("not a readable age file: {e}")))?;
        let reader = decryptor
            .decrypt_async(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => io::Error::other(format!(
                    "age decryption failed: none of the identities in {} ({}) is a recipient of this backup",
                    self.origin.display(),
                    self.fingerprints().join(", ")
                )),
                e => io::Error::other(format!("age decryption failed: {e}")),
            })?;
        Ok(Box::new(reader.compat()))
    }
}

impl Identities {
    /// Decrypts a small age file held whole.
    ///
    /// # Errors
    ///
    /// As [`Identities::decrypt`], and when the ciphertext is damaged.
    pub async fn open_bytes(&self, sealed: &[u8]) -> io::Result<Vec<u8>> {
        let mut plain = Vec::new();
        let mut reader = self.decrypt(sealed).await?;
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut plain).await?;
        Ok(plain)
    }
}

/// Decrypts `stream` (an age file) with the installed identities as it is read: every 64 KiB
/// chunk is authenticated before it is passed on, so a damaged byte ends the stream with an
/// error instead of being delivered.
///
/// # Errors
///
/// Without installed identities ([`no_identity_reason`]), or when the header cannot be opened.
pub async fn decrypt_stream(stream: crate::ByteStream) -> io::Result<crate::ByteStream> {
    let ids = installed_identities().ok_or_else(|| io::Error::other(no_identity_reason()))?;
    let reader =
        tokio::io::BufReader::with_capacity(256 * 1024, tokio_util::io::StreamReader::new(stream));
    let plain = ids.decrypt(reader).await?;
    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
        plain,
        256 * 1024,
    )))
}

static SLOT: RwLock<Option<Arc<Identities>>> = RwLock::new(None);
static OVERRIDE: RwLock<Option<Arc<Identities>>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the identities every reader of this process decrypts
/// with.
pub fn install_identities(identities: Option<Identities>) {
    if let Ok(mut slot) = SLOT.write() {
        *slot = identities.map(Arc::new);
    }
}

/// Installs identities that take precedence over those of [`install_identities`] for the rest
/// of the process (`verify --recovery-key FILE`: only that key may open the backups).
pub fn override_identities(identities: Identities) {
    if let Ok(mut slot) = OVERRIDE.write() {
        *slot = Some(Arc::new(identities));
    }
}

/// The identities readers decrypt with: those of [`override_identities`], else those of
/// [`install_identities`], if any.
pub fn installed_identities() -> Option<Arc<Identities>> {
    OVERRIDE
        .read()
        .ok()
        .and_then(|s| s.clone())
        .or_else(|| SLOT.read().ok().and_then(|s| s.clone()))
}

/// Why levels above 1 cannot be checked without an identity (the `limited_by` of a record).
pub fn no_identity_reason() -> String {
    format!(
        "no age identity to decrypt the backup with: levels 2–4 need one (set {IDENTITY_FILE_VAR} or [encryption] identity_file, or pass --recovery-key FILE); level 1 checked the stored ciphertext"
    )
}

/// Whether `artifact` is age-encrypted.
pub fn is_encrypted(artifact: &ArtifactMeta) -> bool {
    artifact.extra.get(FIELD).and_then(Value::as_str) == Some(AGE)
}

/// Marks `artifact` as age-encrypted.
pub fn mark_encrypted(artifact: &mut ArtifactMeta) {
    artifact.extra.insert(FIELD.into(), Value::from(AGE));
}

/// What a manifest says about encryption (its `encryption` field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEncryption {
    /// `age`.
    pub scheme: String,
    /// Fingerprints of the recipients that can open the backup.
    pub recipients: Vec<String>,
}

impl ManifestEncryption {
    /// The encryption recorded in `manifest`, if any.
    pub fn of(manifest: &Manifest) -> Option<Self> {
        manifest
            .extra
            .get(FIELD)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Records `self` in `manifest`.
    pub fn record(&self, manifest: &mut Manifest) {
        if let Ok(v) = serde_json::to_value(self) {
            manifest.extra.insert(FIELD.into(), v);
        }
    }
}

/// Whether any artifact of `manifest` is encrypted.
pub fn manifest_is_encrypted(manifest: &Manifest) -> bool {
    ManifestEncryption::of(manifest).is_some() || manifest.artifacts().any(|(_, a)| is_encrypted(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_file(dir: &Path, mode: u32) -> (PathBuf, x25519::Identity) {
        use age::secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        let id = x25519::Identity::generate();
        let path = dir.join("key.txt");
        std::fs::write(
            &path,
            format!(
                "# public key: {}\n{}\n",
                id.to_public(),
                id.to_string().expose_secret()
            ),
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (path, id)
    }

    #[test]
    fn fingerprints_are_short_stable_and_not_the_key() {
        let r = x25519::Identity::generate().to_public().to_string();
        let fp = fingerprint(&r);
        assert_eq!(fp, fingerprint(&format!(" {r}\n")));
        assert_eq!(fp.len(), "age-fp:".len() + 16);
        assert!(!r.contains(&fp[7..]));
    }

    #[test]
    fn an_identity_file_readable_by_others_is_refused_with_chmod_600() {
        let dir = std::env::temp_dir().join(format!("age-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (path, id) = identity_file(&dir, 0o644);
        let err = Identities::from_file(&path).expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let (path, _) = identity_file(&dir, 0o600);
        let ids = Identities::from_file(&path).expect("read");
        let _ = id;
        assert_eq!(ids.fingerprints().len(), 1);
        assert!(!format!("{ids:?}").contains("AGE-SECRET-KEY"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn what_is_encrypted_decrypts_and_a_wrong_key_is_refused() {
        let id = x25519::Identity::generate();
        let recipients = Recipients::parse(&[id.to_public().to_string()]).expect("parses");
        let mut w = recipients.encrypt_to(Vec::new()).expect("writer");
        w.write_all(b"hello, world").expect("write");
        let sealed = w.finish().expect("finish");
        let ids = Identities {
            keys: vec![id],
            origin: PathBuf::from("k"),
        };
        let mut out = Vec::new();
        let mut r = ids.decrypt(&sealed[..]).await.expect("opens");
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut out)
            .await
            .expect("reads");
        assert_eq!(out, b"hello, world");
        let other = Identities {
            keys: vec![x25519::Identity::generate()],
            origin: PathBuf::from("other"),
        };
        let err = other.decrypt(&sealed[..]).await.err().expect("refused");
        assert!(err.to_string().contains("none of the identities"), "{err}");
    }
}
