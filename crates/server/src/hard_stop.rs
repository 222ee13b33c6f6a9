//! The hard deadline of a shutdown: a listener whose connections can all be cut at once.
//!
//! A graceful stop waits for the requests in progress. A client that sends half a request and
//! stalls would make it wait for ever (the process was still running 40 s after SIGTERM with
//! `shutdown_timeout = "5s"`), so once `server.shutdown_timeout` has passed the runtime cancels
//! the cut token: every read and write on every connection then fails, hyper ends the
//! connection, and the handler of its request is dropped with it. Nothing is lost by that: a
//! request is acknowledged only by the 200 written after its commit, so a request that is cut
//! was never acknowledged and its sender retries it.
//!
//! **Rule of this room:** it imports nothing else from the crate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A TCP listener whose accepted connections fail as soon as `cut` is cancelled.
pub(crate) struct CuttableListener {
    inner: TcpListener,
    cut: CancellationToken,
}

impl CuttableListener {
    /// Wraps `inner`; cancelling `cut` ends every connection it accepted.
    pub(crate) fn new(inner: TcpListener, cut: CancellationToken) -> Self {
        CuttableListener { inner, cut }
    }
}

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        (CuttableStream::new(stream, self.cut.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that reports an error on every read and write once it is cut. The wait for
/// the cut is polled with the socket, so a connection parked on a stalled client wakes up.
pub(crate) struct CuttableStream {
    inner: TcpStream,
    token: CancellationToken,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl CuttableStream {
    fn new(inner: TcpStream, token: CancellationToken) -> Self {
        CuttableStream {
            cut: Box::pin(token.clone().cancelled_owned()),
            inner,
            token,
        }
    }

    /// One non-blocking write attempt on the socket (for a short answer before closing).
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.try_write(buf)
    }

    /// An error once the connection has been cut (and registers the task to be woken by the
    /// cut otherwise).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        // The token is read first so that the finished wait is never polled again.
        if self.token.is_cancelled() || self.cut.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut: server.shutdown_timeout passed",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection parked on a client that sends nothing wakes up with an error when cut.
    #[tokio::test]
    async fn a_stalled_read_fails_when_the_connection_is_cut() {
        let cut = CancellationToken::new();
        let mut listener =
            CuttableListener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), cut.clone());
        let addr = Listener::local_addr(&listener).unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut conn, _) = Listener::accept(&mut listener).await;
        client.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"POST / HTTP/1.1\r\n");

        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            conn.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "the client sent nothing more");
        cut.cancel();
        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn writes_fail_once_cut() {
        let cut = CancellationToken::new();
        let mut listener =
            CuttableListener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), cut.clone());
        let addr = Listener::local_addr(&listener).unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut conn, _) = Listener::accept(&mut listener).await;
        conn.write_all(b"before").await.unwrap();
        cut.cancel();
        let err = conn.write_all(b"after").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
