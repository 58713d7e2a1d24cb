//! `via=docker://CONTAINER` and `via=docker-compose://PROJECT/SERVICE`: a database server that
//! runs in a Docker container whose port is not published, the way Compose deployments run it.
//! Shared by every backend (PostgreSQL, MySQL/MariaDB); [`crate::tunnel`] is the `via=ssh://`
//! counterpart.
//!
//! The URL's host and port are the ones the container sees (`localhost:5432` means "inside the
//! container"). [`DockerTarget::resolve`] asks the Docker daemon (the `docker` command line, so
//! `DOCKER_HOST` and `docker context` apply) for the container's address on its network, and
//! the source's host becomes that address. The backend's own connection, its dump tool, the
//! level-4 test restore and `restore` then all reach the one server at that address, exactly as
//! they reach any other host: consistent snapshots, the row counts taken in them, the streaming
//! and the password in the tools' environment or option file are unchanged. Nothing runs inside
//! the container, and no secret is handed to `docker` (its argv holds only the container's name
//! or the Compose labels).
//!
//! ```
//! use backup_core::docker::DockerTarget;
//!
//! let via = "docker-compose://shop/db";
//! assert!(DockerTarget::is_docker_via(via));
//! let target = DockerTarget::for_host(via, "localhost").expect("valid");
//! assert_eq!(target.to_string(), via);
//! // The host must be the container itself, as `docker compose exec` would reach it.
//! assert!(DockerTarget::for_host(via, "db.example").is_err());
//! ```

use std::fmt;
use std::process::{Command, Output, Stdio};

use crate::{Error, Result};
use serde_json::Value;

/// The Compose label that names a container's project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// The Compose label that names a container's service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// The container a `via=` parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerTarget {
    /// `docker://NAME` (a container name or id).
    Container(String),
    /// `docker-compose://PROJECT/SERVICE`: the running container with these Compose labels.
    Compose {
        /// `com.docker.compose.project` (`docker compose -p`, by default the directory name).
        project: String,
        /// `com.docker.compose.service` (the service's key in the Compose file).
        service: String,
    },
}

/// Where a [`DockerTarget`]'s server answers, as seen from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// The container's name (without Docker's leading `/`).
    pub container: String,
    /// The address to connect to: the container's IP on its network, or `127.0.0.1` for a
    /// container on the host's network.
    pub host: String,
    /// The network the address belongs to (`host` for the host's network).
    pub network: String,
}

impl DockerTarget {
    /// Whether a `via=` value names a container (`docker://…` or `docker-compose://…`) rather
    /// than a jump host: the dispatch every backend makes before parsing it.
    #[must_use]
    pub fn is_docker_via(via: &str) -> bool {
        via.starts_with("docker://") || via.starts_with("docker-compose://")
    }

    /// Parses the value of `via=`: `docker://NAME` or `docker-compose://PROJECT/SERVICE`.
    ///
    /// # Errors
    ///
    /// A message saying which form is expected.
    pub fn parse(via: &str) -> std::result::Result<Self, String> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        if let Some(name) = via.strip_prefix("docker://") {
            return if valid(name) {
                Ok(DockerTarget::Container(name.to_owned()))
            } else {
                Err(format!(
                    "via={via}: write via=docker://CONTAINER with a container's name or id"
                ))
            };
        }
        if let Some(rest) = via.strip_prefix("docker-compose://") {
            return match rest.split_once('/') {
                Some((project, service)) if valid(project) && valid(service) => {
                    Ok(DockerTarget::Compose {
                        project: project.to_owned(),
                        service: service.to_owned(),
                    })
                }
                _ => Err(format!(
                    "via={via}: write via=docker-compose://PROJECT/SERVICE (the Compose project, e.g. the directory name, and the service's name)"
                )),
            };
        }
        Err(format!(
            "unsupported via={via}: write via=docker://CONTAINER or via=docker-compose://PROJECT/SERVICE"
        ))
    }

    /// Parses `via` for a URL whose host is `host`: the host must be the container itself
    /// (`localhost` or a loopback address), as `docker compose exec` would reach it. (A
    /// backend whose URLs can name a socket inside the container accepts that separately.)
    ///
    /// # Errors
    ///
    /// A message saying what to write instead.
    pub fn for_host(via: &str, host: &str) -> std::result::Result<Self, String> {
        let target = Self::parse(via)?;
        if matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
            Ok(target)
        } else {
            Err(format!(
                "with via={target} the host is the container itself: write localhost (and the \
                 port the server listens on inside the container) instead of {host:?}"
            ))
        }
    }

    /// Asks the Docker daemon where the container's server answers.
    ///
    /// Runs `docker inspect` (and `docker ps` for a Compose service) and waits for it: a short
    /// blocking call, made once when the source's settings are read.
    ///
    /// # Errors
    ///
    /// [`Error::SourceUnavailable`] naming the container and what to do when the `docker`
    /// command is missing, the daemon does not answer, or the container does not exist, is not
    /// running or has no address; its `source_name` is this target (callers that know the
    /// source's name put it there).
    pub fn resolve(&self) -> Result<DockerEndpoint> {
        let unavailable = |message: String| Error::SourceUnavailable {
            source_name: self.to_string(),
            message,
        };
        let ids = match self {
            DockerTarget::Container(name) => vec![name.clone()],
            DockerTarget::Compose { project, service } => {
                let out = docker(&compose_ps_args(project, service)).map_err(&unavailable)?;
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if ids.is_empty() {
                    return Err(unavailable(format!(
                        "no container of Compose service {service:?} in project {project:?} exists; \
                         start it (docker compose -p {project} up -d {service}) or check the names \
                         with `docker compose ls` and `docker compose -p {project} ps -a`"
                    )));
                }
                ids
            }
        };
        let out = docker(&inspect_args(&ids)).map_err(&unavailable)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(unavailable(if stderr.contains("No such") {
                format!(
                    "the Docker container {:?} does not exist ({stderr}); check its name with \
                     `docker ps -a` (for a Compose service write via=docker-compose://PROJECT/SERVICE)",
                    ids.join(" ")
                )
            } else {
                daemon_error(&stderr)
            }));
        }
        let containers: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
            unavailable(format!(
                "`docker inspect` printed something other than JSON: {e}"
            ))
        })?;
        pick(self, &containers).map_err(unavailable)
    }
}

