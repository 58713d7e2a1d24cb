//! Reaching a database through a jump host: the `via` setting of a source
//! (`postgres://app@10.0.0.5:5432/app?via=ssh://deploy@db1.internal:22`).
//!
//! [`Via`] is the parsed value; [`Tunnel`] is the shared, lazily opened way through it that
//! every connection and every client tool of a source uses. For `ssh://`, the system's OpenSSH
//! client forwards a free loopback port to the database host and port *as the jump host sees
//! them* ([`SshTunnel`]): `~/.ssh/config` (aliases, `ProxyJump`, `IdentityFile`), the agent and
//! `known_hosts` work as they do for `ssh` itself. `PREDEPLOY_SSH_COMMAND` replaces the program
//! (`ssh -F /etc/predeploy/ssh_config`), split on whitespace.
//!
//! The forward lives as long as a [`Tunnel`] handle to it: one `ssh` per jump host and
//! destination per process, ended when the last handle is dropped, and with the process in every
//! other case (the child gets `PR_SET_PDEATHSIG`, so even `kill -9` of pre-deploy takes it with
//! it). `ssh` runs in its own process group, so a Ctrl-C on the terminal reaches pre-deploy,
//! which cleans up through the still-open forward, and not `ssh` directly.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::time::Duration;

use crate::{Error, Result};

/// The environment variable that replaces `ssh` (program and leading arguments, split on
/// whitespace), e.g. `ssh -F /etc/predeploy/ssh_config`.
pub const SSH_COMMAND_ENV: &str = "PREDEPLOY_SSH_COMMAND";

/// How a database is reached: the parsed value of a source's `via` setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Via {
    /// `ssh://[user@]host[:port]`: a local port forwarded by the OpenSSH client. `host` may be
    /// an alias of `~/.ssh/config`.
    Ssh {
        /// The login name on the jump host (`None`: ssh's own default or config).
        user: Option<String>,
        /// The jump host, or a `Host` alias of the ssh configuration.
        host: String,
        /// The SSH port (`None`: ssh's default or config).
        port: Option<u16>,
    },
    /// `docker://NAME`: the database runs in (or is reached from) a Docker container.
    Docker {
        /// The container's name or id.
        container: String,
    },
}

impl FromStr for Via {
    type Err = Error;

