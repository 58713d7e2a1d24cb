//! The runbook seam: each backend writes the steps that put its sources back — the
//! `pre-deploy restore` command and a raw equivalent for an operator who cannot run the tool.
//! Everything printed is meant for `sh -e` and comes from a manifest a tampered store controls:
//! quote every value with [`shell_quote`] (or validate it).

use serde::Serialize;

use crate::manifest::{Manifest, SourceManifest};

/// One step of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunbookStep {
    /// What the step does.
    pub title: String,
    /// Shell commands, in order.
    pub commands: Vec<String>,
}

/// What a backend's runbook steps are written against.
pub struct RunbookContext<'a> {
    /// The backup.
    pub manifest: &'a Manifest,
    /// The environment, for `--env`.
    pub environment: &'a str,
    /// ` --store <dir or URL>` (quoted), or empty when the store is the default.
    pub store_arg: String,
    /// How the AWS CLI reaches an S3 store (`aws s3`, with `--endpoint-url` for MinIO/Garage).
    pub aws: String,
    /// Whether the store is a local directory (raw commands can read its files).
    pub local_store: bool,
    /// Where a stored key is, for raw commands: a path, or an `s3://` URL.
    pub locate: &'a (dyn Fn(&str) -> String + Sync),
}

impl std::fmt::Debug for RunbookContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunbookContext")
            .field("manifest", &self.manifest.id)
            .field("environment", &self.environment)
            .field("store_arg", &self.store_arg)
            .finish_non_exhaustive()
    }
}

impl RunbookContext<'_> {
    /// `pre-deploy restore <id> --source <name> [--store …] --env <env>`.
    pub fn restore_command(&self, source: &SourceManifest) -> String {
        format!(
            "pre-deploy restore {} --source {}{} --env {}",
            self.manifest.id,
            shell_quote(source.name.as_str()),
            self.store_arg,
            shell_quote(self.environment)
        )
    }
}

/// How the raw commands reach a server that pre-deploy reaches through `via=` (a Docker
/// container's address, an SSH port forward): the URL's own host and port only make sense
/// from inside the container or from the jump host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Commands to run first (they find the address or open the tunnel).
    pub setup: Vec<String>,
    /// The host to connect to, as a shell word (it may expand a variable the setup set).
    pub host: String,
    /// The port to connect to.
    pub port: u16,
    /// Said in the step's title: how the server is reached.
    pub how: String,
}

/// The variable the setup commands store a container's address in.
const HOST_VARIABLE: &str = "PREDEPLOY_DB_HOST";

