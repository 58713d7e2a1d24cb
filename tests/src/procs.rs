//! Processes a test starts in a process group of its own, so that everything they start in turn
//! (a deploy command, its children) can be ended by the group's id, never by a name that could
//! match unrelated processes of the machine.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};

/// A process group started by the test. Dropping it sends SIGKILL to the whole group, so a test
/// that fails half-way leaves none of its processes behind.
#[derive(Debug)]
pub struct ProcessGroup {
    id: u32,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    ///
    /// # Panics
    /// When the command cannot be started.
    pub fn spawn(cmd: &mut Command) -> (Child, ProcessGroup) {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let group = ProcessGroup { id: child.id() };
        (child, group)
    }

    /// The group's id (the pid of its leader).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends SIGKILL to every process of the group (`kill -KILL -- -ID`).
    pub fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.id)])
            .stderr(Stdio::null())
            .status();
    }

    /// The live processes of the group (zombies, which are dead, are left out), from `/proc`.
    #[must_use]
    pub fn members(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let group = self.id.to_string();
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // After the parenthesised command name: state, ppid, pgrp, ...
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let fields: Vec<String> = stat
                            .rsplit_once(')')?
                            .1
                            .split_whitespace()
                            .take(3)
                            .map(str::to_owned)
                            .collect();
                        Some(fields.first()? != "Z" && fields.get(2)? == &group)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process that outlives nothing: once this test process is gone (killed, or exited without
/// dropping a server), it kills `server` (SIGKILL) and removes `dir`. In its own process group,
/// so a Ctrl-C on the test run does not end it first; kill it when the server is stopped.
#[must_use]
pub fn watchdog(name: &str, server: u32, dir: &std::path::Path) -> Option<Child> {
    let script = r#"while [ -d "/proc/$1" ]; do sleep 1; done
kill -9 "$2" 2>/dev/null
sleep 1
rm -rf "$3""#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(name)
        .arg(std::process::id().to_string())
        .arg(server.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}