    /// Parses `ssh://[user@]host[:port]` or `docker://NAME`.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid {
            what: "via",
            value: crate::redact_url(s),
            reason: reason.to_owned(),
        };
        let u = url::Url::parse(s).map_err(|e| {
            invalid(&format!(
                "{e}; write via=ssh://[user@]host[:port] or via=docker://NAME"
            ))
        })?;
        let host = u
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it names no host"))?;
        if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
            return Err(invalid("only [user@]host[:port] may follow the scheme"));
        }
        if u.password().is_some() {
            return Err(invalid(
                "it holds a password: ssh logs in with keys (ssh-agent, IdentityFile), never a password in the URL",
            ));
        }
        if host.starts_with('-') {
            return Err(invalid("a host name cannot start with '-'"));
        }
        match u.scheme() {
            "ssh" => {
                let user = Some(percent_decode(u.username()))
                    .filter(|n| !n.is_empty())
                    .map(|n| {
                        if n.starts_with('-') || n.contains(char::is_whitespace) {
                            Err(invalid("bad user name"))
                        } else {
                            Ok(n)
                        }
                    })
                    .transpose()?;
                Ok(Via::Ssh {
                    user,
                    host,
                    port: u.port(),
                })
            }
            "docker" => {
                if !u.username().is_empty() || u.port().is_some() {
                    return Err(invalid("write docker://CONTAINER, nothing more"));
                }
                Ok(Via::Docker { container: host })
            }
            _ => Err(invalid(
                "the scheme must be ssh:// (or docker://): via=ssh://[user@]host[:port]",
            )),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Via::Docker { container } => write!(f, "docker://{container}"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Where to connect instead of the database's own host and port, while a [`Tunnel`] is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The local address (always loopback).
    pub addr: Ipv4Addr,
    /// The local port.
    pub port: u16,
}

/// The way to one database through a [`Via`]: opened on first use, shared by every clone and
/// by every other `Tunnel` of this process with the same `via` and destination, closed when the
/// last user is gone.
///
/// `PartialEq` compares what the tunnel leads to, not whether it is open.
#[derive(Clone)]
pub struct Tunnel {
    key: Arc<TunnelKey>,
    open: Arc<Mutex<Option<Arc<SshTunnel>>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TunnelKey {
    via: Via,
    host: String,
    port: u16,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("via", &self.key.via)
            .field("to", &format_args!("{}:{}", self.key.host, self.key.port))
            .finish()
    }
}

impl PartialEq for Tunnel {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Tunnel {}

/// The live SSH forwards of this process, by what they lead to.
static LIVE: Mutex<Option<HashMap<TunnelKey, Weak<SshTunnel>>>> = Mutex::new(None);

impl Tunnel {
    /// A tunnel through `via` to `host:port` as the jump host sees them. Nothing starts until
    /// [`Tunnel::endpoint`].
    pub fn new(via: Via, host: impl Into<String>, port: u16) -> Self {
        Tunnel {
            key: Arc::new(TunnelKey {
                via,
                host: host.into(),
                port,
            }),
            open: Arc::new(Mutex::new(None)),
        }
    }

    /// What the tunnel goes through.
    pub fn via(&self) -> &Via {
        &self.key.via
    }

    /// The local address that leads to the database, opening the tunnel first if it is not
    /// open (or its `ssh` has exited). Blocks while `ssh` logs in, at most about `timeout`.
    ///
    /// # Errors
    ///
    /// [`TunnelError`] with `ssh`'s own words when it exits before the forward works (unknown
    /// host key, refused key, unknown host), or when the forward does not work within
    /// `timeout`; [`Via::Docker`] is not supported in this build.
    pub fn endpoint(&self, timeout: Duration) -> std::result::Result<Endpoint, TunnelError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = open.as_ref().filter(|t| t.is_running()) {
            return Ok(t.endpoint());
        }
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let live = live.get_or_insert_with(HashMap::new);
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(t) = live
            .get(&self.key)
            .and_then(Weak::upgrade)
            .filter(|t| t.is_running())
        {
            let e = t.endpoint();
            *open = Some(t);
            return Ok(e);
        }
        let t = match &self.key.via {
            Via::Ssh { user, host, port } => Arc::new(SshTunnel::open(
                &SshTarget {
                    user: user.as_deref(),
                    host,
                    port: *port,
                },
                &self.key.host,
                self.key.port,
                timeout,
            )?),
            Via::Docker { .. } => {
                return Err(TunnelError {
                    via: self.key.via.to_string(),
                    message: "via=docker:// is not supported by this build of pre-deploy"
                        .to_owned(),
                });
            }
        };
        live.insert((*self.key).clone(), Arc::downgrade(&t));
        let e = t.endpoint();
        *open = Some(t);
        Ok(e)
    }

    /// [`Tunnel::endpoint`] off the async worker threads (`ssh` may take seconds to log in).
    ///
    /// # Errors
    ///
    /// As [`Tunnel::endpoint`].
    pub async fn endpoint_async(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Endpoint, TunnelError> {
        let t = self.clone();
        tokio::task::spawn_blocking(move || t.endpoint(timeout))
            .await
            .map_err(|e| TunnelError {
                via: self.key.via.to_string(),
                message: format!("the task opening the tunnel failed: {e}"),
            })?
    }

    /// The process id of the `ssh` behind this tunnel, while it is open.
    pub fn ssh_pid(&self) -> Option<u32> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|t| t.pid)
    }
}

/// A tunnel that could not be opened: `ssh`'s own words and what to check. Never holds a
/// database password (none is ever given to `ssh`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot open the tunnel via {via}: {message}")]
pub struct TunnelError {
    /// The `via` value, as written.
    pub via: String,
    /// What happened, with `ssh`'s stderr quoted and a hint.
    pub message: String,
}