impl fmt::Display for DockerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerTarget::Container(name) => write!(f, "docker://{name}"),
            DockerTarget::Compose { project, service } => {
                write!(f, "docker-compose://{project}/{service}")
            }
        }
    }
}

/// `docker ps` arguments listing the ids of a Compose service's containers, running or not.
pub fn compose_ps_args(project: &str, service: &str) -> Vec<String> {
    vec![
        "ps".into(),
        "--all".into(),
        "--no-trunc".into(),
        "--quiet".into(),
        "--filter".into(),
        format!("label={COMPOSE_PROJECT_LABEL}={project}"),
        "--filter".into(),
        format!("label={COMPOSE_SERVICE_LABEL}={service}"),
    ]
}

/// `docker inspect` arguments for containers (names or ids): their JSON descriptions.
pub fn inspect_args(ids: &[String]) -> Vec<String> {
    let mut args = vec!["inspect".into(), "--type".into(), "container".into()];
    args.extend(ids.iter().cloned());
    args
}

fn docker(args: &[String]) -> std::result::Result<Output, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run the docker command ({e}); via=docker needs the Docker CLI on PATH \
                 and a daemon it can reach"
            )
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `docker ps` fails only when the daemon does; `docker inspect` also for a missing name.
    if !out.status.success() && !stderr.contains("No such") {
        return Err(daemon_error(stderr.trim()));
    }
    Ok(out)
}

fn daemon_error(stderr: &str) -> String {
    format!(
        "the Docker daemon does not answer ({stderr}); is dockerd running, and can this user \
         reach it (DOCKER_HOST, `docker context`, membership of the docker group)?"
    )
}

