//! TLS with libpq's meaning: [`TlsConfig`] holds `sslmode`, `sslrootcert`, `sslcert`, `sslkey`
//! and `channel_binding` (from the URL or the `PGSSL*` variables), and gives the same settings
//! to our own connection (rustls through `tokio-postgres-rustls`) and to every libpq tool we
//! run (as `PGSSL*` variables), so the two never differ: never plaintext where libpq would use
//! TLS.
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless a root certificate is given (then as `verify-ca`) |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert` and issued for the host name |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt` when that file exists; `system` means the
//! operating system's trusted roots (and `verify-full`, as in libpq 16). A client certificate
//! (`sslcert`, `sslkey`, default `~/.postgresql/postgresql.{crt,key}` when both exist) is sent
//! when the server asks for one; its key must not be readable by others (as libpq checks).
//! An encrypted key (PKCS#8, `ENCRYPTED PRIVATE KEY`) is decrypted with `sslpassword`: in
//! memory for our connection, into a private temporary copy for the tools (libpq has no
//! variable for `sslpassword`; see the `client_key` module for why a copy). OpenSSL's legacy
//! encrypted keys (`Proc-Type: 4,ENCRYPTED`) are refused with the command that converts them.
//! `allow` is treated as `prefer` (TLS whenever the server offers it: stricter than libpq,
//! which tries plaintext first). Unix-socket connections never use TLS, as in libpq.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::client_key::KeyPassword;
use crate::config::Secret;
use backup_core::{Error, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where the operating system keeps its trusted roots on Debian-like systems: what libpq
/// tools older than 16 (which do not know `sslrootcert=system`) are given instead.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (libpq tries plaintext first; we try TLS first).
    Allow,
    /// TLS when the server offers it, certificate not checked (the default).
    #[default]
    Prefer,
    /// TLS always; the certificate is checked only when a root certificate is given.
    Require,
    /// TLS always, the certificate signed by a trusted root.
    VerifyCa,
    /// TLS always, the certificate signed by a trusted root and issued for the host.
    VerifyFull,
}

impl SslMode {
    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses libpq's spelling.
    ///
    /// # Errors
    ///
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// Never.
    Disable,
    /// When the server supports it (the default).
    #[default]
    Prefer,
    /// Always: SCRAM over TLS bound to the server's certificate, or the connection fails.
    Require,
}

impl ChannelBinding {
    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }

    /// Parses libpq's spelling.
    ///
    /// # Errors
    ///
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "disable" => Ok(ChannelBinding::Disable),
            "prefer" => Ok(ChannelBinding::Prefer),
            "require" => Ok(ChannelBinding::Require),
            other => Err(format!(
                "unknown channel_binding {other:?}: use disable, prefer or require"
            )),
        }
    }
}

/// The trusted roots of `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The operating system's trusted roots.
    System,
}

/// The TLS settings of one connection (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`, or `~/.postgresql/root.crt` when it exists.
    pub root_cert: Option<RootCert>,
    /// `sslcert` and `sslkey` (both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `sslpassword`: the passphrase of an encrypted `sslkey` (ignored for a key that is not
    /// encrypted, as libpq does).
    pub key_password: Option<KeyPassword>,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
}

