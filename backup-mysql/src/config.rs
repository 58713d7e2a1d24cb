//! [`MysqlSourceConfig`]: the connection settings of a `mysql://` or `mariadb://` URL, and the
//! option file that hands them to the client tools without putting the password on argv.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use backup_core::docker::DockerTarget;
use backup_core::tunnel::{Endpoint, Tunnel, Via};
use backup_core::{Error, Result, redact_url};

/// The default MySQL/MariaDB TCP port.
pub const DEFAULT_PORT: u16 = 3306;

/// How long ssh may take to log in and forward the first connection.
const TUNNEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Connection settings of one MySQL or MariaDB database.
///
/// `mysql://user:password@host:port/database?socket=/run/mysqld/mysqld.sock`. Without a
/// password in the URL, the client tools read it from `~/.my.cnf` (as they always do), and so
/// does our own connection ([`MysqlSourceConfig::from_url`] reads the `[client]` group).
/// Without `?socket=`, every connection goes over TCP, `localhost` included.
/// `?via=ssh://…` reaches the server through a jump host; `?via=docker://NAME` or
/// `?via=docker-compose://PROJECT/SERVICE` reaches a server in a container whose port is not
/// published, with the host and port as the container sees them (`localhost:3306`; see
/// [`backup_core::docker`]). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlSourceConfig {
    /// Host name or address (default `localhost`); with [`docker`](Self::docker), once
    /// resolved by [`MysqlSourceConfig::from_url`], the container's address.
    pub host: String,
    /// TCP port (default 3306).
    pub port: u16,
    /// User name; `None`: the tools' default (from `~/.my.cnf` or the OS user).
    pub user: Option<String>,
    /// Password; `None`: from `~/.my.cnf`, or none.
    pub password: Option<String>,
    /// The database to back up.
    pub database: String,
    /// A Unix socket to connect through instead of TCP.
    pub socket: Option<PathBuf>,
    /// The URL scheme the user wrote (`mysql` or `mariadb`), for messages.
    pub scheme: String,
    /// Directory of the dump tools, overriding discovery on `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// `?via=ssh://…`: the jump host through which `host` and `port` are reached (the
    /// database's address as the jump host sees it); every connection and tool goes through it.
    pub via: Option<Tunnel>,
    /// `?via=docker://…`: the container the server runs in; `port` is the port inside it and
    /// `host` its address (see [`MysqlSourceConfig::resolve_container`]).
    pub docker: Option<DockerTarget>,
}

impl fmt::Debug for MysqlSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlSourceConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("socket", &self.socket)
            .field("bin_dir", &self.bin_dir)
            .field("via", &self.via.as_ref().map(Tunnel::via))
            .field("docker", &self.docker)
            .finish()
    }
}

