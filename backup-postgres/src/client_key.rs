//! The private key of a TLS client certificate: read for our own connection (decrypted in
//! memory with `sslpassword` when it is an encrypted PKCS#8 key), and the file the libpq tools
//! are pointed to (`PGSSLKEY`).
//!
//! libpq has no variable for `sslpassword`, so the tools cannot be handed the passphrase the
//! way they get every other setting. They get a decrypted copy of the key instead
//! ([`ToolKeyCopy`]): a 0600 file in a 0700 directory of its own, made on the first tool run
//! and removed when the last copy of the source's settings is dropped. Why not a temporary
//! `PGSERVICEFILE` holding `sslpassword=`: that writes the passphrase itself to a file, and a
//! passphrase is often reused beyond this one key, while the decrypted key is worth no more
//! than what the passphrase protects here; libpq before 13 does not know `sslpassword` at all
//! (a service file naming it is an error there), while every libpq reads a plain key; and
//! the key is then decrypted by one implementation only (this one), so our connection and the
//! tools accept exactly the same keys. Neither puts the secret in an argv or an environment.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backup_core::{Error, Result};
use pkcs8::der::SecretDocument;
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::Secret;

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
/// The header of OpenSSL's own ("traditional") PEM encryption.
const LEGACY_ENCRYPTED: &str = "Proc-Type: 4,ENCRYPTED";

/// `sslpassword`: the passphrase of an encrypted client key, and what was decrypted with it,
/// shared by every clone (the key is decrypted once a run, the tools' copy written once).
#[derive(Clone)]
pub struct KeyPassword {
    password: Secret,
    decrypted: Arc<Mutex<Option<Decrypted>>>,
}

/// A key decrypted from `from`, and the tools' copy of it once one was needed.
struct Decrypted {
    from: PathBuf,
    key: SecretDocument,
    tool_copy: Option<ToolKeyCopy>,
}

impl KeyPassword {
    /// Wraps the passphrase.
    pub fn new(password: Secret) -> Self {
        KeyPassword {
            password,
            decrypted: Arc::default(),
        }
    }

    /// Runs `f` on the key decrypted from `path`, decrypting it on first use.
    fn with_decrypted<T>(
        &self,
        path: &Path,
        pem: &str,
        f: impl FnOnce(&mut Decrypted) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self
            .decrypted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.as_ref().is_none_or(|d| d.from != path) {
            *guard = Some(Decrypted {
                from: path.to_owned(),
                key: decrypt_pkcs8(path, pem, &self.password)?,
                tool_copy: None,
            });
        }
        match guard.as_mut() {
            Some(d) => f(d),
            None => Err(invalid_key(path, "the key was not decrypted".into())),
        }
    }
}

impl fmt::Debug for KeyPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPassword(***)")
    }
}

impl PartialEq for KeyPassword {
    fn eq(&self, other: &Self) -> bool {
        self.password == other.password
    }
}

impl Eq for KeyPassword {}

/// The decrypted copy of a client key given to the libpq tools: removed (with its directory)
/// when dropped.
struct ToolKeyCopy {
    dir: tempfile::TempDir,
}

impl ToolKeyCopy {
    const FILE: &'static str = "client.key";
    const PREFIX: &'static str = "pre-deploy-sslkey-";
    /// The pid of the process that wrote the copy.
    const OWNER: &'static str = "owner.pid";

    /// Removes the copies left by runs that were killed (`kill -9` skips every destructor):
    /// a decrypted key must not outlive its run longer than the next run.
    fn collect_leftovers(base: &Path) {
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for entry in entries.flatten() {
            let ours = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(Self::PREFIX));
            let owner = std::fs::read_to_string(entry.path().join(Self::OWNER))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(owner) = owner.filter(|_| ours)
                && !Path::new(&format!("/proc/{owner}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Writes `key` as an unencrypted PKCS#8 PEM file of mode 0600 (libpq refuses a key that
    /// others can read) in a new 0700 directory, in memory-backed storage when there is some.
    fn write(key: &SecretDocument) -> std::io::Result<Self> {
        let pem = key
            .to_pem("PRIVATE KEY", LineEnding::LF)
            .map_err(std::io::Error::other)?;
        let base = private_temp_base();
        Self::collect_leftovers(&base);
        let dir = tempfile::Builder::new()
            .prefix(Self::PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)?;
        std::fs::write(dir.path().join(Self::OWNER), std::process::id().to_string())?;
        let path = dir.path().join(Self::FILE);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // The umask can only take bits away; make sure none was added either.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        Ok(ToolKeyCopy { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(Self::FILE)
    }
}

/// `$XDG_RUNTIME_DIR` or `/dev/shm` (memory, so a decrypted key never reaches a disk, and is
/// gone after a reboot even if a killed run could not remove it), else the temp directory.
fn private_temp_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
        .unwrap_or_else(std::env::temp_dir)
}

/// The private key in `path` for our own connection (the caller checks the file's mode).
///
/// # Errors
///
/// [`Error::Invalid`] naming `sslkey` for a file that holds no usable key, an encrypted key
/// without `sslpassword` or in OpenSSL's legacy format; naming `sslpassword` for a passphrase
/// that does not decrypt it.
pub(crate) fn load(path: &Path, password: Option<&KeyPassword>) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path)?;
    match (Format::of(&pem), password) {
        (Format::Legacy, _) => Err(legacy(path)),
        (Format::EncryptedPkcs8, None) => Err(no_password(path)),
        (Format::EncryptedPkcs8, Some(p)) => p.with_decrypted(path, &pem, |d| {
            Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                d.key.as_bytes().to_vec(),
            )))
        }),
        // libpq ignores sslpassword for a key that is not encrypted; so do we.
        (Format::Plain, _) => PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| invalid_key(path, format!("cannot read a private key from it: {e}"))),
    }
}

