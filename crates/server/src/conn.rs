//! Connection hygiene: the HTTP server loop, with a cap on the connections open at once
//! (overall and per client IP address), a deadline for request headers, and an idle timeout
//! on every connection.
//!
//! A client that opens sockets and sends nothing, sends half its headers, or stalls in the
//! middle of a body used to hold its socket for ever; about 22,000 of them exhausted the file
//! descriptors and every tenant's webhooks timed out. Now:
//! - a connection over `server.max_connections` or `server.max_connections_per_ip` is
//!   answered 503 with `Retry-After` as soon as it is accepted, and closed;
//! - headers must be complete within `server.header_timeout` (hyper's header read timeout,
//!   which also runs while a kept-alive connection waits for its next request);
//! - a connection on which nothing arrives for `server.idle_timeout` while the server waits
//!   to read is closed ([`GuardedStream`]), except while a request received in full is being
//!   answered ([`Answering`]);
//! - the body's own deadline (`server.body_timeout`) and the memory budget of bodies in
//!   flight are the ingest door's (they need the request).
//!
//! **Rule of this room:** it imports only `hard_stop` and `metrics` from the crate.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::serve::Listener;
use axum::Router;
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use intake_core::config::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::hard_stop::{CuttableListener, CuttableStream};
use crate::metrics::REQUESTS;

/// The limits of [`serve`], from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Limits {
    pub fn of(s: &ServerConfig) -> Self {
        Limits {
            header_timeout: s.header_timeout.0,
            idle_timeout: s.idle_timeout.0,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `server.max_connections` are open.
    Total,
    /// `server.max_connections_per_ip` are open from this address.
    PerIp,
}

impl Refusal {
    fn describe(self) -> &'static str {
        match self {
            Refusal::Total => "server.max_connections",
            Refusal::PerIp => "server.max_connections_per_ip",
        }
    }
}

/// The connections open, overall and per address: the admission decision.
pub(crate) struct Gate {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Gate {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Gate {
            max_total,
            max_per_ip,
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits one more connection from `ip`, or says which cap it is over. The ticket
    /// gives the place back when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(Ticket {
            gate: self.clone(),
            ip,
        })
    }

    /// The connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                // An address with no connection keeps no entry: the map is bounded by the
                // connections open, not by every address ever seen.
                open.per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection's place; dropping it frees the place.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.release(self.ip);
    }
}

/// An admitted connection that fails its read with `TimedOut` when nothing has been received
/// or sent for `idle` while the server waits to read. It holds its [`Ticket`].
pub(crate) struct GuardedStream {
    inner: CuttableStream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Requests received in full and not yet answered: while one is, the connection is not
    /// idle (hyper reads during it only to notice the client leaving).
    answering: Arc<AtomicUsize>,
    _ticket: Ticket,
}

impl GuardedStream {
    fn new(inner: CuttableStream, idle: Duration, ticket: Ticket) -> Self {
        GuardedStream {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            answering: Arc::new(AtomicUsize::new(0)),
            _ticket: ticket,
        }
    }