impl TlsConfig {
    /// Settings from the URL's parameters (`None`: not given), else the `PGSSL*` variables,
    /// else libpq's defaults (files under `~/.postgresql/` when they exist).
    ///
    /// # Errors
    ///
    /// A message for an unknown value, a client certificate without its key (or the other way
    /// round), or `sslrootcert=system` with a mode weaker than `verify-full`. The key itself is
    /// read (and decrypted) only when connecting.
    pub fn resolve(
        given: &TlsParams,
        env: &dyn crate::config::Env,
    ) -> std::result::Result<Self, String> {
        let mode_given = given.sslmode.clone().or_else(|| env.var("PGSSLMODE"));
        let mut mode = mode_given
            .as_deref()
            .map(SslMode::parse)
            .transpose()?
            .unwrap_or_default();
        let home = env.var("HOME").map(PathBuf::from);
        let in_home = |name: &str| {
            home.as_ref()
                .map(|h| h.join(".postgresql").join(name))
                .filter(|p| p.is_file())
        };
        let root_cert = match given
            .sslrootcert
            .clone()
            .or_else(|| env.var("PGSSLROOTCERT"))
        {
            Some(s) if s == "system" => Some(RootCert::System),
            Some(s) => Some(RootCert::File(PathBuf::from(s))),
            None => in_home("root.crt").map(RootCert::File),
        };
        if root_cert == Some(RootCert::System) {
            match mode_given {
                None => mode = SslMode::VerifyFull,
                Some(_) if mode == SslMode::VerifyFull => {}
                Some(m) => {
                    return Err(format!(
                        "sslrootcert=system needs sslmode=verify-full (got sslmode={m}): the system's roots trust any host they signed for"
                    ));
                }
            }
        }
        let cert = given.sslcert.clone().or_else(|| env.var("PGSSLCERT"));
        let key = given.sslkey.clone().or_else(|| env.var("PGSSLKEY"));
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (Some(c), None) => {
                return Err(format!("sslcert {c:?} is given without sslkey"));
            }
            (None, Some(k)) => return Err(format!("sslkey {k:?} is given without sslcert")),
            (None, None) => in_home("postgresql.crt").zip(in_home("postgresql.key")),
        };
        // libpq has no variable for sslpassword: only the URL gives it.
        let key_password = given.sslpassword.clone().map(KeyPassword::new);
        let channel_binding = given
            .channel_binding
            .clone()
            .or_else(|| env.var("PGCHANNELBINDING"))
            .as_deref()
            .map(ChannelBinding::parse)
            .transpose()?
            .unwrap_or_default();
        Ok(TlsConfig {
            mode,
            root_cert,
            client_cert,
            key_password,
            channel_binding,
        })
    }

    /// The `PGSSL*` variables that give a libpq tool these settings. An encrypted client key
    /// is given as its decrypted copy, written on the first call and removed when the last
    /// clone of these settings is dropped (see the `client_key` module).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when an encrypted client key cannot be decrypted (naming
    /// `sslpassword` for a wrong passphrase) or its copy cannot be written.
    pub fn tool_env(&self) -> Result<Vec<(&'static str, String)>> {
        let mut env = vec![
            ("PGSSLMODE", self.mode.as_str().to_owned()),
            ("PGCHANNELBINDING", self.channel_binding.as_str().to_owned()),
        ];
        match &self.root_cert {
            Some(RootCert::File(p)) => env.push(("PGSSLROOTCERT", p.display().to_string())),
            // libpq before 16 reads `system` as a file name: give it the system's bundle.
            Some(RootCert::System) if Path::new(SYSTEM_BUNDLE).is_file() => {
                env.push(("PGSSLROOTCERT", SYSTEM_BUNDLE.to_owned()));
            }
            Some(RootCert::System) => env.push(("PGSSLROOTCERT", "system".to_owned())),
            None => {}
        }
        if let Some((cert, key)) = &self.client_cert {
            let key = crate::client_key::tool_path(key, self.key_password.as_ref())?;
            env.push(("PGSSLCERT", cert.display().to_string()));
            env.push(("PGSSLKEY", key.display().to_string()));
        }
        Ok(env)
    }

    /// The driver's `sslmode` for a connection to `host` (a socket directory never uses TLS).
    pub fn driver_mode(&self, host: &str) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        if host.starts_with('/') {
            return D::Disable;
        }
        match self.mode {
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }

    /// The driver's `channel_binding`.
    pub fn driver_channel_binding(&self) -> tokio_postgres::config::ChannelBinding {
        use tokio_postgres::config::ChannelBinding as D;
        match self.channel_binding {
            ChannelBinding::Disable => D::Disable,
            ChannelBinding::Prefer => D::Prefer,
            ChannelBinding::Require => D::Require,
        }
    }

    /// How the server's certificate is checked: `None` (not at all), by its chain, or by its
    /// chain and host name.
    fn verification(&self) -> Verification {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verification::Full,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// The rustls connector for these settings.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a root or client certificate that cannot be read, a key readable by
    /// others, an encrypted key without `sslpassword` or that it does not decrypt (naming
    /// `sslpassword`), or a verifying mode with no trusted root.
    pub fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.verification() {
            Verification::None => {
                Arc::new(NoVerification(provider.signature_verification_algorithms))
            }
            level => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| invalid("sslrootcert", "", e.to_string()))?;
                match level {
                    Verification::Chain => Arc::new(ChainOnly(webpki)),
                    _ => webpki,
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("sslmode", self.mode.as_str(), e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = read_certs(cert, "sslcert")?;
                check_key_mode(key)?;
                let key = crate::client_key::load(key, self.key_password.as_ref())?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| invalid("sslcert", &cert.display().to_string(), e.to_string()))?
            }
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(RootCert::File(path)) => {
                for cert in read_certs(path, "sslrootcert")? {
                    roots.add(cert).map_err(|e| {
                        invalid("sslrootcert", &path.display().to_string(), e.to_string())
                    })?;
                }
            }
            Some(RootCert::System) => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system root rustls cannot parse is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
            }
            None => {
                return Err(invalid(
                    "sslrootcert",
                    "",
                    format!(
                        "sslmode={} checks the server's certificate but no root certificate is given: set sslrootcert=FILE (the CA that signed the server's certificate), sslrootcert=system, or put it in ~/.postgresql/root.crt",
                        self.mode.as_str()
                    ),
                ));
            }
        }
        if roots.is_empty() {
            return Err(invalid(
                "sslrootcert",
                "",
                "no trusted root certificate was found in it".into(),
            ));
        }
        Ok(roots)
    }
}

