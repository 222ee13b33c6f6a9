//! The e-mail notifier against the SMTP capture server: STARTTLS is used (and required), the
//! mail says what happened, and SMTP refusals are classified.

use intake_core::config::{NotifierConfig, NotifierKind, SmtpTls};
use intake_notify::{build, AlertStatus, Notifier, NotifyContext};

use crate::fixtures::*;
use crate::smtp::{Behaviour, Mail, SmtpCapture};

fn email_notifier(server: &SmtpCapture, scheme: &str) -> Box<dyn Notifier> {
    let mut c: NotifierConfig = config(NotifierKind::Email, None);
    c.smtp_url = Some(format!("{scheme}://127.0.0.1:{}", server.addr.port()));
    c.from = Some("intake <alerts@intake.test>".into());
    c.to = vec!["oncall@ops.test".into(), "lead@ops.test".into()];
    let mut ctx: NotifyContext = ctx();
    // Trust the capture server's self-signed certificate, and only in this test.
    ctx.smtp_root_certificates = vec![server.cert_der.clone()];
    build(&c, &ctx).unwrap()
}

/// The headers unfolded, then the body decoded from its transfer encoding.
fn headers_and_body(mail: &Mail) -> (String, String) {
    let (head, body) = mail
        .data
        .split_once("\r\n\r\n")
        .expect("headers, blank line, body");
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let body = if head
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: quoted-printable")
    {
        decode_qp(body)
    } else {
        assert!(
            head.contains("Content-Transfer-Encoding: 7bit"),
            "unexpected encoding in {head}"
        );
        body.to_string()
    };
    (head, body.replace("\r\n", "\n"))
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn email_uses_starttls_and_says_what_happened() {
    let server = SmtpCapture::start(Behaviour {
        offer_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let n = email_notifier(&server, "smtp");
    n.send(&five_quiet_channels(AlertStatus::Firing))
        .await
        .unwrap();

    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.tls && mail.starttls, "the mail went through STARTTLS");
    assert_eq!(mail.from, "<alerts@intake.test>");
    assert_eq!(mail.rcpt, ["<oncall@ops.test>", "<lead@ops.test>"]);

    let (head, body) = headers_and_body(mail);
    assert!(
        head.contains("Subject: [intake] [FIRING] Inbound flow stopped: tenant=maelys, source=maelys-kustomer (5 alerts)"),
        "{head}"
    );
    assert!(
        head.contains("Date: Sat, 28 Nov 2026 10:20:00 +0000"),
        "{head}"
    );
    assert!(
        head.contains("To: oncall@ops.test, lead@ops.test"),
        "{head}"
    );
    assert!(
        head.contains("Content-Type: text/plain; charset=utf-8"),
        "{head}"
    );

    let mut expected = String::from(
        "[FIRING] Inbound flow stopped: tenant=maelys, source=maelys-kustomer (5 alerts)\n\n\
         Rule:     inbound_stopped (Inbound flow stopped)\n\
         Severity: critical\n\
         Who:      tenant=maelys, source=maelys-kustomer\n\
         Since:    2026-11-28T10:00:00.000Z (20m before this notice)\n\
         Why:      5 alerts firing\n\n\
         Alerts (5):\n",
    );
    for (i, ch) in CHANNELS.iter().enumerate() {
        expected.push_str(&format!(
            "  - channel={ch}: 0 {ch} events in 20m; baseline expects 30 (P(0) = 1e-13) [value 0], since 2026-11-28T10:0{i}:00.000Z (for {}m)\n",
            20 - i
        ));
    }
    expected.push_str(
        "\nDashboard: http://intake.test:8080/alerts?rule=inbound_stopped&tenant=maelys&source=maelys-kustomer\n\
         Events:    http://intake.test:8080/api/v1/events?tenant=maelys&source=maelys-kustomer&from=2026-11-28T09%3A45%3A00.000Z\n\
         \nKey: inbound_stopped{source=\"maelys-kustomer\",tenant=\"maelys\"}\n\
         Sent by intake at 2026-11-28T10:20:00.000Z\n",
    );
    assert_eq!(body, expected);
}

#[tokio::test]
async fn email_firing_and_resolution_thread_together() {
    let server = SmtpCapture::start(Behaviour {
        offer_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let n = email_notifier(&server, "smtp");
    n.send(&queue_stalled(AlertStatus::Firing)).await.unwrap();
    n.send(&queue_stalled(AlertStatus::Resolved)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 2);
    let (h1, _) = headers_and_body(&mails[0]);
    let (h2, b2) = headers_and_body(&mails[1]);
    let refs = |h: &str| {
        h.lines()
            .find(|l| l.starts_with("References:"))
            .map(str::to_string)
            .expect("References header")
    };
    assert_eq!(refs(&h1), refs(&h2));
    assert!(
        h2.contains("Subject: [intake] [RESOLVED] Queue stalled"),
        "{h2}"
    );
    assert!(
        b2.contains("  - RESOLVED tenant=maelys, destination=handler: oldest pending delivery is 7m old (threshold 5m); 212 pending [value 420], from 2026-11-28T10:13:00.000Z to 2026-11-28T10:40:00.000Z (lasted 27m)\n"),
        "{b2}"
    );
}

#[tokio::test]
async fn email_over_implicit_tls() {
    let server = SmtpCapture::start(Behaviour {
        implicit_tls: true,
        ..Behaviour::default()
    })
    .await;
    let n = email_notifier(&server, "smtps");
    n.send(&queue_stalled(AlertStatus::Firing)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls && !mails[0].starttls);
}

#[tokio::test]
async fn email_refuses_a_server_without_starttls() {
    let server = SmtpCapture::start(Behaviour::default()).await;
    let n = email_notifier(&server, "smtp");
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(server.mails().is_empty(), "nothing was sent in clear text");
}

#[tokio::test]
async fn email_refuses_a_certificate_it_does_not_trust() {
    // An untrusted certificate is retried like a connection failure (the server's certificate
    // may be renewed), but nothing is ever sent to it.
    let server = SmtpCapture::start(Behaviour {
        offer_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let mut c = config(NotifierKind::Email, None);
    c.smtp_url = Some(format!("smtp://127.0.0.1:{}", server.addr.port()));
    c.to = vec!["oncall@ops.test".into()];
    let n = build(&c, &ctx()).unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(server.mails().is_empty());
}

#[tokio::test]
async fn smtp_5xx_is_permanent_and_4xx_retryable() {
    for (line, retryable) in [
        ("550 5.1.1 no such user", false),
        ("451 4.3.0 try again later", true),
    ] {
        let server = SmtpCapture::start(Behaviour {
            offer_starttls: true,
            rcpt_reply: Some(line.into()),
            ..Behaviour::default()
        })
        .await;
        let n = email_notifier(&server, "smtp");
        let err = n
            .send(&queue_stalled(AlertStatus::Firing))
            .await
            .unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{line}: {err}");
        assert!(server.mails().is_empty());
    }
}

#[tokio::test]
async fn smtp_server_down_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut c = config(NotifierKind::Email, None);
    c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    c.to = vec!["oncall@ops.test".into()];
    let n = build(&c, &ctx()).unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

/// An e-mail notifier for `smtp_url` with `tls` and `ca_file`, and no extra roots in the
/// context: only what the configuration says is trusted.
fn configured(
    smtp_url: String,
    tls: Option<SmtpTls>,
    ca_file: Option<String>,
) -> Result<Box<dyn Notifier>, intake_notify::BuildError> {
    let mut c = config(NotifierKind::Email, None);
    c.smtp_url = Some(smtp_url);
    c.to = vec!["oncall@ops.test".into()];
    c.tls = tls;
    c.ca_file = ca_file;
    build(&c, &ctx())
}

#[tokio::test]
async fn email_trusts_the_certificates_of_its_ca_file() {
    let server = SmtpCapture::start(Behaviour {
        offer_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("relay-ca.pem");
    // A bundle: an unrelated certificate first, then the relay's.
    let other = rcgen::generate_simple_self_signed(vec!["other.example".to_string()]).unwrap();
    std::fs::write(&ca, format!("{}{}", other.cert.pem(), server.cert_pem)).unwrap();
    let url = format!("smtp://127.0.0.1:{}", server.addr.port());
    let n = configured(url.clone(), None, Some(ca.display().to_string())).unwrap();
    n.send(&queue_stalled(AlertStatus::Firing)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].tls && mails[0].starttls,
        "verified against ca_file"
    );

    // Without the relay's certificate in ca_file, nothing is sent.
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let n = configured(url, None, Some(ca.display().to_string())).unwrap();
    let err = n
        .send(&queue_stalled(AlertStatus::Firing))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(server.mails().len(), 1);
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_used_stops_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (file, says) in [
        (missing, "cannot be read"),
        (empty.display().to_string(), "holds no PEM certificate"),
    ] {
        let err = configured("smtp://mail.example:587".into(), None, Some(file))
            .err()
            .expect("refused");
        assert!(
            err.message.contains("ca_file") && err.message.contains(says),
            "{err}"
        );
    }
}

#[tokio::test]
async fn tls_none_sends_plain_text_to_a_relay_on_loopback() {
    // A local relay that offers no STARTTLS at all.
    let server = SmtpCapture::start(Behaviour::default()).await;
    let url = format!("smtp://127.0.0.1:{}", server.addr.port());
    let n = configured(url, Some(SmtpTls::None), None).unwrap();
    n.send(&queue_stalled(AlertStatus::Firing)).await.unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(!mails[0].tls, "plain text, as configured");
    assert_eq!(mails[0].rcpt, ["<oncall@ops.test>"]);
}

#[tokio::test]
async fn tls_none_is_refused_for_anything_but_a_relay_on_loopback() {
    for url in [
        "smtp://mail.example:25",
        "smtp://10.0.0.5:25",
        "smtps://127.0.0.1:465",
    ] {
        let err = configured(url.into(), Some(SmtpTls::None), None)
            .err()
            .unwrap_or_else(|| panic!("{url} accepted in plain text"));
        assert!(err.message.contains("tls = \"none\""), "{url}: {err}");
    }
    for url in ["smtp://localhost:25", "smtp://[::1]:25", "smtp://127.0.0.2"] {
        assert!(
            configured(url.into(), Some(SmtpTls::None), None).is_ok(),
            "{url}"
        );
    }
}

/// A tenant's incident notices: the body is the tenant template's text alone (nothing of
/// on-call's vocabulary), the mails of one incident thread together, and two notices made in
/// the same millisecond (declared, then updated at once) have Message-IDs of their own.
#[tokio::test]
async fn a_tenant_s_incident_mail_is_its_text_and_each_has_its_own_message_id() {
    use intake_core::config::Severity;
    use intake_notify::{IncidentInfo, IncidentStatus, Notice};
    let server = SmtpCapture::start(Behaviour {
        offer_starttls: true,
        ..Behaviour::default()
    })
    .await;
    let n = email_notifier(&server, "smtp");
    let at = t("2026-11-28T10:00:00Z");
    let notice = |status, text: &str| {
        Notice::incident_for_tenant(
            status,
            IncidentInfo {
                id: "inc_1".into(),
                title: "Webhooks delayed".into(),
                message: "Events are late.".into(),
                tenants: vec!["maelys".into()],
                text: Some(text.into()),
                ..IncidentInfo::default()
            },
            Severity::Warning,
            at,
        )
    };
    n.send(&notice(
        IncidentStatus::Declared,
        "We are investigating.\nNext update by 10:30.",
    ))
    .await
    .unwrap();
    n.send(&notice(
        IncidentStatus::Updated,
        "Update: a fix is deployed.",
    ))
    .await
    .unwrap();
    let mails = server.mails();
    assert_eq!(mails.len(), 2);
    let (h1, b1) = headers_and_body(&mails[0]);
    let (h2, _) = headers_and_body(&mails[1]);
    assert_eq!(b1, "We are investigating.\nNext update by 10:30.\n");
    assert!(
        h1.contains("Subject: [intake] [INCIDENT] Webhooks delayed"),
        "{h1}"
    );
    let header = |h: &str, name: &str| {
        h.lines()
            .find(|l| l.starts_with(name))
            .map(str::to_string)
            .expect(name)
    };
    assert_eq!(header(&h1, "References:"), header(&h2, "References:"));
    assert_ne!(header(&h1, "Message-ID:"), header(&h2, "Message-ID:"));
}
