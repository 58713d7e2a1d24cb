//! Encryption helpers for tests: an age key pair written as an identity file ([`Key`]) and a
//! working directory whose `predeploy.toml` encrypts to given recipients ([`Work`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use age::secrecy::ExposeSecret;

pub use crate::leaks::{contains, files};
use crate::{Output, pre_deploy, run};

/// An age key pair: the identity file (mode 0600) and its public recipient.
pub struct Key {
    /// The identity file (mode 0600).
    pub file: PathBuf,
    /// The secret key (`AGE-SECRET-KEY-1…`).
    pub secret: String,
    /// The public recipient (`age1…`).
    pub recipient: String,
}

impl Key {
    /// A new key pair, its identity file `dir/name`.
    pub fn new(dir: &Path, name: &str) -> Key {
        use std::os::unix::fs::PermissionsExt;
        let id = age::x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_owned();
        let recipient = id.to_public().to_string();
        let file = dir.join(name);
        std::fs::write(
            &file,
            format!("# created: by the test\n# public key: {recipient}\n{secret}\n"),
        )
        .expect("write key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Key {
            file,
            secret,
            recipient,
        }
    }

    /// `age-fp:` and the first 16 hex digits of the recipient's sha256.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let hex = hex_of(&sha2::Sha256::digest(self.recipient.as_bytes()));
        format!("age-fp:{}", &hex[..16])
    }
}

/// Lowercase hex of `bytes`.
pub fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A working directory with `predeploy.toml`: store `./store`, source `db`, `[encryption]`.
pub struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    /// A working directory backing up `source_url` as `db`, encrypted to `recipients`.
    pub fn new(source_url: &str, recipients: &[&Key], identity: Option<&Key>) -> Work {
        let dir = tempfile::tempdir().expect("work dir");
        let list: Vec<String> = recipients
            .iter()
            .map(|k| format!("{:?}", k.recipient))
            .collect();
        let mut toml = format!(
            "store = \"./store\"\n\n[sources]\ndb = {source_url:?}\n\n[encryption]\nrecipients = [{}]\n",
            list.join(", ")
        );
        if let Some(k) = identity {
            toml.push_str(&format!(
                "identity_file = {:?}\n",
                k.file.display().to_string()
            ));
        }
        std::fs::write(dir.path().join("predeploy.toml"), toml).expect("config");
        Work { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The local store, `./store`.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `pre-deploy ARGS` in the directory (short lock TTL, no stdin).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = pre_deploy();
        cmd.current_dir(self.path())
            .args(args)
            .stdin(Stdio::null())
            .env("PREDEPLOY_LOCK_TTL", "3s")
            .env("PREDEPLOY_WAIT_LOCK", "120s");
        cmd
    }

    /// Runs `pre-deploy ARGS` in the directory.
    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    /// The newest backup's manifest, as `show --json` prints it.
    pub fn manifest(&self) -> serde_json::Value {
        let out = self.run(&["show", "last", "--json"]);
        out.assert_success();
        out.json()["manifest"].clone()
    }
}