impl TunnelError {
    /// The error as a source that cannot be reached (exit 5 on the command line).
    pub fn into_source_error(self, source_name: &str) -> Error {
        Error::SourceUnavailable {
            source_name: source_name.to_owned(),
            message: self.to_string(),
        }
    }
}

/// The jump host of an [`SshTunnel`].
#[derive(Debug, Clone, Copy)]
pub struct SshTarget<'a> {
    /// Login name, if given.
    pub user: Option<&'a str>,
    /// Host name or `~/.ssh/config` alias.
    pub host: &'a str,
    /// SSH port, if given.
    pub port: Option<u16>,
}

/// One `ssh -N -L 127.0.0.1:PORT:HOST:PORT` child, killed (and reaped) on drop.
#[derive(Debug)]
pub struct SshTunnel {
    child: Mutex<Child>,
    pid: u32,
    local_port: u16,
    /// Dropped last: ends the thread that spawned `ssh` (its death signal is tied to it).
    _keeper: mpsc::Sender<()>,
}

/// Attempts at a free local port when another process takes the one we picked.
const PORT_ATTEMPTS: usize = 3;
/// Pause between two checks of the forward.
const POLL: Duration = Duration::from_millis(50);
/// Lines of ssh's stderr kept for messages.
const STDERR_LINES: usize = 20;

impl SshTunnel {
    /// Starts `ssh` forwarding a free port of 127.0.0.1 to `db_host:db_port` as `target` sees
    /// them, and returns once the forward accepts a connection.
    ///
    /// # Errors
    ///
    /// [`TunnelError`] quoting ssh's stderr when it exits first, or when the forward does not
    /// accept a connection within `timeout`.
    pub fn open(
        target: &SshTarget<'_>,
        db_host: &str,
        db_port: u16,
        timeout: Duration,
    ) -> std::result::Result<Self, TunnelError> {
        let via = Via::Ssh {
            user: target.user.map(str::to_owned),
            host: target.host.to_owned(),
            port: target.port,
        }
        .to_string();
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_open(target, db_host, db_port, timeout, &via) {
                Ok(t) => return Ok(t),
                Err((e, port_taken)) => {
                    last = Some(e);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| TunnelError {
            via,
            message: "no attempt was made".into(),
        }))
    }

    /// One attempt; the flag says whether another one with a new port may succeed.
    fn try_open(
        target: &SshTarget<'_>,
        db_host: &str,
        db_port: u16,
        timeout: Duration,
        via: &str,
    ) -> std::result::Result<Self, (TunnelError, bool)> {
        let fail = |message: String| TunnelError {
            via: via.to_owned(),
            message,
        };
        let local_port = free_port()
            .map_err(|e| (fail(format!("cannot find a free local port: {e}")), false))?;
        let mut cmd = ssh_command(target, local_port, db_host, db_port, timeout)
            .map_err(|m| (fail(m), false))?;
        let shown = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_parent(&mut cmd);
        let (child, keeper) = spawn_on_keeper_thread(cmd)
            .map_err(|e| (fail(format!("cannot start {shown}: {e}")), false))?;
        let pid = child.id();
        let mut tunnel = SshTunnel {
            child: Mutex::new(child),
            pid,
            local_port,
            _keeper: keeper,
        };
        let stderr = tunnel.take_stderr();
        let attempts = (timeout.as_millis() / POLL.as_millis()).max(20);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, local_port));
        for _ in 0..attempts {
            if let Some(status) = tunnel.exit_status() {
                let said = stderr.wait_for_end();
                let port_taken = said.contains("Address already in use")
                    || said.contains("cannot listen to port");
                return Err((
                    fail(format!(
                        "ssh exited ({status}) before the forward to {db_host}:{db_port} worked: {}{}",
                        if said.is_empty() {
                            "(ssh said nothing)".to_owned()
                        } else {
                            format!("\"{said}\"")
                        },
                        hint(&said)
                    )),
                    port_taken,
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                && tunnel.exit_status().is_none()
            {
                tracing::debug!(pid, local_port, %via, "ssh forward is up");
                stderr.forward_to_log();
                return Ok(tunnel);
            }
            std::thread::sleep(POLL);
        }
        tunnel.kill();
        let said = stderr.wait_for_end();
        Err((
            fail(format!(
                "the forward to {db_host}:{db_port} did not accept a connection within {} s{}",
                timeout.as_secs(),
                if said.is_empty() {
                    String::new()
                } else {
                    format!("; ssh said: \"{said}\"")
                }
            )),
            false,
        ))
    }

    /// The local side of the forward.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: Ipv4Addr::LOCALHOST,
            port: self.local_port,
        }
    }

    /// The `ssh` process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether `ssh` is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        c.try_wait().ok().flatten()
    }

    fn take_stderr(&mut self) -> StderrTail {
        let pipe = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .stderr
            .take();
        StderrTail::start(pipe)
    }

    fn kill(&self) {
        let mut c = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if c.try_wait().ok().flatten().is_none() {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        self.kill();
        tracing::debug!(pid = self.pid, "ssh forward closed");
    }
}

