//! [`PgSourceConfig`]: how to reach a PostgreSQL database, from a URL and the standard `PG*`
//! variables. The password never appears in `Debug`, `Display`, the manifest or an argv.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_core::docker::DockerTarget;
use backup_core::tunnel::{Endpoint, Tunnel, Via};
use backup_core::{Error, Result};

use crate::tls::{TlsConfig, TlsParams};

/// A password that does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must hand it on (an environment variable or
    /// the driver's config).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Connection settings of one PostgreSQL source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSourceConfig {
    /// Host name, IP address, or a Unix socket directory (starting with `/`).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, when one is needed.
    pub password: Option<Secret>,
    /// Database name.
    pub dbname: String,
    /// TLS: `sslmode`, `sslrootcert`, `sslcert`/`sslkey`, `sslpassword`, `channel_binding` (see
    /// [`crate::tls`]).
    pub tls: TlsConfig,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// Directory holding `pg_dump`, `pg_dumpall` and `pg_restore`, overriding discovery.
    pub bin_dir: Option<PathBuf>,
    /// `via=docker://…`: the container the server runs in; `host` is then the container's
    /// address and `port` the port inside it (see [`crate::docker`]).
    pub docker: Option<DockerTarget>,
    /// `?via=ssh://…`: the jump host through which `host` and `port` are reached (they are the
    /// database's address as the jump host sees it). Every connection and tool goes through it.
    pub via: Option<Tunnel>,
}