/// The key file to give the libpq tools as `PGSSLKEY`: `path` itself, or, for a key encrypted
/// with `password`, its decrypted copy (written on first use, see the module docs).
///
/// # Errors
///
/// As [`load`], and when the copy cannot be written.
pub(crate) fn tool_path(path: &Path, password: Option<&KeyPassword>) -> Result<PathBuf> {
    let Some(password) = password else {
        return Ok(path.to_owned());
    };
    let pem = read(path)?;
    match Format::of(&pem) {
        Format::Plain => Ok(path.to_owned()),
        Format::Legacy => Err(legacy(path)),
        Format::EncryptedPkcs8 => password.with_decrypted(path, &pem, |d| {
            if d.tool_copy.is_none() {
                d.tool_copy = Some(ToolKeyCopy::write(&d.key).map_err(|e| {
                    invalid_key(
                        path,
                        format!("cannot write the decrypted copy for pg_dump and pg_restore: {e}"),
                    )
                })?);
            }
            d.tool_copy
                .as_ref()
                .map(ToolKeyCopy::path)
                .ok_or_else(|| invalid_key(path, "no decrypted copy".into()))
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    EncryptedPkcs8,
    Legacy,
}

impl Format {
    fn of(pem: &str) -> Self {
        if pem.contains(LEGACY_ENCRYPTED) {
            Format::Legacy
        } else if pem.contains(ENCRYPTED_BEGIN) {
            Format::EncryptedPkcs8
        } else {
            Format::Plain
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| invalid_key(path, e.to_string()))
}

/// Decrypts the `ENCRYPTED PRIVATE KEY` block of `pem` (PBES2: PBKDF2 or scrypt, AES- or
/// 3DES-CBC) and checks that the result is a private key.
fn decrypt_pkcs8(path: &Path, pem: &str, password: &Secret) -> Result<SecretDocument> {
    let block = pem
        .find(ENCRYPTED_BEGIN)
        .and_then(|start| {
            let end = pem[start..].find(ENCRYPTED_END)? + start + ENCRYPTED_END.len();
            Some(&pem[start..end])
        })
        .ok_or_else(|| invalid_key(path, format!("no complete {ENCRYPTED_BEGIN} block")))?;
    let (_, der) = SecretDocument::from_pem(block)
        .map_err(|e| invalid_key(path, format!("cannot read the encrypted key: {e}")))?;
    let info = EncryptedPrivateKeyInfo::try_from(der.as_bytes())
        .map_err(|e| invalid_key(path, format!("cannot read the encrypted key: {e}")))?;
    let wrong = || Error::Invalid {
        what: "sslpassword",
        value: path.display().to_string(),
        reason: "the passphrase given as sslpassword does not decrypt this client key \
                 (wrong sslpassword?)"
            .into(),
    };
    let key = match info.decrypt(password.expose().as_bytes()) {
        Ok(key) => key,
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::NoPbes1CryptSupport)) => {
            return Err(unsupported(path, "PKCS#5 v1.5 (PBES1)"));
        }
        // A padding error after decryption: the wrong passphrase (pkcs5 0.7 reports it as
        // `EncryptFailed`), or a right padding by chance and then no DER.
        Err(pkcs8::Error::EncryptedPrivateKey(
            pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
        ))
        | Err(pkcs8::Error::Asn1(_)) => return Err(wrong()),
        Err(e) => return Err(unsupported(path, &e.to_string())),
    };
    // A wrong passphrase can still give valid padding (1 in 256): then what comes out is no key.
    PrivateKeyInfo::try_from(key.as_bytes()).map_err(|_| wrong())?;
    Ok(key)
}

fn invalid_key(path: &Path, reason: String) -> Error {
    Error::Invalid {
        what: "sslkey",
        value: path.display().to_string(),
        reason,
    }
}

fn unsupported(path: &Path, detail: &str) -> Error {
    invalid_key(
        path,
        format!(
            "the key's encryption is not supported ({detail}): re-encrypt it with \
             `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.p8` and set sslkey=KEY.p8"
        ),
    )
}

fn no_password(path: &Path) -> Error {
    invalid_key(
        path,
        "the client key is encrypted: give its passphrase as sslpassword=… in the source URL"
            .into(),
    )
}

fn legacy(path: &Path) -> Error {
    invalid_key(
        path,
        "the client key is encrypted in OpenSSL's legacy format (Proc-Type: 4,ENCRYPTED), which \
         is not supported: convert it with `openssl pkcs8 -topk8 -in KEY -out KEY.p8` (it stays \
         encrypted, under the passphrase you give) and set sslkey=KEY.p8"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl(args: &[&str], dir: &Path) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An EC key as it is, encrypted as PKCS#8 under the passphrase `right horse` (PBKDF2 with
    /// AES-256-CBC, and scrypt), and in OpenSSL's legacy format.
    fn keys() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "plain.key",
            ],
            d,
        );
        for (name, extra) in [
            ("pbkdf2.p8", &["-v2", "aes-256-cbc"][..]),
            ("scrypt.p8", &["-scrypt"][..]),
        ] {
            let mut args = vec!["pkcs8", "-topk8", "-in", "plain.key", "-out", name];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["-passout", "pass:right horse"]);
            openssl(&args, d);
        }
        openssl(
            &[
                "ec",
                "-in",
                "plain.key",
                "-out",
                "legacy.key",
                "-aes256",
                "-passout",
                "pass:right horse",
            ],
            d,
        );
        dir
    }

    fn password(s: &str) -> KeyPassword {
        KeyPassword::new(Secret::new(s))
    }

    #[test]
    fn the_right_password_decrypts_pbkdf2_and_scrypt_keys() {
        let dir = keys();
        let plain = PrivateKeyDer::from_pem_file(dir.path().join("plain.key")).expect("plain");
        let plain = PrivateKeyInfo::try_from(plain.secret_der()).expect("pkcs8");
        for name in ["pbkdf2.p8", "scrypt.p8"] {
            let key = load(&dir.path().join(name), Some(&password("right horse"))).expect(name);
            assert!(matches!(key, PrivateKeyDer::Pkcs8(_)), "{name}");
            let got = PrivateKeyInfo::try_from(key.secret_der()).expect("pkcs8");
            assert_eq!(got.private_key, plain.private_key, "{name}");
        }
    }

    #[test]
    fn a_wrong_password_names_sslpassword_and_never_shows_it() {
        let dir = keys();
        for name in ["pbkdf2.p8", "scrypt.p8"] {
            let e = load(&dir.path().join(name), Some(&password("wrong horse")))
                .expect_err("refused")
                .to_string();
            assert!(e.contains("sslpassword"), "{e}");
            assert!(!e.contains("wrong horse"), "{e}");
        }
        let e = load(&dir.path().join("pbkdf2.p8"), None)
            .expect_err("no password")
            .to_string();
        assert!(e.contains("sslpassword"), "{e}");
    }

    #[test]
    fn a_legacy_encrypted_key_says_how_to_convert_it() {
        let dir = keys();
        let e = load(
            &dir.path().join("legacy.key"),
            Some(&password("right horse")),
        )
        .expect_err("refused")
        .to_string();
        assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
    }

    #[test]
    fn the_tools_get_a_private_decrypted_copy_that_goes_away_with_the_settings() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = keys();
        let plain_key = dir.path().join("plain.key");
        // A key that is not encrypted is given as it is, password or not.
        assert_eq!(
            tool_path(&plain_key, Some(&password("x"))).expect("plain"),
            plain_key
        );
        let p = password("right horse");
        let encrypted = dir.path().join("pbkdf2.p8");
        let copy = tool_path(&encrypted, Some(&p)).expect("copy");
        assert_ne!(copy, encrypted);
        assert_eq!(tool_path(&encrypted, Some(&p.clone())).expect("same"), copy);
        let meta = std::fs::metadata(&copy).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o600);
        let parent = copy.parent().expect("dir").to_owned();
        assert_eq!(
            std::fs::metadata(&parent).expect("stat").mode() & 0o777,
            0o700
        );
        let text = std::fs::read_to_string(&copy).expect("read");
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        drop(p);
        assert!(!parent.exists(), "removed with the last clone");
    }

    #[test]
    fn a_copy_left_by_a_killed_run_is_removed_and_a_live_run_s_is_kept() {
        let base = tempfile::tempdir().expect("base");
        let make = |name: &str, owner: &str| {
            let d = base.path().join(name);
            std::fs::create_dir(&d).expect("dir");
            std::fs::write(d.join(ToolKeyCopy::FILE), "key").expect("key");
            std::fs::write(d.join(ToolKeyCopy::OWNER), owner).expect("owner");
            d
        };
        // Above the kernel's pid maximum: a run that cannot be alive.
        let dead = make("pre-deploy-sslkey-dead", "4999999");
        let live = make("pre-deploy-sslkey-live", &std::process::id().to_string());
        let other = make("someone-else", "4999999");
        ToolKeyCopy::collect_leftovers(base.path());
        assert!(!dead.exists(), "the dead run's copy is removed");
        assert!(live.exists(), "a running run's copy is kept");
        assert!(other.exists(), "what is not ours is left alone");
    }
}