impl MysqlSourceConfig {
    /// Settings from a `mysql://` or `mariadb://` URL; a password missing from the URL is
    /// taken from the `[client]` group of `~/.my.cnf` when there is one. With
    /// `?via=docker://…`, asks Docker for the container's address (see
    /// [`MysqlSourceConfig::resolve_container`]).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL, another scheme, no database, an unknown query
    /// key. The message shows the URL redacted. [`Error::SourceUnavailable`] when `via` names
    /// a container that does not exist or is not running, or Docker does not answer.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut cfg = Self::parse_url(url)?;
        cfg.resolve_container()?;
        if cfg.password.is_none() {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            if let Some(file) = home.map(|h| h.join(".my.cnf")) {
                let (user, password) = client_group(&file);
                if cfg.user.is_none() || cfg.user == user {
                    cfg.user = cfg.user.or(user);
                    cfg.password = password;
                }
            }
        }
        Ok(cfg)
    }

    /// Settings from the URL alone (no `~/.my.cnf`, and no question to Docker: with
    /// `?via=docker://…` the host stays the one written until
    /// [`MysqlSourceConfig::resolve_container`]).
    ///
    /// # Errors
    ///
    /// As [`MysqlSourceConfig::from_url`].
    pub fn parse_url(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid {
            what: "MySQL URL",
            value: redact_url(url),
            reason: reason.to_owned(),
        };
        let u = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let scheme = u.scheme().to_owned();
        if scheme != "mysql" && scheme != "mariadb" {
            return Err(invalid("the scheme must be mysql:// or mariadb://"));
        }
        let user = match u.username() {
            "" => None,
            name => Some(percent_decode(name).map_err(|()| invalid("bad percent-encoding"))?),
        };
        let password = u
            .password()
            .map(|p| percent_decode(p).map_err(|()| invalid("bad percent-encoding")))
            .transpose()?;
        let database = u.path().trim_start_matches('/');
        if database.is_empty() || database.contains('/') {
            return Err(invalid(
                "name one database in the path: mysql://user@host/database",
            ));
        }
        let database = percent_decode(database).map_err(|()| invalid("bad percent-encoding"))?;
        let mut socket = None;
        let mut via = None;
        let mut docker = None;
        for (key, value) in u.query_pairs() {
            match key.as_ref() {
                "socket" => socket = Some(PathBuf::from(value.into_owned())),
                // `docker://…` names a container (its address is asked of Docker later);
                // anything else is a jump host.
                "via" if DockerTarget::is_docker_via(&value) => docker = Some(value.into_owned()),
                "via" => via = Some(value.parse::<Via>()?),
                other => {
                    return Err(invalid(&format!(
                        "unknown setting {other:?} (known: socket, via)"
                    )));
                }
            }
        }
        if via.is_some() && socket.is_some() {
            return Err(invalid(
                "a socket cannot be reached via a jump host: name the database's host and port as the jump host sees them",
            ));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = u.port().unwrap_or(DEFAULT_PORT);
        let docker = docker
            .map(|v| {
                if via.is_some() {
                    return Err(invalid(
                        "name one via: a jump host (via=ssh://…) or a container (via=docker://…)",
                    ));
                }
                if socket.is_some() {
                    return Err(invalid(
                        "with via=docker:// leave out ?socket=: the server is reached at the container's address, on the port it listens on inside the container",
                    ));
                }
                DockerTarget::for_host(&v, &host).map_err(|e| invalid(&e))
            })
            .transpose()?;
        let via = via.map(|v| Tunnel::new(v, host.clone(), port));
        Ok(MysqlSourceConfig {
            host,
            port,
            user,
            password,
            database,
            socket,
            scheme,
            bin_dir: None,
            via,
            docker,
        })
    }

    /// With `?via=docker://…`: asks Docker for the container's address and makes it the host
    /// every connection and tool uses (nothing to do without it). [`MysqlSourceConfig::from_url`]
    /// calls it once; the address then holds for the configuration's lifetime.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] naming the container and what to do when it does not
    /// exist, is not running or has no address, or Docker does not answer; its `source_name`
    /// is the location (callers that know the source's name put it there).
    pub fn resolve_container(&mut self) -> Result<()> {
        let Some(target) = &self.docker else {
            return Ok(());
        };
        let endpoint = target.resolve().map_err(|e| match e {
            Error::SourceUnavailable { message, .. } => Error::SourceUnavailable {
                source_name: self.location(),
                message,
            },
            e => e,
        })?;
        self.host = endpoint.host;
        Ok(())
    }

    /// A hint for a connection that failed to reach the server (not one the server refused):
    /// what to check for a server in a container.
    pub(crate) fn connect_hint(&self, e: &mysql_async::Error) -> String {
        match &self.docker {
            Some(d) if matches!(e, mysql_async::Error::Io(_)) => format!(
                "; {d} has the address {} here: does the server listen on all addresses inside \
                 the container (bind-address = 0.0.0.0, as the official images do), on port {}, \
                 and can this machine reach the container's network (rootless Docker and Docker \
                 Desktop keep it apart)?",
                self.host, self.port
            ),
            _ => String::new(),
        }
    }

    /// Where the database is, without credentials: `mysql://user@host:port/database` (with
    /// `via=docker://NAME`: `localhost` and the container, not its passing address).
    pub fn location(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        if let Some(d) = &self.docker {
            return format!(
                "{}://{user}localhost:{}/{}?via={d}",
                self.scheme, self.port, self.database
            );
        }
        match &self.socket {
            Some(s) => format!(
                "{}://{user}{}/{}?socket={}",
                self.scheme,
                self.host,
                self.database,
                s.display()
            ),
            None => {
                let via = self
                    .via
                    .as_ref()
                    .map(|t| format!("?via={}", t.via()))
                    .unwrap_or_default();
                format!(
                    "{}://{user}{}:{}/{}{via}",
                    self.scheme, self.host, self.port, self.database
                )
            }
        }
    }

    /// Where to connect instead of `host:port` when the database is reached via a jump host:
    /// the local end of the tunnel, opened on first use and shared (`None` without `via`).
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] (named by the location) with ssh's own words.
    pub fn tunnel_endpoint(&self) -> Result<Option<Endpoint>> {
        self.via
            .as_ref()
            .map(|t| {
                t.endpoint(TUNNEL_TIMEOUT)
                    .map_err(|e| e.into_source_error(&self.location()))
            })
            .transpose()
    }

    /// Opens the tunnel, if any, off the async worker threads; errors name `source_name`.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] with ssh's own words.
    pub async fn open_tunnel(&self, source_name: &str) -> Result<()> {
        if let Some(t) = &self.via {
            t.endpoint_async(TUNNEL_TIMEOUT)
                .await
                .map_err(|e| e.into_source_error(source_name))?;
        }
        Ok(())
    }

    /// The `[client]` option-file text for the tools: user, password, host, port, socket
    /// (through a jump host: the tunnel's local end).
    fn option_file_text(&self, tunnel: Option<Endpoint>) -> String {
        let mut text = String::from("[client]\n");
        if let Some(user) = &self.user {
            text.push_str(&format!("user={}\n", quote_option(user)));
        }
        if let Some(password) = &self.password {
            text.push_str(&format!("password={}\n", quote_option(password)));
        }
        match &self.socket {
            Some(socket) => {
                text.push_str(&format!(
                    "socket={}\n",
                    quote_option(&socket.to_string_lossy())
                ));
                text.push_str("protocol=SOCKET\n");
            }
            None => {
                let (host, port) = match tunnel {
                    Some(e) => (e.addr.to_string(), e.port),
                    None => (self.host.clone(), self.port),
                };
                text.push_str(&format!("host={}\n", quote_option(&host)));
                text.push_str(&format!("port={port}\n"));
                // As our own connection does: `localhost` means TCP here too (the client tools
                // would otherwise pick their default socket); `?socket=` asks for a socket.
                text.push_str("protocol=TCP\n");
            }
        }
        text
    }

    /// Writes the option file a tool reads with `--defaults-extra-file`: created by
    /// `tempfile` with mode 0600, removed when the returned handle is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the temp file cannot be written; [`Error::SourceUnavailable`] when
    /// the tunnel cannot be opened.
    pub fn write_option_file(&self) -> Result<tempfile::NamedTempFile> {
        let tunnel = self.tunnel_endpoint()?;
        let mut file = tempfile::Builder::new()
            .prefix("predeploy-mysql-")
            .suffix(".cnf")
            .tempfile()
            .map_err(|e| Error::io("cannot create the MySQL option file", e))?;
        file.write_all(self.option_file_text(tunnel).as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| Error::io("cannot write the MySQL option file", e))?;
        Ok(file)
    }

    /// The same server and credentials, for another database.
    #[must_use]
    pub fn with_database(&self, database: &str) -> Self {
        let mut c = self.clone();
        database.clone_into(&mut c.database);
        c
    }

    /// Options of our own connection.
    pub(crate) fn connect_opts(&self) -> Result<mysql_async::Opts> {
        self.opts(Some(self.database.clone()))
    }

    /// Options of a connection to the server with no default database (for statements that
    /// create, drop or move between databases).
    pub(crate) fn server_opts(&self) -> Result<mysql_async::Opts> {
        self.opts(None)
    }

    fn opts(&self, database: Option<String>) -> Result<mysql_async::Opts> {
        let tunnel = self.tunnel_endpoint()?;
        let mut b = mysql_async::OptsBuilder::default()
            .user(self.user.clone())
            .pass(self.password.clone())
            .db_name(database)
            .prefer_socket(false);
        b = match &self.socket {
            Some(s) => b.socket(Some(s.to_string_lossy().into_owned())),
            None => match tunnel {
                Some(e) => b.ip_or_hostname(e.addr.to_string()).tcp_port(e.port),
                None => b.ip_or_hostname(self.host.clone()).tcp_port(self.port),
            },
        };
        Ok(b.into())
    }
}

