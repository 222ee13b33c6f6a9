//! A minimal SMTP capture server: EHLO, STARTTLS (with a self-signed certificate from rcgen),
//! MAIL, RCPT, DATA, RSET, NOOP, QUIT. It records each mail and whether it travelled over TLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// One mail received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Whether the transaction ran inside TLS.
    pub tls: bool,
    /// Whether the client upgraded with STARTTLS (rather than implicit TLS).
    pub starttls: bool,
    pub from: String,
    pub rcpt: Vec<String>,
    /// The DATA, dot-unstuffed, CRLF line ends.
    pub data: String,
}

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Offer STARTTLS in EHLO.
    pub offer_starttls: bool,
    /// TLS from the first byte (smtps).
    pub implicit_tls: bool,
    /// Answer RCPT with this line instead of 250 (e.g. "550 5.1.1 no such user").
    pub rcpt_reply: Option<String>,
}

pub struct SmtpCapture {
    pub addr: SocketAddr,
    /// The server certificate (DER), to trust in the client.
    pub cert_der: Vec<u8>,
    /// The same certificate as PEM, as an operator's `ca_file` holds it.
    pub cert_pem: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpCapture {
    pub async fn start(behaviour: Behaviour) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let cert_der = ck.cert.der().to_vec();
        let cert_pem = ck.cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, behaviour, mails) = (acceptor.clone(), behaviour.clone(), m.clone());
                tokio::spawn(async move {
                    let _ = session(tcp, acceptor, behaviour, mails).await;
                });
            }
        });
        SmtpCapture {
            addr,
            cert_der,
            cert_pem,
            mails,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

enum Next {
    StartTls,
    Done,
}

async fn session(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    b: Behaviour,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    if b.implicit_tls {
        let tls = acceptor.accept(tcp).await?;
        dialog(BufReader::new(tls), true, false, &b, &mails).await?;
        return Ok(());
    }
    match dialog(BufReader::new(tcp), false, false, &b, &mails).await? {
        (Next::StartTls, plain) => {
            let tls = acceptor.accept(plain.into_inner()).await?;
            dialog(BufReader::new(tls), true, true, &b, &mails).await?;
        }
        (Next::Done, _) => {}
    }
    Ok(())
}

async fn reply<S: AsyncWrite + AsyncRead + Unpin>(
    s: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    s.get_mut().write_all(text.as_bytes()).await?;
    s.get_mut().flush().await
}

/// Runs commands until QUIT, EOF or STARTTLS. The greeting is sent on a fresh connection
/// (plain, or implicit TLS), never after a STARTTLS upgrade.
async fn dialog<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: BufReader<S>,
    tls: bool,
    upgraded: bool,
    b: &Behaviour,
    mails: &Mutex<Vec<Mail>>,
) -> std::io::Result<(Next, BufReader<S>)> {
    if !upgraded {
        reply(&mut s, "220 capture.test ESMTP ready\r\n").await?;
    }
    let (mut from, mut rcpt) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok((Next::Done, s));
        }
        let line = line.trim_end().to_string();
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                let mut r = String::from("250-capture.test\r\n");
                if b.offer_starttls && !tls {
                    r.push_str("250-STARTTLS\r\n");
                }
                r.push_str("250 8BITMIME\r\n");
                reply(&mut s, &r).await?;
            }
            "STARTTLS" if b.offer_starttls && !tls => {
                reply(&mut s, "220 2.0.0 go ahead\r\n").await?;
                return Ok((Next::StartTls, s));
            }
            "MAIL" => {
                from = line[line.find(':').map_or(0, |i| i + 1)..]
                    .trim()
                    .to_string();
                reply(&mut s, "250 2.1.0 ok\r\n").await?;
            }
            "RCPT" => match &b.rcpt_reply {
                Some(r) => reply(&mut s, &format!("{r}\r\n")).await?,
                None => {
                    rcpt.push(
                        line[line.find(':').map_or(0, |i| i + 1)..]
                            .trim()
                            .to_string(),
                    );
                    reply(&mut s, "250 2.1.5 ok\r\n").await?;
                }
            },
            "DATA" => {
                reply(&mut s, "354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if s.read_line(&mut l).await? == 0 {
                        return Ok((Next::Done, s));
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                // The CRLF before the final dot belongs to the terminator, not to the mail.
                if data.ends_with("\r\n") {
                    data.truncate(data.len() - 2);
                }
                mails.lock().unwrap().push(Mail {
                    tls,
                    starttls: upgraded,
                    from: std::mem::take(&mut from),
                    rcpt: std::mem::take(&mut rcpt),
                    data,
                });
                reply(&mut s, "250 2.0.0 queued\r\n").await?;
            }
            "RSET" | "NOOP" => reply(&mut s, "250 2.0.0 ok\r\n").await?,
            "QUIT" => {
                reply(&mut s, "221 2.0.0 bye\r\n").await?;
                return Ok((Next::Done, s));
            }
            _ => reply(&mut s, "502 5.5.2 not implemented\r\n").await?,
        }
    }
}
