//! Running a dump tool whose stdout is the artifact: stderr is drained concurrently (a full
//! pipe would block the tool) with its tail kept for the error message, and at the end of
//! stdout the exit status, a signal, an empty output and (when asked) a missing closing line
//! fail the read — so the pipeline never commits a broken dump. Shared by every backend that
//! runs a dump tool.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::reader::CheckedReader;

/// Lines of stderr kept for the error message.
const STDERR_TAIL_LINES: usize = 12;
/// Longest stderr line kept.
const STDERR_LINE_MAX: usize = 400;

/// How a complete output ends, for tools that close their output with a known line
/// (`-- Dump completed` of mysqldump).
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// Whether these last bytes of the output (up to [`ENDING_TAIL_BYTES`]) close it.
    pub complete: fn(&[u8]) -> bool,
    /// What is missing otherwise, e.g. `the closing "-- Dump completed" line`.
    pub missing: &'static str,
}

/// Bytes of stdout kept to check an [`Ending`].
pub const ENDING_TAIL_BYTES: usize = 512;

/// Spawns `cmd` with piped stdout/stderr and returns its stdout as a reader that fails, at its
/// end, when the tool exited unsuccessfully, was killed, or wrote nothing.
///
/// The process is killed if the reader is dropped before its end (e.g. the store failed).
///
/// # Errors
///
/// When the process cannot be started.
pub fn spawn_checked(
    tool: &'static str,
    cmd: Command,
) -> io::Result<impl AsyncRead + Unpin + Send + 'static> {
    spawn_checked_ending(tool, cmd, None)
}

/// [`spawn_checked`], and at the end the output must close as `ending` says (else the dump
/// was cut short: an error naming what is missing).
///
/// # Errors
///
/// When the process cannot be started.
pub fn spawn_checked_ending(
    tool: &'static str,
    mut cmd: Command,
    ending: Option<Ending>,
) -> io::Result<impl AsyncRead + Unpin + Send + 'static> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout: ChildStdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let said = drain_stderr(tool, stderr);
    let last = Arc::new(Mutex::new(Vec::new()));
    let stdout = TailKeeper {
        inner: stdout,
        tail: last.clone(),
        keep: if ending.is_some() {
            ENDING_TAIL_BYTES
        } else {
            0
        },
    };
    Ok(CheckedReader::new(stdout, move |bytes| async move {
        let status = child.wait().await?;
        let said = said.await.unwrap_or_default();
        check_exit(tool, status, bytes, &said)?;
        match ending {
            Some(e) if !(e.complete)(&last.lock().map(|t| t.clone()).unwrap_or_default()) => {
                Err(io::Error::other(format!(
                    "{tool} exited successfully but its output lacks {}: the dump is incomplete{}",
                    e.missing,
                    said_suffix(&said)
                )))
            }
            _ => Ok(()),
        }
    }))
}

/// Spawns `cmd`, a tool that writes its output to files rather than stdout (`pg_dump
/// --format=directory`): the returned future ends when it exits, with an error naming a
/// failure status or a signal and the tail of what it said. The process is killed if the
/// future is dropped first.
///
/// # Errors
///
/// When the process cannot be started.
pub fn spawn_to_files(
    tool: &'static str,
    mut cmd: Command,
) -> io::Result<impl std::future::Future<Output = io::Result<()>> + Send + 'static> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let said = drain_stderr(tool, stderr);
    Ok(async move {
        let status = child.wait().await?;
        let said = said.await.unwrap_or_default();
        match exit_problem(tool, status) {
            Some(what) => Err(io::Error::other(format!("{what}{}", said_suffix(&said)))),
            None => Ok(()),
        }
    })
}

/// Passes reads through, keeping the last `keep` bytes.
struct TailKeeper<R> {
    inner: R,
    tail: Arc<Mutex<Vec<u8>>>,
    keep: usize,
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
        if this.keep > 0
            && let Poll::Ready(Ok(())) = r
            && let Ok(mut tail) = this.tail.lock()
        {
            tail.extend_from_slice(&buf.filled()[before..]);
            if tail.len() > this.keep {
                let cut = tail.len() - this.keep;
                tail.drain(..cut);
            }
        }
        r
    }
}

/// `; it said:\n<stderr tail>`, or nothing.
fn said_suffix(stderr_tail: &str) -> String {
    if stderr_tail.is_empty() {
        String::new()
    } else {
        format!("; it said:\n{stderr_tail}")
    }
}

/// Reads stderr to its end, logging each line at debug level and keeping the last lines.
fn drain_stderr(tool: &'static str, stderr: ChildStderr) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr);
        let mut tail: VecDeque<String> = VecDeque::with_capacity(STDERR_TAIL_LINES);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let mut text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if text.is_empty() {
                        continue;
                    }
                    tracing::debug!("{tool}: {text}");
                    if text.len() > STDERR_LINE_MAX {
                        let mut cut = STDERR_LINE_MAX;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        text.push('…');
                    }
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            }
        }
        tail.into_iter().collect::<Vec<_>>().join("\n")
    })
}

/// What is wrong with an exit status (a signal, a failure status); `None` for a success.
fn exit_problem(tool: &str, status: ExitStatus) -> Option<String> {
    if let Some(sig) = status.signal() {
        return Some(format!(
            "{tool} was killed by signal {sig}{}",
            signal_name(sig)
        ));
    }
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        return Some(format!("{tool} exited with status {code}"));
    }
    None
}

/// Turns an exit status into an error message that names what happened.
pub fn check_exit(tool: &str, status: ExitStatus, bytes: u64, stderr_tail: &str) -> io::Result<()> {
    let said = said_suffix(stderr_tail);
    if let Some(what) = exit_problem(tool, status) {
        return Err(io::Error::other(format!(
            "{what} after writing {bytes} bytes{said}"
        )));
    }
    if bytes == 0 {
        return Err(io::Error::other(format!(
            "{tool} exited successfully but wrote nothing{said}"
        )));
    }
    Ok(())
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn run(script: &str) -> io::Result<Vec<u8>> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        let mut r = spawn_checked("tool", cmd)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn success_passes_the_bytes() {
        assert_eq!(run("printf hello").await.expect("ok"), b"hello");
    }

    #[tokio::test]
    async fn a_kill_a_failure_and_an_empty_output_are_errors() {
        let e = run("printf partial; echo 'boom' >&2; kill -9 $$")
            .await
            .expect_err("killed");
        assert!(
            e.to_string()
                .contains("killed by signal 9 (SIGKILL) after writing 7 bytes"),
            "{e}"
        );
        assert!(e.to_string().contains("boom"), "{e}");
        let e = run("echo 'FATAL: nope' >&2; exit 1")
            .await
            .expect_err("failed");
        assert!(e.to_string().contains("exited with status 1"), "{e}");
        assert!(e.to_string().contains("FATAL: nope"), "{e}");
        let e = run("true").await.expect_err("empty");
        assert!(e.to_string().contains("wrote nothing"), "{e}");
    }

    #[tokio::test]
    async fn a_chatty_stderr_does_not_block_the_tool() {
        let out = run("i=0; while [ $i -lt 3000 ]; do echo 'line of noise on stderr' >&2; i=$((i+1)); done; printf done")
            .await
            .expect("ok");
        assert_eq!(out, b"done");
    }
}