/// A value quoted for an option file (backslash escapes, as the client library reads them).
fn quote_option(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `user` and `password` of the `[client]` group of an option file (unreadable: none).
fn client_group(file: &Path) -> (Option<String>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return (None, None);
    };
    let (mut user, mut password) = (None, None);
    let mut in_client = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_client = line == "[client]";
            continue;
        }
        if !in_client || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v)
                .to_owned();
            match k.trim() {
                "user" => user = Some(v),
                "password" => password = Some(v),
                _ => {}
            }
        }
    }
    (user, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_every_setting() {
        let c =
            MysqlSourceConfig::parse_url("mysql://app:p%40ss@db.example:3307/shop").expect("valid");
        assert_eq!(c.host, "db.example");
        assert_eq!(c.port, 3307);
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.database, "shop");
        assert_eq!(c.location(), "mysql://app@db.example:3307/shop");
        assert!(!format!("{c:?}").contains("p@ss"));
        let c = MysqlSourceConfig::parse_url("mariadb://root@localhost/app?socket=/run/m.sock")
            .expect("valid");
        assert_eq!(c.socket, Some(PathBuf::from("/run/m.sock")));
        assert_eq!(c.port, DEFAULT_PORT);
        let c =
            MysqlSourceConfig::parse_url("mysql://app:pw@10.0.0.5/shop?via=ssh://deploy@db1:2222")
                .expect("valid");
        assert_eq!(c.host, "10.0.0.5");
        assert_eq!(
            c.location(),
            "mysql://app@10.0.0.5:3306/shop?via=ssh://deploy@db1:2222"
        );
        MysqlSourceConfig::parse_url("mysql://app@h/shop?via=ssh://b&socket=/run/m.sock")
            .expect_err("a socket through a jump host");
    }

    #[test]
    fn via_docker_names_the_container_and_keeps_the_host_it_sees() {
        for (url, via) in [
            (
                "mariadb://app:pw@localhost:3306/app?via=docker://shop-db-1",
                "docker://shop-db-1",
            ),
            (
                "mysql://app@127.0.0.1/app?via=docker-compose://shop/mysql",
                "docker-compose://shop/mysql",
            ),
        ] {
            let c = MysqlSourceConfig::parse_url(url).expect(url);
            assert_eq!(
                c.docker.as_ref().map(ToString::to_string).as_deref(),
                Some(via)
            );
            assert!(c.via.is_none(), "not a jump host");
            assert!(
                c.location()
                    .ends_with(&format!("@localhost:3306/app?via={via}")),
                "{}",
                c.location()
            );
            assert!(!c.location().contains("pw"), "{}", c.location());
        }
        for (url, says) in [
            (
                "mysql://app:secret@db.example/app?via=docker://db",
                "write localhost",
            ),
            (
                "mysql://app:secret@localhost/app?via=docker://db&socket=/run/mysqld/mysqld.sock",
                "leave out ?socket=",
            ),
            (
                "mysql://app:secret@localhost/app?via=docker-compose://shop",
                "docker-compose://PROJECT/SERVICE",
            ),
            (
                "mysql://app:secret@localhost/app?via=docker://db&via=ssh://bastion",
                "name one via",
            ),
        ] {
            let e = MysqlSourceConfig::parse_url(url).expect_err(url);
            assert!(matches!(e, Error::Invalid { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains(says), "{says}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        for url in [
            "mysql://app:secret@host/",
            "mysql://app:secret@host/db?sslmode=require",
            "postgres://app:secret@host/db",
        ] {
            let e = MysqlSourceConfig::parse_url(url)
                .expect_err(url)
                .to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn the_option_file_quotes_the_password_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let c = MysqlSourceConfig::parse_url("mysql://app:a%22b%5Cc@h/db").expect("valid");
        assert!(
            c.option_file_text(None)
                .contains("password=\"a\\\"b\\\\c\"\n")
        );
        let f = c.write_option_file().expect("written");
        let mode = std::fs::metadata(f.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let path = f.path().to_owned();
        drop(f);
        assert!(!path.exists());
    }
}