/// Picks the one running container of `containers` (`docker inspect` output) and its address.
fn pick(
    target: &DockerTarget,
    containers: &[Value],
) -> std::result::Result<DockerEndpoint, String> {
    let name = |c: &Value| {
        c["Name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned()
    };
    let running: Vec<&Value> = containers
        .iter()
        .filter(|c| c["State"]["Running"].as_bool() == Some(true))
        .collect();
    let container = match running.as_slice() {
        [one] => *one,
        [] => {
            let states: Vec<String> = containers
                .iter()
                .map(|c| {
                    format!(
                        "{} is {}",
                        name(c),
                        c["State"]["Status"].as_str().unwrap_or("not running")
                    )
                })
                .collect();
            let start = match target {
                DockerTarget::Container(n) => format!("docker start {n}"),
                DockerTarget::Compose { project, service } => {
                    format!("docker compose -p {project} up -d {service}")
                }
            };
            return Err(format!(
                "the Docker container is not running ({}); start it ({start}) and try again",
                states.join(", ")
            ));
        }
        many => {
            let names: Vec<String> = many.iter().map(|c| name(c)).collect();
            return Err(format!(
                "{target} matches {} running containers ({}); name one with via=docker://CONTAINER",
                many.len(),
                names.join(", ")
            ));
        }
    };
    let container_name = name(container);
    let mode = container["HostConfig"]["NetworkMode"]
        .as_str()
        .unwrap_or_default();
    if mode == "host" {
        return Ok(DockerEndpoint {
            container: container_name,
            host: "127.0.0.1".into(),
            network: "host".into(),
        });
    }
    if let Some(other) = mode.strip_prefix("container:") {
        return Err(format!(
            "the Docker container {container_name:?} shares the network of container {other}; \
             name that one with via=docker://…"
        ));
    }
    // Several networks: the first by name that gives the container an address (a map in
    // Docker's JSON, so sort for a stable choice).
    let mut networks: Vec<(&String, &Value)> = container["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    networks.sort_by(|a, b| a.0.cmp(b.0));
    networks
        .into_iter()
        .find_map(|(network, n)| {
            ["IPAddress", "GlobalIPv6Address"]
                .iter()
                .filter_map(|k| n[*k].as_str())
                .find(|ip| !ip.is_empty())
                .map(|ip| DockerEndpoint {
                    container: container_name.clone(),
                    host: ip.to_owned(),
                    network: network.clone(),
                })
        })
        .ok_or_else(|| {
            format!(
                "the Docker container {container_name:?} has no IP address (network mode {mode:?}); \
                 attach it to a network (docker network connect NETWORK {container_name})"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, running: bool, mode: &str, networks: Value) -> Value {
        serde_json::json!({
            "Name": format!("/{name}"),
            "State": { "Running": running, "Status": if running { "running" } else { "exited" } },
            "HostConfig": { "NetworkMode": mode },
            "NetworkSettings": { "Networks": networks },
        })
    }

    #[test]
    fn via_values_parse_and_print_back() {
        for via in ["docker://pg", "docker-compose://shop/postgres"] {
            assert_eq!(DockerTarget::parse(via).expect(via).to_string(), via);
        }
        for bad in [
            "docker://",
            "docker://a b",
            "docker-compose://shop",
            "docker-compose://shop/",
            "ssh://x",
        ] {
            assert!(DockerTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_url_host_must_be_the_container_itself() {
        let err = DockerTarget::for_host("docker://db", "db.example").expect_err("remote host");
        assert!(err.contains("write localhost"), "{err}");
        for host in ["localhost", "127.0.0.1", "::1"] {
            assert!(
                DockerTarget::for_host("docker://db", host).is_ok(),
                "{host}"
            );
        }
        assert!(DockerTarget::is_docker_via("docker://db"));
        assert!(DockerTarget::is_docker_via("docker-compose://shop/db"));
        assert!(!DockerTarget::is_docker_via("ssh://deploy@bastion"));
    }

    #[test]
    fn the_docker_argv_holds_names_and_labels_only() {
        assert_eq!(
            inspect_args(&["pg".into()]),
            ["inspect", "--type", "container", "pg"]
        );
        let ps = compose_ps_args("shop", "postgres").join(" ");
        assert!(ps.contains("label=com.docker.compose.project=shop"), "{ps}");
        assert!(
            ps.contains("label=com.docker.compose.service=postgres"),
            "{ps}"
        );
    }

    #[test]
    fn the_address_is_the_first_network_with_one_and_the_host_network_is_loopback() {
        let t = DockerTarget::Container("pg".into());
        let nets = serde_json::json!({
            "zz_front": { "IPAddress": "172.20.0.3" },
            "a_none": { "IPAddress": "" },
            "b_back": { "IPAddress": "172.21.0.2" },
        });
        let e = pick(&t, &[container("pg", true, "shop_default", nets)]).expect("address");
        assert_eq!(
            (e.container.as_str(), e.host.as_str(), e.network.as_str()),
            ("pg", "172.21.0.2", "b_back")
        );
        let e = pick(&t, &[container("pg", true, "host", serde_json::json!({}))]).expect("host");
        assert_eq!(e.host, "127.0.0.1");
    }

    #[test]
    fn stopped_ambiguous_and_addressless_containers_say_what_to_do() {
        let t = DockerTarget::Compose {
            project: "shop".into(),
            service: "postgres".into(),
        };
        let nets = serde_json::json!({ "n": { "IPAddress": "10.0.0.2" } });
        let e = pick(
            &t,
            &[container("shop-postgres-1", false, "n", nets.clone())],
        )
        .expect_err("stopped");
        assert!(e.contains("shop-postgres-1 is exited"), "{e}");
        assert!(e.contains("docker compose -p shop up -d postgres"), "{e}");
        let two = [
            container("a", true, "n", nets.clone()),
            container("b", true, "n", nets),
        ];
        assert!(pick(&t, &two).expect_err("two").contains("a, b"));
        let e = pick(&t, &[container("c", true, "none", serde_json::json!({}))])
            .expect_err("no address");
        assert!(e.contains("no IP address"), "{e}");
    }
}