    fn progress(&mut self) {
        let next = Instant::now() + self.idle;
        self.timer.as_mut().reset(next);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.answering.load(Ordering::Relaxed) > 0 {
                    this.progress();
                    return Poll::Pending;
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing received for server.idle_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.progress();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.progress();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Marks a request as being answered from the moment its body has been received in full until
/// its answer is ready: the idle timeout does not run meanwhile (a slow commit is not an idle
/// client), while a body that stalls still counts as idle.
struct Answering {
    count: Arc<AtomicUsize>,
    marked: AtomicBool,
}

impl Answering {
    /// The request with its body watched for its end; the returned handle unmarks when
    /// dropped (keep it until the answer is ready).
    fn watch(count: &Arc<AtomicUsize>, req: Request<Incoming>) -> (Arc<Answering>, Request<Body>) {
        let answering = Arc::new(Answering {
            count: count.clone(),
            marked: AtomicBool::new(false),
        });
        if req.body().is_end_stream() {
            answering.mark();
        }
        let watched = answering.clone();
        let req = req.map(|inner| {
            Body::new(Watched {
                inner,
                answering: watched,
            })
        });
        (answering, req)
    }

    fn mark(&self) {
        if !self.marked.swap(true, Ordering::Relaxed) {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if *self.marked.get_mut() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A request body that marks its request as being answered once it has been read in full.
struct Watched {
    inner: Incoming,
    answering: Arc<Answering>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.answering.mark();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The most a connection's read buffer grows to (hyper's default is about 400 KiB, which a
/// client pushing a large body fills: 1,500 such connections held 600 MB of buffers beyond
/// the body budget). It also bounds the request headers: 16 KiB, ample for webhooks.
const READ_BUFFER: usize = 16 * 1024;

/// What a connection over a cap is sent before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 122\r\n\r\n\
{\"type\":\"urn:intake:problem:overloaded\",\"title\":\"Overloaded\",\"status\":503,\"detail\":\"too many connections\",\"retry_after\":1}";

/// Serves `app` on `listener` until `stop` is cancelled, then lets the connections finish
/// their requests in progress (the caller cuts them at its deadline).
pub(crate) async fn serve(
    mut listener: CuttableListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) -> io::Result<()> {
    let gate = Gate::new(limits.max_connections, limits.max_connections_per_ip);
    let connections = TaskTracker::new();
    let refused = RefusalLog::default();
    loop {
        let (stream, addr) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let ticket = match gate.admit(addr.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                refuse(stream, refusal, &refused);
                continue;
            }
        };
        let stream = GuardedStream::new(stream, limits.idle_timeout, ticket);
        connections.spawn(connection(
            stream,
            app.clone(),
            limits.header_timeout,
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    refused.finish();
    Ok(())
}

/// Serves one connection: HTTP/1.1 with keep-alive and the header deadline; on `stop`, it
/// finishes the request in progress and closes.
async fn connection(
    stream: GuardedStream,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(READ_BUFFER)
        .keep_alive(true);
    let answering = stream.answering.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (answer, req) = Answering::watch(&answering, req);
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(answer);
            response
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts and clients going away are the normal end of a hostile or broken
        // connection; they are not worth a line each.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers a connection over a cap with 503 and closes it, without waiting for it: the write
/// is a single non-blocking attempt (a fresh socket's send buffer takes it whole), so a flood
/// of refused connections holds no descriptor beyond its accept.
fn refuse(stream: CuttableStream, refusal: Refusal, log: &RefusalLog) {
    let _ = stream.try_write(REFUSED);
    drop(stream);
    metrics::counter!(REQUESTS, "outcome" => "shed", "tenant" => "", "source" => "").increment(1);
    log.hit(refusal);
}

/// The log of refused connections: the first is written, then at most one line a
/// [`REFUSAL_SUMMARY`] with how many more there were (a flood must not fill the disk).
#[derive(Default)]
struct RefusalLog {
    state: Mutex<RefusalState>,
}

#[derive(Default)]
struct RefusalState {
    since: Option<Instant>,
    count: u64,
}

/// How often refused connections are summarised.
const REFUSAL_SUMMARY: Duration = Duration::from_secs(10);

impl RefusalLog {
    fn hit(&self, refusal: Refusal) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match s.since {
            None => {
                s.since = Some(now);
                tracing::warn!(
                    cap = refusal.describe(),
                    "refused a connection over {}: answered 503",
                    refusal.describe()
                );
            }
            Some(since) => {
                s.count += 1;
                if now.duration_since(since) >= REFUSAL_SUMMARY {
                    tracing::warn!(
                        count = s.count,
                        summary = true,
                        "refused {} connections in the last {}s: over the connection caps (503)",
                        s.count,
                        now.duration_since(since).as_secs()
                    );
                    s.since = Some(now);
                    s.count = 0;
                }
            }
        }
    }

    fn finish(&self) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.count > 0 {
            tracing::warn!(
                count = s.count,
                summary = true,
                "refused {} more connections over the connection caps (503)",
                s.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    /// The admission decision, step by step: (address, expected), with the tickets kept.
    #[test]
    fn admission_table() {
        let gate = Gate::new(3, 2);
        let mut held = Vec::new();
        let steps = [
            (ip(1), Ok(())),
            (ip(1), Ok(())),
            (ip(1), Err(Refusal::PerIp)),
            (ip(2), Ok(())),
            (ip(3), Err(Refusal::Total)),
            (ip(1), Err(Refusal::Total)),
        ];
        for (i, (addr, expected)) in steps.into_iter().enumerate() {
            let got = gate.admit(addr).map(|t| held.push(t));
            assert_eq!(got, expected, "step {i}");
        }
        assert_eq!(gate.open(), 3);
        drop(held.remove(0));
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(ip(3)).is_ok(), "a place freed is given again");
        held.clear();
        assert_eq!(gate.open(), 0);
        assert!(
            gate.open.lock().unwrap().per_ip.is_empty(),
            "no entry is kept for an address with no connection"
        );
    }

    /// Through the real loop on loopback: an answer slower than the idle timeout is still
    /// given (the request is being answered, the client is not idle), while a body that
    /// stalls is cut by it.
    #[tokio::test]
    async fn a_slow_answer_is_not_idle_but_a_stalled_body_is() {
        use axum::routing::post;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/slow",
            post(|body: Bytes| async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                body.len().to_string()
            }),
        );
        let limits = Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(200),
            max_connections: 10,
            max_connections_per_ip: 10,
        };
        let stop = CancellationToken::new();
        let listener = CuttableListener::new(listener, CancellationToken::new());
        tokio::spawn(serve(listener, app, limits, stop.clone()));

        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(
            b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nab",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let _ = slow.read_to_end(&mut got).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
        assert!(got.ends_with("\r\n\r\n2"), "{got:?}");

        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
            .await
            .unwrap();
        let mut got = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut got)).await;
        assert!(closed.is_ok(), "a stalled body is cut by the idle timeout");
        assert!(
            !got.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        stop.cancel();
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("retry-after: 1"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 503);
    }
}
