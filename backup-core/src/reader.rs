//! [`CheckedReader`]: an `AsyncRead` that runs a final check when its inner reader ends.
//!
//! A dump tool's stdout reaching EOF does not mean the dump succeeded: the tool may have been
//! killed, or written nothing. Wrapping stdout in a `CheckedReader` whose check waits for the
//! exit status turns such a failure into a read error *before* the pipeline commits the artifact.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

type Check = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

enum State<F> {
    Reading(Option<F>),
    Checking(Check),
    Done,
}

/// Reads `inner`; at its end, calls `check(bytes_read)` and reports its error, if any, as a read error.
pub struct CheckedReader<R, F> {
    inner: R,
    read: u64,
    state: State<F>,
}

impl<R, F, Fut> CheckedReader<R, F>
where
    F: FnOnce(u64) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    /// Wraps `inner`; `check` receives the number of bytes read.
    pub fn new(inner: R, check: F) -> Self {
        CheckedReader {
            inner,
            read: 0,
            state: State::Reading(Some(check)),
        }
    }
}

impl<R, F, Fut> AsyncRead for CheckedReader<R, F>
where
    R: AsyncRead + Unpin,
    F: FnOnce(u64) -> Fut + Unpin,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Reading(check) => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    let n = buf.filled().len() - before;
                    if n > 0 {
                        this.read += n as u64;
                        return Poll::Ready(Ok(()));
                    }
                    let Some(check) = check.take() else {
                        return Poll::Ready(Ok(()));
                    };
                    this.state = State::Checking(Box::pin(check(this.read)));
                }
                State::Checking(fut) => {
                    let result = ready!(fut.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(result);
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn passes_data_through_and_runs_the_check_once_at_the_end() {
        let mut r = CheckedReader::new(&b"hello"[..], |n| async move {
            assert_eq!(n, 5);
            Ok(())
        });
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("reads");
        assert_eq!(out, b"hello");
    }

    #[tokio::test]
    async fn a_failed_check_is_a_read_error() {
        let mut r = CheckedReader::new(&b""[..], |n| async move {
            if n == 0 {
                Err(io::Error::other("empty output"))
            } else {
                Ok(())
            }
        });
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).await.expect_err("fails");
        assert_eq!(err.to_string(), "empty output");
    }
}