/// Reads process environment variables; injectable for tests.
pub trait Env {
    /// The variable's value, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl PgSourceConfig {
    /// Parses `postgres://user:password@host:port/dbname?sslmode=…&host=/socket/dir`, filling
    /// what the URL leaves out from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGCHANNELBINDING`,
    /// `PGCONNECT_TIMEOUT`, then `PGPASSFILE`/`~/.pgpass`, then libpq's defaults.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL; the message never contains the password.
    pub fn from_url(url: &str, env: &dyn Env) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid {
            what: "PostgreSQL URL",
            value: redact_url(url),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) && parsed.path().contains('@') {
            return Err(invalid(
                "the URL has no host but its path holds '@' (one slash too many?): write postgres://USER:PASSWORD@HOST/DB".into(),
            ));
        }
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(invalid(
                "the scheme must be postgres:// or postgresql://".into(),
            ));
        }
        let decode =
            |s: &str| percent_decode(s).map_err(|()| invalid("bad percent-encoding".into()));
        let mut host = parsed
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_owned());
        let mut port = parsed.port();
        let mut tls = TlsParams::default();
        let mut connect_timeout = None;
        let mut via = None;
        let mut user = Some(decode(parsed.username())?).filter(|u| !u.is_empty());
        let mut password = parsed.password().map(decode).transpose()?;
        let mut dbname =
            Some(decode(parsed.path().trim_start_matches('/'))?).filter(|d| !d.is_empty());
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "host" => host = Some(v.into_owned()),
                "port" => port = Some(v.parse().map_err(|_| invalid(format!("bad port {v:?}")))?),
                "user" => user = Some(v.into_owned()),
                "password" => password = Some(v.into_owned()),
                "dbname" => dbname = Some(v.into_owned()),
                "sslmode" => tls.sslmode = Some(v.into_owned()),
                "sslrootcert" => tls.sslrootcert = Some(v.into_owned()),
                "sslcert" => tls.sslcert = Some(v.into_owned()),
                "sslkey" => tls.sslkey = Some(v.into_owned()),
                "sslpassword" => tls.sslpassword = Some(Secret::new(v)),
                "channel_binding" => tls.channel_binding = Some(v.into_owned()),
                "connect_timeout" => connect_timeout = Some(v.into_owned()),
                "via" => via = Some(v.into_owned()),
                "application_name" | "options" | "target_session_attrs" => {}
                other => return Err(invalid(format!("unsupported parameter {other:?}"))),
            }
        }
        let host = host
            .filter(|h| !h.is_empty())
            .or_else(|| env.var("PGHOST"))
            .unwrap_or_else(|| {
                // Through a jump host, no host means the jump host's own database server.
                if via.is_some() {
                    "localhost"
                } else {
                    "/var/run/postgresql"
                }
                .into()
            });
        if via.is_some() && host.starts_with('/') {
            return Err(invalid(
                "a Unix socket cannot be reached via a jump host: name the database's host and port as the jump host sees them".into(),
            ));
        }
        let port = match port {
            Some(p) => p,
            None => match env.var("PGPORT") {
                Some(p) => p
                    .parse()
                    .map_err(|_| invalid(format!("bad PGPORT {p:?}")))?,
                None => 5432,
            },
        };
        let user = user
            .or_else(|| env.var("PGUSER"))
            .or_else(|| env.var("USER"))
            .unwrap_or_else(|| "postgres".into());
        let dbname = dbname
            .or_else(|| env.var("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let tls = TlsConfig::resolve(&tls, env).map_err(invalid)?;
        let timeout_secs: u64 = connect_timeout
            .or_else(|| env.var("PGCONNECT_TIMEOUT"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(10);
        let password = password
            .or_else(|| env.var("PGPASSWORD"))
            .or_else(|| pgpass_lookup(env, &host, port, &dbname, &user));
        // `via=docker://…` names a container (the host is then its address); any other
        // `via` is a jump host (`ssh://…`) whose tunnel reaches `host`:`port`.
        // A socket directory names the container's own server too (its path inside the
        // container does not matter: we connect to the container's address).
        let (docker, via) = match via {
            Some(v) if DockerTarget::is_docker_via(&v) => {
                let target = if host.starts_with('/') {
                    DockerTarget::parse(&v)
                } else {
                    DockerTarget::for_host(&v, &host)
                };
                (Some(target.map_err(invalid)?), None)
            }
            Some(v) => (None, Some(v.parse::<Via>()?)),
            None => (None, None),
        };
        let host = docker
            .as_ref()
            .map_or(Ok(host), |d| d.resolve().map(|e| e.host))?;
        let via = via.map(|v| Tunnel::new(v, host.clone(), port));
        Ok(PgSourceConfig {
            host,
            port,
            user,
            password: password.map(Secret),
            dbname,
            tls,
            connect_timeout: Duration::from_secs(timeout_secs.max(1)),
            bin_dir: env.var("PREDEPLOY_PG_BINDIR").map(PathBuf::from),
            docker,
            via,
        })
    }

    /// `postgres://user@host:port/dbname`, without the password: safe for logs and manifests.
    pub fn location(&self) -> String {
        if let Some(d) = &self.docker {
            let (user, port, db) = (&self.user, self.port, &self.dbname);
            return format!("postgres://{user}@localhost:{port}/{db}?via={d}");
        }
        let host = if self.host.starts_with('/') {
            "localhost".to_owned()
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut s = format!(
            "postgres://{}@{host}:{}/{}",
            self.user, self.port, self.dbname
        );
        if self.host.starts_with('/') {
            s.push_str("?host=");
            s.push_str(&self.host);
        }
        if let Some(t) = &self.via {
            s.push_str("?via=");
            s.push_str(&t.via().to_string());
        }
        s
    }

    /// Where to connect instead of `host:port` when the database is reached via a jump host:
    /// the local end of the tunnel, opened on first use and shared (`None` without `via`).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] (named by the location) with ssh's own words when the
    /// tunnel cannot be opened.
    pub fn tunnel_endpoint(&self) -> Result<Option<Endpoint>> {
        self.via
            .as_ref()
            .map(|t| {
                t.endpoint(self.tunnel_timeout())
                    .map_err(|e| e.into_source_error(&self.location()))
            })
            .transpose()
    }

    /// Opens the tunnel, if any, off the async worker threads, so that later connections find
    /// it open; errors name `source_name`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] with ssh's own words.
    pub async fn open_tunnel(&self, source_name: &str) -> Result<()> {
        if let Some(t) = &self.via {
            t.endpoint_async(self.tunnel_timeout())
                .await
                .map_err(|e| e.into_source_error(source_name))?;
        }
        Ok(())
    }

    /// ssh's login and the first forwarded connection together get a few seconds more than
    /// a direct connection.
    fn tunnel_timeout(&self) -> Duration {
        self.connect_timeout + Duration::from_secs(5)
    }

    /// The same settings for another database on the same server.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        PgSourceConfig {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// The tokio-postgres configuration for these settings (connect with
    /// [`TlsConfig::connector`]).
    ///
    /// Through a jump host, the connection goes to the tunnel's local end (`hostaddr`) while
    /// `host` stays the URL's, so `verify-full` checks the certificate against the name the
    /// user wrote.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] when the tunnel cannot be opened.
    pub fn driver_config(&self) -> Result<tokio_postgres::Config> {
        let mut c = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            c.host_path(Path::new(&self.host));
        } else {
            c.host(&self.host);
        }
        let port = match self.tunnel_endpoint()? {
            Some(e) => {
                c.hostaddr(std::net::IpAddr::V4(e.addr));
                e.port
            }
            None => self.port,
        };
        c.port(port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("pre-deploy")
            .connect_timeout(self.connect_timeout);
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c.ssl_mode(self.tls.driver_mode(&self.host))
            .channel_binding(self.tls.driver_channel_binding());
        Ok(c)
    }
}

pub use backup_core::redact_url;

fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(())?;
            let hex = std::str::from_utf8(hex).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// Looks the password up in `PGPASSFILE` or `~/.pgpass`, as libpq does.
fn pgpass_lookup(env: &dyn Env, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = env
        .var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            let [h, p, d, u, pw] = fields.as_slice() else {
                return None;
            };
            let m = |pat: &str, v: &str| pat == "*" || pat == v;
            (m(h, host) && m(p, &port) && m(d, db) && m(u, user)).then(|| pw.clone())
        })
}

/// Splits a `.pgpass` line on unescaped `:`, unescaping `\:` and `\\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn with_via_docker_the_url_host_must_be_the_container_itself() {
        let err = PgSourceConfig::from_url(
            "postgres://app:hunter2@db.example/app?via=docker://pg",
            &no_env,
        )
        .expect_err("a remote host with via=docker");
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("write localhost"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn url_fields_and_defaults() {
        let c = PgSourceConfig::from_url(
            "postgres://app:s%40cret@db.local:6432/shop?sslmode=disable",
            &no_env,
        )
        .expect("parses");
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()),
            ("db.local", 6432, "app", "shop")
        );
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(c.location(), "postgres://app@db.local:6432/shop");
        assert!(!format!("{c:?}").contains("s@cret"));
    }

    #[test]
    fn sslpassword_is_kept_as_a_secret() {
        let c = PgSourceConfig::from_url(
            "postgres://app@db/shop?sslcert=/c.crt&sslkey=/c.key&sslpassword=hunter%232",
            &no_env,
        )
        .expect("parses");
        assert_eq!(
            c.tls.key_password,
            Some(crate::tls::KeyPassword::new(Secret::new("hunter#2")))
        );
        assert!(!format!("{c:?}").contains("hunter"), "{c:?}");
        assert!(!c.location().contains("hunter"));
    }

    #[test]
    fn via_names_the_jump_host_and_the_location_keeps_it() {
        let c = PgSourceConfig::from_url(
            "postgres://app:pw@10.0.0.5:5432/app?via=ssh://deploy@db1.internal:22",
            &no_env,
        )
        .expect("parses");
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.5", 5432));
        assert_eq!(
            c.location(),
            "postgres://app@10.0.0.5:5432/app?via=ssh://deploy@db1.internal:22"
        );
        let c = PgSourceConfig::from_url("postgres:///app?user=app&via=ssh://bastion", &no_env)
            .expect("no host: the jump host's own server");
        assert_eq!(c.host, "localhost");
        for bad in [
            "postgres:///app?via=ssh://b&host=/run/postgresql",
            "postgres://app@h/app?via=http://b",
        ] {
            PgSourceConfig::from_url(bad, &no_env).expect_err(bad);
        }
    }

    #[test]
    fn pg_variables_fill_the_gaps() {
        let env = |k: &str| match k {
            "PGHOST" => Some("/tmp/sock".to_owned()),
            "PGUSER" => Some("alice".to_owned()),
            "PGPASSWORD" => Some("pw".to_owned()),
            _ => None,
        };
        let c = PgSourceConfig::from_url("postgresql:///app", &env).expect("parses");
        assert_eq!(
            (c.host.as_str(), c.user.as_str(), c.dbname.as_str()),
            ("/tmp/sock", "alice", "app")
        );
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(
            c.location(),
            "postgres://alice@localhost:5432/app?host=/tmp/sock"
        );
    }

    #[test]
    fn pgpass_is_honoured() {
        let dir = std::env::temp_dir().join(format!("pgpass-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# comment\nother:*:*:*:no\ndb.local:5432:*:app:pa\\:ss\n",
        )
        .expect("write");
        let path = dir.to_string_lossy().into_owned();
        let env = move |k: &str| (k == "PGPASSFILE").then(|| path.clone());
        let c = PgSourceConfig::from_url("postgres://app@db.local/shop", &env).expect("parses");
        std::fs::remove_file(&dir).ok();
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("pa:ss"));
    }

    #[test]
    fn errors_never_show_the_password() {
        let err = PgSourceConfig::from_url("postgres://app:hunter2@db/x?bogus=1", &no_env)
            .expect_err("unsupported parameter")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        assert_eq!(
            redact_url("postgres://a:hunter2@h/d?password=x"),
            "postgres://a:***@h/d?password=***"
        );
    }

    #[test]
    fn redaction_masks_every_query_value_but_known_ones_and_unparsed_urls_whole() {
        assert_eq!(
            redact_url("postgres://a@h/d?sslmode=require&sslpassword=hunter2&x_token=hunter2"),
            "postgres://a@h/d?sslmode=require&sslpassword=***&x_token=***"
        );
        // A mistyped `--source db:postgres://…` parses as scheme `db`.
        assert_eq!(redact_url("db:postgres://app:hunter2@h/d"), "db:***");
        assert_eq!(redact_url("not a url hunter2"), "***");
        assert_eq!(
            redact_url("s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=garage"),
            "s3://bucket/prefix?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=garage"
        );
    }
}