/// The URL's TLS parameters, as given (`None`: not in the URL).
#[derive(Debug, Clone, Default)]
pub struct TlsParams {
    /// `sslmode`.
    pub sslmode: Option<String>,
    /// `sslrootcert`.
    pub sslrootcert: Option<String>,
    /// `sslcert`.
    pub sslcert: Option<String>,
    /// `sslkey`.
    pub sslkey: Option<String>,
    /// `sslpassword`.
    pub sslpassword: Option<Secret>,
    /// `channel_binding`.
    pub channel_binding: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verification {
    None,
    Chain,
    Full,
}

fn invalid(what: &'static str, value: &str, reason: String) -> Error {
    Error::Invalid {
        what,
        value: value.to_owned(),
        reason,
    }
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: std::result::Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(what, &path.display().to_string(), e.to_string()))?
        .collect();
    let certs = certs.map_err(|e| invalid(what, &path.display().to_string(), e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid(
            what,
            &path.display().to_string(),
            "it holds no PEM certificate".into(),
        ));
    }
    Ok(certs)
}

/// libpq refuses a private key that others can read; so do we.
fn check_key_mode(key: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(key)
        .map_err(|e| invalid("sslkey", &key.display().to_string(), e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(invalid(
            "sslkey",
            &key.display().to_string(),
            format!(
                "the private key file has group or world access (mode {:o}): run `chmod 600 {}`",
                meta.mode() & 0o777,
                key.display()
            ),
        ));
    }
    Ok(())
}

/// `prefer`/`require` without a root: the certificate is not checked (as libpq), the
/// handshake's signatures still are.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_default_is_prefer_and_tools_get_the_same_settings() {
        let t = TlsConfig::resolve(&TlsParams::default(), &env(&[])).expect("resolves");
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.verification(), Verification::None);
        assert!(
            t.tool_env()
                .expect("no key")
                .contains(&("PGSSLMODE", "prefer".into()))
        );
        // Our connection uses TLS when the server offers it, as pg_dump does.
        assert_eq!(
            t.driver_mode("db.example"),
            tokio_postgres::config::SslMode::Prefer
        );
        assert_eq!(
            t.driver_mode("/var/run/postgresql"),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn url_parameters_win_over_the_environment() {
        let given = TlsParams {
            sslmode: Some("verify-full".into()),
            sslrootcert: Some("/ca.pem".into()),
            channel_binding: Some("require".into()),
            ..TlsParams::default()
        };
        let t = TlsConfig::resolve(
            &given,
            &env(&[("PGSSLMODE", "disable"), ("PGSSLROOTCERT", "/other.pem")]),
        )
        .expect("resolves");
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(RootCert::File("/ca.pem".into())));
        assert_eq!(t.channel_binding, ChannelBinding::Require);
        let tool = t.tool_env().expect("no key");
        assert!(tool.contains(&("PGSSLROOTCERT", "/ca.pem".into())));
        assert!(tool.contains(&("PGCHANNELBINDING", "require".into())));
    }

    #[test]
    fn require_with_a_root_certificate_checks_the_chain() {
        let t = TlsConfig::resolve(
            &TlsParams::default(),
            &env(&[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/ca.pem")]),
        )
        .expect("resolves");
        assert_eq!(t.verification(), Verification::Chain);
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let system = TlsParams {
            sslrootcert: Some("system".into()),
            ..TlsParams::default()
        };
        let t = TlsConfig::resolve(&system, &env(&[])).expect("resolves");
        assert_eq!(t.mode, SslMode::VerifyFull);
        let weaker = TlsParams {
            sslmode: Some("require".into()),
            ..system
        };
        let e = TlsConfig::resolve(&weaker, &env(&[])).expect_err("refused");
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (given, word) in [
            (
                TlsParams {
                    sslmode: Some("on".into()),
                    ..TlsParams::default()
                },
                "sslmode",
            ),
            (
                TlsParams {
                    channel_binding: Some("yes".into()),
                    ..TlsParams::default()
                },
                "channel_binding",
            ),
            (
                TlsParams {
                    sslkey: Some("/k".into()),
                    ..TlsParams::default()
                },
                "sslcert",
            ),
        ] {
            let e = TlsConfig::resolve(&given, &env(&[])).expect_err("refused");
            assert!(e.contains(word), "{word}: {e}");
        }
    }

    #[test]
    fn an_encrypted_client_key_is_decrypted_with_sslpassword_for_the_connection() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (Debian package openssl)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=app",
            "-keyout",
            "plain.key",
            "-out",
            "client.crt",
        ]);
        run(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "plain.key",
            "-out",
            "client.key",
            "-passout",
            "pass:s3cret-Xyzzy",
        ]);
        let key = dir.path().join("client.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let given = |password: Option<&str>| TlsParams {
            sslcert: Some(dir.path().join("client.crt").display().to_string()),
            sslkey: Some(key.display().to_string()),
            sslpassword: password.map(Secret::new),
            ..TlsParams::default()
        };
        let t = TlsConfig::resolve(&given(Some("s3cret-Xyzzy")), &env(&[])).expect("resolves");
        assert!(!format!("{t:?}").contains("s3cret"), "{t:?}");
        t.connector()
            .expect("the right sslpassword decrypts the key");
        let tool = t.tool_env().expect("a decrypted copy for the tools");
        let copy = tool
            .iter()
            .find(|(k, _)| *k == "PGSSLKEY")
            .map(|(_, v)| PathBuf::from(v))
            .expect("PGSSLKEY");
        assert_ne!(copy, key);
        assert!(!tool.iter().any(|(_, v)| v.contains("s3cret")), "{tool:?}");
        assert!(copy.is_file());
        drop(t);
        assert!(!copy.exists(), "the copy goes with the settings");
        for password in [Some("wrong-Plugh"), None] {
            let t = TlsConfig::resolve(&given(password), &env(&[])).expect("resolves");
            let e = t.connector().err().expect("refused").to_string();
            assert!(e.contains("sslpassword"), "{e}");
            assert!(!e.contains("Plugh") && !e.contains("Xyzzy"), "{e}");
        }
    }

    #[test]
    fn a_verifying_mode_without_a_root_says_what_to_set() {
        let t = TlsConfig {
            mode: SslMode::VerifyCa,
            ..TlsConfig::default()
        };
        let e = t.connector().err().expect("refused").to_string();
        assert!(e.contains("sslrootcert"), "{e}");
    }
}
