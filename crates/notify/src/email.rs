//! `kind = "email"`: SMTP through `lettre`, encrypted unless told otherwise: STARTTLS for
//! `smtp://` (the server must offer it; intake never falls back to plain text) and implicit TLS
//! for `smtps://`. TLS is rustls with the public web roots, plus the CA certificates of the
//! notifier's `ca_file` (a company CA, a local relay's own) and any
//! [`NotifyContext::smtp_root_certificates`]. Plain text only when the configuration says
//! `tls = "none"`, and only to a relay on loopback (checked here as well as by the validator).
//!
//! The subject is the notice's summary; the body is plain text (what, who, how bad, since
//! when, why, every alert of a group, links). All mails about one alert group carry the same
//! `References`, so mail clients thread firing, repeats and resolution together.

use intake_core::config::{is_loopback, NotifierConfig};
use lettre::message::header::{ContentType, References};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use crate::render;
use crate::{http, BuildError, Notice, Notifier, NotifyContext, NotifyError};

/// The sender used when `from` is not configured.
pub const DEFAULT_FROM: &str = "intake <intake@localhost>";

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://host[:587]`: plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// `smtps://host[:465]`: TLS from the first byte.
    ImplicitTls,
    /// `tls = "none"`: plain text, to a relay on loopback only.
    PlainLoopback,
}

