//! Connection hygiene against slow and hostile clients, through the real HTTP stack: sockets
//! that send half their headers, stall in their body, or send nothing are closed by the
//! server after the configured timeouts; connections over the caps get 503 with
//! `Retry-After`; bodies in flight over the budget get 503; and meanwhile signed webhooks
//! from another client keep being acknowledged, none of them lost.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use intake_testkit::{config_toml, kustomer, CaptureHandler, TestServer, ADMIN_TOKEN};
use intake_testkit::{DESTINATION_SECRET, SOURCE_SECRET};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::PATIENCE;

/// Short timeouts and small caps, so that the test sees them act.
fn hygiene(extra: &str) -> String {
    format!(
        "shutdown_timeout = \"2s\"\nheader_timeout = \"2s\"\nbody_timeout = \"3s\"\n\
         idle_timeout = \"2s\"\n{extra}"
    )
}

async fn start(server_keys: &str) -> (TestServer, CaptureHandler) {
    let handler = CaptureHandler::start(DESTINATION_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_toml(dir.path(), &handler.url(), "").replacen(
        "shutdown_timeout = \"2s\"\n",
        &hygiene(server_keys),
        1,
    );
    let server = TestServer::start_with(dir, &text).await.unwrap();
    (server, handler)
}

/// A connection to `to` from the loopback address `from` (127.0.0.x: Linux routes all of
/// 127/8 to lo), so attackers and the honest client are different client addresses.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn head(content_length: usize) -> String {
    format!(
        "POST /ingest/maelys-kustomer HTTP/1.1\r\nhost: intake\r\ncontent-type: application/json\r\n\
         x-kustomer-webhook-signature: 00\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

/// Reads until the server closes the connection (or [`PATIENCE`], a hang guard); returns what
/// was received, or `None` if the server never closed it.
async fn until_closed(mut s: TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

/// Sends signed webhooks one after another until `stop`; returns (sent, acknowledged ids).
async fn honest_traffic(
    url: String,
    prefix: &'static str,
    stop: tokio_util::sync::CancellationToken,
) -> (usize, Vec<String>) {
    let http = reqwest::Client::new();
    let (mut sent, mut acked) = (0, Vec::new());
    while !stop.is_cancelled() {
        let body = kustomer::message_create(&format!("{prefix}-{sent}"), "email");
        sent += 1;
        let resp = http
            .post(format!("{url}/ingest/maelys-kustomer"))
            .header("content-type", "application/json")
            .header("x-kustomer-webhook-event", "kustomer.message.create")
            .header(
                "x-kustomer-webhook-signature",
                kustomer::sign(SOURCE_SECRET, &body),
            )
            .body(body)
            .timeout(PATIENCE)
            .send()
            .await;
        if let Ok(resp) = resp {
            if resp.status() == 200 {
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                if let Some(id) = v["id"].as_str() {
                    acked.push(id.to_string());
                }
            }
        }
    }
    (sent, acked)
}

/// The attack: partial headers, stalled bodies, idle sockets and trickling clients from one
/// address, then more connections than its cap; signed traffic from another address keeps
/// being acknowledged, every stalled connection is closed by the server, and every
/// acknowledged event is stored and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_attack_does_not_stop_signed_traffic() {
    let (server, handler) = start("max_connections = 400\nmax_connections_per_ip = 250\n").await;
    let addr = server.server.addr;
    let stop = tokio_util::sync::CancellationToken::new();
    let honest = tokio::spawn(honest_traffic(server.url(), "honest", stop.clone()));

    let mut partial = Vec::new();
    let mut stalled = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..80 {
        let mut s = connect_from(ATTACKER, addr).await;
        s.write_all(b"POST /ingest/maelys-kustomer HTTP/1.1\r\nhost: intake\r\n")
            .await
            .unwrap();
        partial.push(s);
    }
    for _ in 0..80 {
        let mut s = connect_from(ATTACKER, addr).await;
        s.write_all(head(50_000).as_bytes()).await.unwrap();
        s.write_all(&[b' '; 1000]).await.unwrap();
        stalled.push(s);
    }
    for _ in 0..80 {
        idle.push(connect_from(ATTACKER, addr).await);
    }
    // Ten clients that trickle a byte every 300 ms: the idle timeout never fires, the header
    // and body deadlines do.
    let mut tricklers = Vec::new();
    for i in 0..10 {
        let mut s = connect_from(ATTACKER, addr).await;
        let (prefix, rest): (String, &[u8]) = if i % 2 == 0 {
            (
                String::new(),
                b"POST /ingest/maelys-kustomer HTTP/1.1\r\nhost: intake\r\nx-pad: ",
            )
        } else {
            (
                head(1000),
                b"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
            )
        };
        tricklers.push(tokio::spawn(async move {
            s.write_all(prefix.as_bytes()).await.unwrap();
            for b in rest {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (i, until_closed(s).await)
        }));
    }
    // 250 are open from the attacker's address; these are over its cap.
    let mut over = Vec::new();
    for _ in 0..40 {
        over.push(connect_from(ATTACKER, addr).await);
    }

    for s in over {
        let got = until_closed(s)
            .await
            .expect("a refused connection is closed");
        assert!(got.starts_with("HTTP/1.1 503"), "{got:?}");
        assert!(got.contains("retry-after: 1"), "{got:?}");
    }
    for (kind, sockets) in [("partial", partial), ("stalled", stalled), ("idle", idle)] {
        for s in sockets {
            let got = until_closed(s).await;
            assert!(got.is_some(), "a {kind} connection was never closed");
        }
    }
    for t in tricklers {
        let (i, got) = t.await.unwrap();
        let got = got.expect("a trickling connection was never closed");
        if i % 2 == 1 {
            assert!(
                got.starts_with("HTTP/1.1 408"),
                "body past body_timeout: {got:?}"
            );
        }
    }
    stop.cancel();
    let (sent, acked) = honest.await.unwrap();

    assert!(sent > 0);
    assert!(
        acked.len() * 10 >= sent * 9,
        "only {} of {sent} signed requests were acknowledged during the attack",
        acked.len()
    );
    for id in &acked {
        let (status, _) = server
            .api(&format!("/api/v1/events/{id}"), ADMIN_TOKEN)
            .await
            .unwrap();
        assert_eq!(status, 200, "acknowledged event {id} is not stored");
    }
    let received = handler.wait_for(acked.len(), PATIENCE).await;
    let delivered: HashSet<String> = received.iter().map(|c| c.id.clone()).collect();
    for id in &acked {
        assert!(
            delivered.contains(id),
            "acknowledged event {id} was not delivered"
        );
    }
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains("intake_requests_total{outcome=\"shed\",tenant=\"\",source=\"\"}"),
        "refused connections are counted"
    );
    // The attacker's places were all given back: it may connect again.
    let mut again = connect_from(ATTACKER, addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: intake\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(again).await.unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
}

/// Over `server.max_connections` (whatever the address), connections get 503 and are closed;
/// once the others are gone, a connection is served again.
#[tokio::test]
async fn connections_over_the_overall_cap_get_503() {
    let (server, _handler) = start("max_connections = 5\nmax_connections_per_ip = 5\n").await;
    let addr = server.server.addr;
    let mut held = Vec::new();
    for i in 0..5u8 {
        held.push(connect_from([127, 0, 0, 10 + i], addr).await);
    }
    let got = until_closed(connect_from([127, 0, 0, 20], addr).await)
        .await
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 503"), "{got:?}");
    assert!(got.contains("urn:intake:problem:overloaded"), "{got:?}");
    drop(held);
    // The server notices the closed sockets at its next read; a liveness wait, not a timing.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut s = connect_from([127, 0, 0, 20], addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: intake\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(s).await.unwrap();
        if got.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served again: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A body in flight that holds the budget makes the next request 503 with `Retry-After`;
/// once the stalled body's connection is cut (idle timeout), its bytes are given back and the
/// same request is acknowledged.
#[tokio::test]
async fn bodies_over_the_budget_get_503_until_the_budget_is_free() {
    let (server, _handler) = start("max_body_size = \"64KiB\"\nbody_budget = \"64KiB\"\n").await;
    let addr = server.server.addr;
    let mut hog = TcpStream::connect(addr).await.unwrap();
    hog.write_all(head(65_000).as_bytes()).await.unwrap();
    hog.write_all(&vec![b' '; 60_000]).await.unwrap();
    // Waits until the hog's bytes are in the budget: the first 503.
    let body = kustomer::message_create("budget-1", "email")
        .replace("Hello, my order has not arrived", &"x".repeat(10_000));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let refused = loop {
        let resp = server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
            .unwrap();
        if resp.status() == 503 {
            break resp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the budget never filled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:intake:problem:overloaded");
    // The hog is cut by the idle timeout; its bytes return to the budget.
    assert!(until_closed(hog).await.is_some());
    // The client's pooled connection may be closed by the same idle timeout as it is reused
    // (the usual keep-alive race, which a sender retries): a send error is retried.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let status = loop {
        match server
            .send_kustomer("maelys-kustomer", &body, SOURCE_SECRET)
            .await
        {
            Ok(resp) => break resp.status(),
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e:#}"),
        }
    };
    assert_eq!(status, 200);
    let metrics = server.metrics().await.unwrap();
    assert!(
        metrics.contains(
            "intake_requests_total{outcome=\"shed\",tenant=\"maelys\",source=\"maelys-kustomer\"} 1"
        ),
        "{metrics}"
    );
}

/// A connection's read buffer is capped (16 KiB): headers larger than that are refused and
/// the connection closed, instead of growing a buffer per connection.
#[tokio::test]
async fn headers_over_the_read_buffer_are_refused() {
    let (server, _handler) = start("").await;
    let mut s = TcpStream::connect(server.server.addr).await.unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: intake\r\nx-pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    // The server may close before reading it all; a failed write is part of the refusal.
    let _ = s.write_all(big.as_bytes()).await;
    let got = until_closed(s).await.expect("the connection is closed");
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
    let mut ok = TcpStream::connect(server.server.addr).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nhost: intake\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(until_closed(ok).await.unwrap().starts_with("HTTP/1.1 200"));
}
