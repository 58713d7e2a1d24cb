//! Running the dump tool through `backup_core::process`: the exit status, a signal, an empty
//! output and a missing `-- Dump completed` trailer all fail the read — so the pipeline never
//! commits a broken dump.

use std::io;

use backup_core::process::{Ending, spawn_checked_ending};
use tokio::io::AsyncRead;
use tokio::process::Command;

use crate::scan::has_trailer;

/// Spawns the dump tool `cmd` and returns its stdout as a reader that fails at its end unless
/// the tool exited with status 0, wrote something, and ended with the `-- Dump completed`
/// trailer. The process is killed if the reader is dropped early.
///
/// # Errors
///
/// When the process cannot be started.
pub fn spawn_dump(
    tool: &'static str,
    cmd: Command,
) -> io::Result<impl AsyncRead + Unpin + Send + 'static> {
    spawn_checked_ending(
        tool,
        cmd,
        Some(Ending {
            complete: has_trailer,
            missing: "the closing \"-- Dump completed\" line",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn run(script: &str) -> io::Result<Vec<u8>> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        let mut r = spawn_dump("tool", cmd)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn a_complete_dump_passes() {
        let out = run("printf 'data\\n-- Dump completed\\n'")
            .await
            .expect("ok");
        assert_eq!(out, b"data\n-- Dump completed\n");
    }

    #[tokio::test]
    async fn a_kill_a_failure_an_empty_output_and_no_trailer_are_errors() {
        let e = run("printf partial; kill -9 $$").await.expect_err("killed");
        assert!(e.to_string().contains("killed by signal 9"), "{e}");
        let e = run("echo 'Access denied' >&2; exit 2")
            .await
            .expect_err("failed");
        assert!(e.to_string().contains("exited with status 2"), "{e}");
        assert!(e.to_string().contains("Access denied"), "{e}");
        let e = run("true").await.expect_err("empty");
        assert!(e.to_string().contains("wrote nothing"), "{e}");
        let e = run("printf 'INSERT INTO t VALUES (1);\\n'")
            .await
            .expect_err("cut");
        assert!(e.to_string().contains("lacks the closing"), "{e}");
    }
}
