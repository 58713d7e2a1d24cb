//! Running the dump tool: stdout is the artifact, stderr is drained concurrently (a full pipe
//! would block the tool) with its tail kept for the error message, and at the end of stdout the
//! exit status, a signal, an empty output and a missing `-- Dump completed` trailer all fail the
//! read — so the pipeline never commits a broken dump.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use backup_core::reader::CheckedReader;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::process::{ChildStderr, Command};
use tokio::task::JoinHandle;

use crate::scan::{TRAILER, has_trailer};

/// Lines of stderr kept for the error message.
const STDERR_TAIL_LINES: usize = 12;
/// Bytes of stdout kept to look for the trailer.
const STDOUT_TAIL_BYTES: usize = 512;

/// Spawns the dump tool `cmd` and returns its stdout as a reader that fails at its end unless
/// the tool exited with status 0, wrote something, and ended with the `-- Dump completed`
/// trailer. The process is killed if the reader is dropped early.
///
/// # Errors
///
/// When the process cannot be started.
pub fn spawn_dump(
    tool: &'static str,
    mut cmd: Command,
) -> io::Result<impl AsyncRead + Unpin + Send + 'static> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let stderr_tail = drain_stderr(stderr);
    let tail = Arc::new(Mutex::new(Vec::new()));
    let stdout = TailKeeper {
        inner: stdout,
        tail: tail.clone(),
    };
    Ok(CheckedReader::new(stdout, move |bytes| async move {
        let status = child.wait().await?;
        let said = stderr_tail.await.unwrap_or_default();
        check_exit(tool, status, bytes, &said)?;
        let tail = tail.lock().map(|t| t.clone()).unwrap_or_default();
        if !has_trailer(&tail) {
            return Err(io::Error::other(format!(
                "{tool} exited successfully but its output lacks the closing {TRAILER:?} line: the dump is incomplete{}",
                said_suffix(&said)
            )));
        }
        Ok(())
    }))
}

/// Keeps the last bytes that passed through.
struct TailKeeper<R> {
    inner: R,
    tail: Arc<Mutex<Vec<u8>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for TailKeeper<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && let Ok(mut tail) = this.tail.lock()
        {
            tail.extend_from_slice(&buf.filled()[before..]);
            if tail.len() > STDOUT_TAIL_BYTES {
                let cut = tail.len() - STDOUT_TAIL_BYTES;
                tail.drain(..cut);
            }
        }
        r
    }
}

fn drain_stderr(stderr: ChildStderr) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tail: VecDeque<String> = VecDeque::with_capacity(STDERR_TAIL_LINES);
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                continue;
            }
            tracing::debug!(target: "mysql_tool", "{line}");
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.chars().take(400).collect());
        }
        tail.into_iter().collect::<Vec<_>>().join("\n")
    })
}

fn said_suffix(stderr_tail: &str) -> String {
    if stderr_tail.is_empty() {
        String::new()
    } else {
        format!("; it said:\n{stderr_tail}")
    }
}

/// Turns an exit status into an error that names what happened.
///
/// # Errors
///
/// When the tool was killed, failed, or wrote nothing.
pub fn check_exit(tool: &str, status: ExitStatus, bytes: u64, stderr_tail: &str) -> io::Result<()> {
    let said = said_suffix(stderr_tail);
    if let Some(sig) = status.signal() {
        return Err(io::Error::other(format!(
            "{tool} was killed by signal {sig} after writing {bytes} bytes{said}"
        )));
    }
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        return Err(io::Error::other(format!(
            "{tool} exited with status {code} after writing {bytes} bytes{said}"
        )));
    }
    if bytes == 0 {
        return Err(io::Error::other(format!(
            "{tool} exited successfully but wrote nothing{said}"
        )));
    }
    Ok(())
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
