//! A reader that fails with `TimedOut` when the peer sends nothing for too long while we wait on it.
//! The clock restarts on every read that makes progress and when `arm` is called (before waiting for
//! the next request), so time spent computing a graph never counts against the client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct StallGuard<R> {
    inner: R,
    limit: Option<Duration>,
    /// Fires when the peer has been silent for `limit`; `None` when there is no limit.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<R> StallGuard<R> {
    pub fn new(inner: R, limit: Option<Duration>) -> Self {
        let deadline = limit.map(|l| Box::pin(tokio::time::sleep(l)));
        StallGuard {
            inner,
            limit,
            deadline,
        }
    }

    /// Restarts the clock: the peer has a full `limit` from now.
    pub fn arm(&mut self) {
        if let (Some(d), Some(l)) = (self.deadline.as_mut(), self.limit) {
            d.as_mut().reset(Instant::now() + l);
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.arm();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client sent nothing within the idle timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Tokio's paused clock: time moves only when every task waits, so the test cannot depend on the
    // machine's speed. 600 ms gaps pass a 1 s limit only because each byte restarts the clock.
    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out_and_progress_restarts_the_clock() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = StallGuard::new(rx, Some(Duration::from_secs(1)));
        let reader = tokio::spawn(async move {
            let a = r.read_u8().await.unwrap();
            let b = r.read_u8().await.unwrap();
            (a, b, r.read_u8().await.map_err(|e| e.kind()))
        });
        for b in [1u8, 2] {
            tokio::time::sleep(Duration::from_millis(600)).await;
            tx.write_all(&[b]).await.unwrap();
        }
        let got = reader.await.unwrap();
        assert_eq!(got, (1, 2, Err(io::ErrorKind::TimedOut)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_waits() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = StallGuard::new(rx, None);
        let reader = tokio::spawn(async move { r.read_u8().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.write_all(&[7]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 7);
    }
}
