//! [`SmtpCapture`]: a plain-text SMTP relay on loopback that records every mail, for tests of
//! e-mail notifications end to end (an `email` notifier with `tls = "none"` may send to a relay
//! on loopback only). It can be "down": it then greets with `421` and hangs up, which a sender
//! must take as a reason to try again later.
//!
//! (The notify crate's own tests use a capture that also speaks STARTTLS and implicit TLS; this
//! one is the loopback relay an operator would run, and all the server's tests need.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One mail received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`, each.
    pub rcpt: Vec<String>,
    /// The DATA, dot-unstuffed, with CRLF line ends.
    pub data: String,
}

impl Mail {
    /// The value of a header of the mail (the first one, unfolded), if it has it.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_string());
                }
            }
        }
        value
    }

    /// The body (after the header), with quoted-printable soft line breaks and `=XX` escapes
    /// undone, as a person reads it.
    pub fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let joined = body.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).replace("\r\n", "\n")
    }
}

struct Shared {
    mails: Mutex<Vec<Mail>>,
    down: AtomicBool,
    refused: Mutex<u32>,
}

/// A recording SMTP relay on 127.0.0.1, port 0, without TLS.
#[derive(Clone)]
pub struct SmtpCapture {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl SmtpCapture {
    /// Starts the relay, up.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mails: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            refused: Mutex::new(0),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = session(tcp, s).await;
                });
            }
        });
        Ok(SmtpCapture { addr, shared })
    }

    /// `smtp://127.0.0.1:PORT`, for an `email` notifier with `tls = "none"`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Down (`421` at the greeting) or up.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Every mail accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.shared
            .mails
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// How many connections were turned away while down.
    pub fn refused(&self) -> u32 {
        self.shared.refused.lock().map(|n| *n).unwrap_or(0)
    }
}

async fn reply(s: &mut BufReader<TcpStream>, text: &str) -> std::io::Result<()> {
    s.get_mut().write_all(text.as_bytes()).await?;
    s.get_mut().flush().await
}

async fn session(tcp: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut s = BufReader::new(tcp);
    if shared.down.load(Ordering::SeqCst) {
        if let Ok(mut n) = shared.refused.lock() {
            *n += 1;
        }
        return reply(
            &mut s,
            "421 4.3.2 capture.test is down, try again later\r\n",
        )
        .await;
    }
    reply(&mut s, "220 capture.test ESMTP ready\r\n").await?;
    let (mut from, mut rcpt) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let argument = || {
            line[line.find(':').map_or(0, |i| i + 1)..]
                .trim()
                .to_string()
        };
        match verb.as_str() {
            "EHLO" | "HELO" => reply(&mut s, "250-capture.test\r\n250 8BITMIME\r\n").await?,
            "MAIL" => {
                from = argument();
                reply(&mut s, "250 2.1.0 ok\r\n").await?;
            }
            "RCPT" => {
                rcpt.push(argument());
                reply(&mut s, "250 2.1.5 ok\r\n").await?;
            }
            "DATA" => {
                reply(&mut s, "354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if s.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                if data.ends_with("\r\n") {
                    data.truncate(data.len() - 2);
                }
                if let Ok(mut m) = shared.mails.lock() {
                    m.push(Mail {
                        from: std::mem::take(&mut from),
                        rcpt: std::mem::take(&mut rcpt),
                        data,
                    });
                }
                reply(&mut s, "250 2.0.0 queued\r\n").await?;
            }
            "RSET" | "NOOP" => reply(&mut s, "250 2.0.0 ok\r\n").await?,
            "QUIT" => return reply(&mut s, "221 2.0.0 bye\r\n").await,
            _ => reply(&mut s, "502 5.5.2 not implemented\r\n").await?,
        }
    }
}