/// Where the raw commands connect for a stored `location` whose URL names `host` and `port`,
/// when the location has a `via=` parameter; `None` without one (connect as the URL says) or
/// when the value is not one pre-deploy would accept. `tag` names the backup and source, for
/// the SSH control socket.
#[must_use]
pub fn reach_through_via(location: &str, host: &str, port: u16, tag: &str) -> Option<Reach> {
    let url = url::Url::parse(location).ok()?;
    let via = url
        .query_pairs()
        .find(|(k, _)| k == "via")
        .map(|(_, v)| v.into_owned())?;
    if crate::docker::DockerTarget::is_docker_via(&via) {
        let target = crate::docker::DockerTarget::parse(&via).ok()?;
        let container = match &target {
            crate::docker::DockerTarget::Container(name) => shell_quote(name),
            crate::docker::DockerTarget::Compose { project, service } => format!(
                "\"$(docker ps -q --filter {} --filter {} | head -n 1)\"",
                shell_quote(&format!(
                    "label={}={project}",
                    crate::docker::COMPOSE_PROJECT_LABEL
                )),
                shell_quote(&format!(
                    "label={}={service}",
                    crate::docker::COMPOSE_SERVICE_LABEL
                )),
            ),
        };
        // The container's first address on its networks; 127.0.0.1 for one on the host's
        // network (no address of its own). Nothing at all when Docker does not know the
        // container: the `test` then stops `sh -e` before any command reaches a wrong server.
        return Some(Reach {
            setup: vec![
                format!(
                    "{HOST_VARIABLE}=$(docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}} {{{{end}}}}127.0.0.1' {container} | awk '{{print $1}}')"
                ),
                format!("test -n \"${HOST_VARIABLE}\""),
            ],
            host: format!("\"${HOST_VARIABLE}\""),
            port,
            how: format!("at the container's address, as with via={via}"),
        });
    }
    let crate::tunnel::Via::Ssh {
        user,
        host: jump,
        port: ssh_port,
    } = via.parse::<crate::tunnel::Via>().ok()?
    else {
        return None;
    };
    let local_port = 50_000 + port % 10_000;
    let socket = format!("/tmp/predeploy-{tag}.ssh");
    let mut ssh = format!(
        "ssh -f -N -M -S {} -o ExitOnForwardFailure=yes -L {}",
        shell_quote(&socket),
        shell_quote(&format!("127.0.0.1:{local_port}:{host}:{port}"))
    );
    if let Some(p) = ssh_port {
        ssh.push_str(&format!(" -p {p}"));
    }
    if let Some(u) = &user {
        ssh.push_str(&format!(" -l {}", shell_quote(u)));
    }
    ssh.push_str(&format!(" {}", shell_quote(&jump)));
    Some(Reach {
        setup: vec![
            ssh,
            // The tunnel closes when this shell ends, whichever command ends it.
            format!(
                "trap {} EXIT",
                shell_quote(&format!(
                    "ssh -S {} -O exit {} 2>/dev/null",
                    shell_quote(&socket),
                    shell_quote(&jump)
                ))
            ),
        ],
        host: "127.0.0.1".into(),
        port: local_port,
        how: format!(
            "through an SSH tunnel to {jump} on local port {local_port} (pick another if it is taken)"
        ),
    })
}

/// How the raw commands of a runbook name the age identity file of an encrypted backup: the
/// `PREDEPLOY_AGE_IDENTITY_FILE` variable, which `sh` refuses to leave unset.
pub const AGE_IDENTITY: &str =
    "\"${PREDEPLOY_AGE_IDENTITY_FILE:?set PREDEPLOY_AGE_IDENTITY_FILE to your age identity file}\"";

/// Quotes `s` for `sh` when it needs it.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@+=,%".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `s` as a JSON (and so Python) string literal.
pub fn json_literal(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("app__x"), "app__x");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(json_literal("a\u{1}\"b"), "\"a\\u0001\\\"b\"");
    }

    #[test]
    fn via_becomes_setup_commands() {
        assert_eq!(
            reach_through_via("postgres://a@h:5432/db", "h", 5432, "x"),
            None
        );
        let docker = reach_through_via(
            "postgres://a@localhost:5432/db?via=docker://shop-db-1",
            "localhost",
            5432,
            "x",
        )
        .expect("docker");
        assert!(
            docker.setup[0].contains("docker inspect") && docker.setup[0].contains(" shop-db-1 ")
        );
        assert_eq!(
            (docker.host.as_str(), docker.port),
            ("\"$PREDEPLOY_DB_HOST\"", 5432)
        );
        let compose = reach_through_via(
            "mysql://a@127.0.0.1:3306/db?via=docker-compose://shop/mariadb",
            "127.0.0.1",
            3306,
            "x",
        )
        .expect("compose");
        assert!(compose.setup[0].contains("--filter label=com.docker.compose.service=mariadb "));
        let ssh = reach_through_via(
            "postgres://a@10.0.0.5:5432/db?via=ssh://deploy@db1.internal:2222",
            "10.0.0.5",
            5432,
            "id-db",
        )
        .expect("ssh");
        assert_eq!(
            ssh.setup[0],
            "ssh -f -N -M -S /tmp/predeploy-id-db.ssh -o ExitOnForwardFailure=yes \
             -L 127.0.0.1:55432:10.0.0.5:5432 -p 2222 -l deploy db1.internal"
        );
        assert!(ssh.setup[1].starts_with("trap "));
        assert_eq!((ssh.host.as_str(), ssh.port), ("127.0.0.1", 55432));
        // A value pre-deploy itself would refuse gives no commands at all.
        assert_eq!(
            reach_through_via("postgres://a@h/db?via=ftp://x", "h", 5432, "x"),
            None
        );
    }
}