/// The `ssh` command line: `PREDEPLOY_SSH_COMMAND` (or `ssh`), then the forward. No database
/// credential is on it.
fn ssh_command(
    target: &SshTarget<'_>,
    local_port: u16,
    db_host: &str,
    db_port: u16,
    timeout: Duration,
) -> std::result::Result<Command, String> {
    let configured = std::env::var(SSH_COMMAND_ENV).ok();
    let words: Vec<&str> = configured
        .as_deref()
        .map(|c| c.split_whitespace().collect())
        .filter(|w: &Vec<&str>| !w.is_empty())
        .unwrap_or_else(|| vec!["ssh"]);
    let (program, args) = words
        .split_first()
        .ok_or_else(|| format!("{SSH_COMMAND_ENV} is empty"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.args(forward_args(target, local_port, db_host, db_port, timeout));
    Ok(cmd)
}

/// The arguments after the program: no remote command, never a prompt, fail unless the forward
/// is set up, no connection sharing (the forward must die with this child), then the host.
pub fn forward_args(
    target: &SshTarget<'_>,
    local_port: u16,
    db_host: &str,
    db_port: u16,
    timeout: Duration,
) -> Vec<String> {
    let db_host = if db_host.contains(':') {
        format!("[{db_host}]")
    } else {
        db_host.to_owned()
    };
    let mut args: Vec<String> = [
        "-N",
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ControlPath=none",
        "-o",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(format!("ConnectTimeout={}", timeout.as_secs().max(1)));
    args.push("-L".into());
    args.push(format!("127.0.0.1:{local_port}:{db_host}:{db_port}"));
    if let Some(p) = target.port {
        args.push("-p".into());
        args.push(p.to_string());
    }
    if let Some(u) = target.user {
        args.push("-l".into());
        args.push(u.to_owned());
    }
    args.push("--".into());
    args.push(target.host.to_owned());
    args
}

/// What to check, from ssh's words.
fn hint(said: &str) -> &'static str {
    if said.contains("Host key verification failed") || said.contains("HOST IDENTIFICATION") {
        "; the jump host's key is not (or no longer) in known_hosts: check it and add it \
         (ssh-keyscan, or log in once with ssh)"
    } else if said.contains("Permission denied") {
        "; the jump host refused our key: load it into ssh-agent or name it with IdentityFile \
         in ~/.ssh/config (no prompt is possible here)"
    } else if said.contains("Could not resolve hostname") {
        "; the jump host's name does not resolve: check the via host or its alias in ~/.ssh/config"
    } else if said.contains("Address already in use") {
        "; another process took the local port"
    } else {
        "; check that `ssh` to the via host works from here without a prompt"
    }
}

/// A free port on 127.0.0.1 (bound and released; ssh binds it right after).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Spawns `cmd` on a thread that lives until the returned sender is dropped: the child's
/// parent-death signal fires when the thread that forked it ends, so that thread must outlive
/// the tunnel (the async runtime's blocking threads come and go).
fn spawn_on_keeper_thread(mut cmd: Command) -> std::io::Result<(Child, mpsc::Sender<()>)> {
    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (keep_tx, keep_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("ssh-tunnel".into())
        .spawn(move || {
            let _ = spawned_tx.send(cmd.spawn());
            // Returns when the tunnel drops its sender.
            let _ = keep_rx.recv();
        })?;
    let child = spawned_rx
        .recv()
        .map_err(|_| std::io::Error::other("the ssh keeper thread ended"))??;
    Ok((child, keep_tx))
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it (and so this process)
/// ends, so no `ssh` outlives a killed pre-deploy.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: nobody would end this ssh.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// ssh's stderr, read on a thread (a full pipe would block ssh), its last lines kept.
struct StderrTail {
    lines: Arc<Mutex<Vec<String>>>,
    done: mpsc::Receiver<()>,
    log: Arc<std::sync::atomic::AtomicBool>,
}

impl StderrTail {
    fn start(pipe: Option<std::process::ChildStderr>) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let (l, lg) = (Arc::clone(&lines), Arc::clone(&log));
        let spawned = std::thread::Builder::new()
            .name("ssh-stderr".into())
            .spawn(move || {
                if let Some(pipe) = pipe {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        let line = line.trim_end().to_owned();
                        if line.is_empty() {
                            continue;
                        }
                        if lg.load(std::sync::atomic::Ordering::Relaxed) {
                            tracing::info!(target: "ssh", "{line}");
                        }
                        let mut v = l.lock().unwrap_or_else(PoisonError::into_inner);
                        v.push(line);
                        if v.len() > STDERR_LINES {
                            v.remove(0);
                        }
                    }
                }
                let _ = done_tx.send(());
            });
        if spawned.is_err() {
            tracing::debug!("cannot start the thread reading ssh's stderr");
        }
        StderrTail { lines, done, log }
    }

    /// The kept lines, once ssh's stderr is closed (or after a few seconds: a `ProxyCommand`
    /// child may hold it open).
    fn wait_for_end(&self) -> String {
        let _ = self.done.recv_timeout(Duration::from_secs(3));
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join(" / ")
    }

    /// From now on, what ssh says goes to the log (e.g. a forward to a host it cannot reach).
    fn forward_to_log(self) {
        self.log.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_values_parse_and_print_as_written() {
        for (text, user, host, port) in [
            (
                "ssh://deploy@db1.internal:2222",
                Some("deploy"),
                "db1.internal",
                Some(2222),
            ),
            ("ssh://bastion", None, "bastion", None),
            ("ssh://u@[::1]:22", Some("u"), "::1", Some(22)),
        ] {
            let via: Via = text.parse().expect(text);
            assert_eq!(
                via,
                Via::Ssh {
                    user: user.map(str::to_owned),
                    host: host.to_owned(),
                    port
                }
            );
            assert_eq!(via.to_string(), text);
        }
        assert_eq!(
            "docker://pg".parse::<Via>().expect("docker"),
            Via::Docker {
                container: "pg".into()
            }
        );
    }

    #[test]
    fn bad_values_are_refused_without_showing_a_password() {
        for bad in [
            "ssh://",
            "ssh://u:hunter2@h",
            "ssh://h/path",
            "http://h",
            "ssh://-oProxyCommand=x",
            "bastion",
        ] {
            let e = bad.parse::<Via>().expect_err(bad).to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_forward_never_prompts_and_names_the_host_last() {
        let args = forward_args(
            &SshTarget {
                user: Some("deploy"),
                host: "db1",
                port: Some(2222),
            },
            40000,
            "::1",
            5432,
            Duration::from_secs(10),
        );
        let line = args.join(" ");
        assert!(line.starts_with("-N -o BatchMode=yes -o ExitOnForwardFailure=yes"));
        assert!(line.contains("-L 127.0.0.1:40000:[::1]:5432"), "{line}");
        assert!(line.ends_with("-p 2222 -l deploy -- db1"), "{line}");
    }

    #[test]
    fn docker_is_refused_here_in_words() {
        let t = Tunnel::new("docker://pg".parse().expect("via"), "localhost", 5432);
        let e = t.endpoint(Duration::from_secs(1)).expect_err("unsupported");
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