/// Sends notices as e-mail over SMTP.
pub struct EmailNotifier {
    id: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    server: String,
    security: SmtpSecurity,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailNotifier {
    /// Builds from `[[notifiers]]` with `smtp_url`, `to` and optionally `from`.
    ///
    /// `smtp_url` is `smtp://[user:password@]host[:port]` (STARTTLS, port 587 by default) or
    /// `smtps://[user:password@]host[:port]` (implicit TLS, port 465 by default); user and
    /// password are percent-decoded.
    pub fn new(config: &NotifierConfig, ctx: &NotifyContext) -> Result<Self, BuildError> {
        let id = config.id.as_str();
        let raw = config.smtp_url.as_deref().ok_or_else(|| {
            BuildError::new(
                id,
                "`smtp_url` is required, e.g. \"smtp://mail.example.com:587\"",
            )
        })?;
        let url = url::Url::parse(raw)
            .map_err(|e| BuildError::new(id, format!("`smtp_url` is not a URL ({e})")))?;
        let plain = config.smtp_plain_text();
        let (security, default_port) = match url.scheme() {
            "smtp" if plain => (SmtpSecurity::PlainLoopback, 25),
            "smtp" => (SmtpSecurity::StartTls, 587),
            "smtps" if plain => {
                return Err(BuildError::new(
                    id,
                    "`tls = \"none\"` needs an smtp:// URL: smtps:// is TLS from the first byte",
                ))
            }
            "smtps" => (SmtpSecurity::ImplicitTls, 465),
            other => {
                return Err(BuildError::new(
                    id,
                    format!(
                        "`smtp_url` scheme `{other}` is not supported: use smtp:// (STARTTLS) or smtps:// (implicit TLS)"
                    ),
                ))
            }
        };
        if url.query().is_some() {
            return Err(BuildError::new(
                id,
                "`smtp_url` takes no query parameters; encryption is chosen by the scheme (smtp:// = STARTTLS, smtps:// = implicit TLS) and cannot be turned off in the URL (only by `tls = \"none\"`, for a relay on loopback)",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(BuildError::new(id, "`smtp_url` has no host")),
        };
        let port = url.port().unwrap_or(default_port);
        if security == SmtpSecurity::PlainLoopback && !is_loopback(&url) {
            return Err(BuildError::new(
                id,
                format!("`tls = \"none\"` is allowed only to a relay on loopback (127.0.0.1, ::1 or localhost), not to {host}"),
            ));
        }
        let tls = match security {
            SmtpSecurity::StartTls => Tls::Required(tls_parameters(id, &host, config, ctx)?),
            SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_parameters(id, &host, config, ctx)?),
            SmtpSecurity::PlainLoopback => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(ctx.timeout));
        if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| {
                    BuildError::new(id, "`smtp_url` user or password is not valid UTF-8")
                })
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            builder = builder.credentials(Credentials::new(user, password));
        }

        let from = config
            .from
            .as_deref()
            .unwrap_or(DEFAULT_FROM)
            .parse::<Mailbox>()
            .map_err(|e| BuildError::new(id, format!("`from` is not an e-mail address ({e})")))?;
        if config.to.is_empty() {
            return Err(BuildError::new(id, "`to` needs at least one recipient"));
        }
        let to = config
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>().map_err(|e| {
                    BuildError::new(
                        id,
                        format!("`to` entry `{t}` is not an e-mail address ({e})"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(EmailNotifier {
            id: id.to_string(),
            from,
            to,
            server: format!("{host}:{port}"),
            security,
            transport: builder.build(),
        })
    }

    /// How this notifier protects its connection.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// The mail for `notice`: subject, plain-text body, threading headers, and the notice's
    /// time as `Date` (never the wall clock).
    fn message(&self, n: &Notice) -> Result<Message, NotifyError> {
        let thread = hex::encode(&Sha256::digest(n.key.as_bytes())[..12]);
        // Two notices of one thread made in the same millisecond (an incident declared and
        // updated at once) must not share a Message-ID, or a mail client drops the second.
        let body = render::plain_text(n);
        let unique = hex::encode(&Sha256::digest(format!("{}\n{body}", n.summary))[..6]);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .date(n.at.to_system_time())
            .message_id(Some(format!(
                "<{thread}.{}.{unique}@intake>",
                n.at.as_millis()
            )))
            .header(References::from(format!("<{thread}@intake>")))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.body(body)
            .map_err(|e| NotifyError::permanent(format!("cannot build the e-mail: {e}")))
    }
}

/// TLS for `host`: rustls with the public web roots, the certificates of `ca_file`, and the
/// context's extra roots.
fn tls_parameters(
    id: &str,
    host: &str,
    config: &NotifierConfig,
    ctx: &NotifyContext,
) -> Result<TlsParameters, BuildError> {
    let mut tls = TlsParameters::builder(host.to_string());
    if let Some(path) = &config.ca_file {
        tls = tls.add_root_certificate(ca_file_certificates(id, path)?);
    }
    for der in &ctx.smtp_root_certificates {
        let cert = Certificate::from_der(der.clone()).map_err(|e| {
            BuildError::new(id, format!("an SMTP root certificate is invalid ({e})"))
        })?;
        tls = tls.add_root_certificate(cert);
    }
    tls.build_rustls()
        .map_err(|e| BuildError::new(id, format!("cannot set up TLS for SMTP ({e})")))
}

/// The CA certificates of a PEM file (one or more `BEGIN CERTIFICATE` blocks).
fn ca_file_certificates(id: &str, path: &str) -> Result<Certificate, BuildError> {
    let pem = std::fs::read(path)
        .map_err(|e| BuildError::new(id, format!("`ca_file` {path} cannot be read ({e})")))?;
    let marker = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(marker.len()).any(|w| w == marker) {
        return Err(BuildError::new(
            id,
            format!("`ca_file` {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        ));
    }
    Certificate::from_pem(&pem)
        .map_err(|e| BuildError::new(id, format!("`ca_file` {path} is not valid PEM ({e})")))
}

/// `[intake] [FIRING] Inbound flow stopped: tenant=maelys (5 alerts)`.
pub(crate) fn subject(n: &Notice) -> String {
    format!("[intake] {}", n.summary)
}

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

#[async_trait::async_trait]
impl Notifier for EmailNotifier {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let mail = self.message(notice)?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&self.server, &e)),
        }
    }
}

/// SMTP 5xx replies and a server that does not offer STARTTLS (a property of the configured
/// server, never fixed by waiting) are permanent; 4xx replies, timeouts, connection failures
/// and TLS handshake failures (lettre reports a certificate that does not verify as a
/// connection error; the server's certificate may be renewed) are retryable.
fn classify(server: &str, e: &lettre::transport::smtp::Error) -> NotifyError {
    let detail = http::chain(e);
    if e.is_permanent() {
        NotifyError::permanent(format!("SMTP server {server} refused the mail: {detail}"))
    } else if e.is_tls() || e.is_client() {
        NotifyError::permanent(format!(
            "SMTP server {server}: cannot send securely: {detail}"
        ))
    } else if e.is_transient() {
        NotifyError::retryable(format!("SMTP server {server} deferred the mail: {detail}"))
    } else {
        NotifyError::retryable(format!("SMTP server {server}: {detail}"))
    }
}
