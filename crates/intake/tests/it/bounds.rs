//! Bounded memory towards hostile handlers: a destination that answers with a body that never
//! ends is read up to a small cap, then its connection is dropped; the status alone decides
//! the attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_testkit::{kustomer, TestServer, SOURCE_SECRET};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::{wait_delivery, PATIENCE};

/// No jitter; a timeout far longer than the test, so only the read cap can end an attempt.
const RETRY: &str = r#"max_attempts = 3
retry = { initial = "10s", max = "1h", multiplier = 2.0, jitter = 0.0 }
timeout = "60s""#;

/// What the endless destination writes at most on one connection before giving up: far more
/// than intake may read, so a client that reads it all is caught.
const WRITE_LIMIT: u64 = 200 * 1024 * 1024;

/// How one connection to the endless destination ended.
#[derive(Debug, Clone)]
struct Exchange {
    /// `webhook-id` of the request.
    id: String,
    /// Body bytes written before the connection ended.
    written: u64,
    /// Whether the client closed the connection (rather than the destination giving up).
    closed_by_client: bool,
}

/// A destination on a raw socket that reads each request, then answers `status` with a
/// chunked body that never ends: it writes until the client goes away or [`WRITE_LIMIT`].
struct EndlessDestination {
    url: String,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    ended: Arc<Notify>,
}

impl EndlessDestination {
    async fn start(status: &'static str) -> EndlessDestination {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Notify::new());
        let (log, done) = (exchanges.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (log, done) = (log.clone(), done.clone());
                tokio::spawn(async move {
                    if let Some(exchange) = answer_endlessly(socket, status).await {
                        log.lock().unwrap().push(exchange);
                        done.notify_waiters();
                    }
                });
            }
        });
        EndlessDestination {
            url,
            exchanges,
            ended,
        }
    }

    /// Waits until `n` exchanges have ended and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Exchange> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.ended.notified();
            let got = self.exchanges.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("only {} exchanges ended: {got:?}", got.len());
            }
        }
    }
}

async fn answer_endlessly(mut socket: TcpStream, status: &str) -> Option<Exchange> {
    // The request: headers, then as many body bytes as its content-length says.
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while request.len() < head_end + length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let id = header("webhook-id");

    let response_head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    if socket.write_all(response_head.as_bytes()).await.is_err() {
        return None;
    }
    let payload = vec![b'x'; 16 * 1024];
    let chunk = [
        format!("{:x}\r\n", payload.len()).into_bytes(),
        payload,
        b"\r\n".to_vec(),
    ]
    .concat();
    let mut written = 0u64;
    while written < WRITE_LIMIT {
        if socket.write_all(&chunk).await.is_err() {
            return Some(Exchange {
                id,
                written,
                closed_by_client: true,
            });
        }
        written += 16 * 1024;
    }
    Some(Exchange {
        id,
        written,
        closed_by_client: false,
    })
}

async fn send(server: &TestServer, msg: &str) -> String {
    let body = kustomer::message_create(msg, "email");
    let resp = server
        .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Far less than the body on offer, with room for what the kernel buffers on loopback.
fn assert_cut_short(e: &Exchange) {
    assert!(
        e.closed_by_client,
        "intake must drop the connection, not read the endless body to its end: {e:?}"
    );
    assert!(
        e.written < 32 * 1024 * 1024,
        "intake read far more than it keeps: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_body_is_cut_off_and_the_attempt_failed_with_its_status() {
    let destination = EndlessDestination::start("500 Internal Server Error").await;
    let server = TestServer::start(&destination.url, RETRY).await.unwrap();
    let id = send(&server, "msg-endless-500").await;

    let event = wait_delivery(&server, &id, "retrying", 1).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["last_status"], 500);
    let error = delivery["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("HTTP 500: xxxx"),
        "the start of the body is kept: {error}"
    );
    assert!(
        error.len() <= "HTTP 500: ".len() + 512,
        "at most 512 bytes of the body are kept, got {}",
        error.len()
    );
    let first = destination.wait_for(1).await;
    assert_eq!(first[0].id, id);
    assert_cut_short(&first[0]);
    eprintln!(
        "the destination wrote {} bytes before intake closed the connection",
        first[0].written
    );

    // Retried on schedule, and cut short again.
    server.clock.advance(Duration::from_secs(10));
    let event = wait_delivery(&server, &id, "retrying", 2).await;
    assert_eq!(event["deliveries"][0]["last_status"], 500);
    let both = destination.wait_for(2).await;
    assert_cut_short(&both[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_with_an_endless_body_is_delivered_without_reading_it() {
    let destination = EndlessDestination::start("200 OK").await;
    let server = TestServer::start(&destination.url, RETRY).await.unwrap();
    let id = send(&server, "msg-endless-200").await;

    let event = wait_delivery(&server, &id, "delivered", 1).await;
    assert_eq!(event["deliveries"][0]["last_status"], 200);
    let exchanges = destination.wait_for(1).await;
    assert_cut_short(&exchanges[0]);
}
