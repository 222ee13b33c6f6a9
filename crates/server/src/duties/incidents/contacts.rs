//! Tenants' contacts as outbox destinations.
//!
//! A contact (`[[tenants]] contacts`) is not a configured notifier, but its notices go through
//! the same durable outbox, retries and `notifier_failing` as on-call's. Each contact is given
//! a notifier id of its own, `contact:<tenant>:<index>` (its place in the tenant's `contacts`
//! list, from 0), under which its outbox rows wait and its health is counted. It is sent with
//! the same senders as `[[notifiers]]`: a webhook contact by the `webhook` notifier (the notice
//! as JSON, `"version": 1`), an e-mail contact by the `email` notifier whose SMTP server and
//! sender `[incidents] email_via` names (or the only `email` notifier), with the contact's
//! address as the only recipient.
//!
//! An e-mail contact without such a notifier cannot be reached: its sender refuses every
//! notice with a permanent error that says what to configure, so the notice ends `dead` and
//! `notifier_failing` tells on-call — nothing waits silently.

use std::sync::Arc;

use intake_core::config::{Config, Contact, NotifierConfig, NotifierKind};
use intake_notify::{Notice, Notifier, NotifyContext, NotifyError};

/// The prefix of every contact's notifier id.
pub const CONTACT_PREFIX: &str = "contact:";

/// The notifier id of a tenant's contact: `contact:<tenant>:<index>`.
pub fn contact_id(tenant: &str, index: usize) -> String {
    format!("{CONTACT_PREFIX}{tenant}:{index}")
}

/// Every contact of `tenant`, with its notifier id.
pub fn of_tenant<'a>(config: &'a Config, tenant: &str) -> Vec<(String, &'a Contact)> {
    config
        .tenant(tenant)
        .map(|t| {
            t.contacts
                .iter()
                .enumerate()
                .map(|(i, c)| (contact_id(&t.id, i), c))
                .collect()
        })
        .unwrap_or_default()
}

/// Who a contact is, for people: the e-mail address, or the webhook's scheme and host (its
/// path may be a credential).
pub fn describe(contact: &Contact) -> String {
    match contact {
        Contact::Email { to } => format!("e-mail {to}"),
        Contact::Webhook { url } => match reqwest::Url::parse(url) {
            Ok(u) => format!("webhook {}://{}", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "webhook".into(),
        },
    }
}

/// The sender of every contact of every tenant, by notifier id.
pub(crate) fn build(config: &Config, ctx: &NotifyContext) -> Vec<(String, Arc<dyn Notifier>)> {
    let mailer = config.incidents.mailer(&config.notifiers);
    let mut out = Vec::new();
    for t in &config.tenants {
        for (i, contact) in t.contacts.iter().enumerate() {
            let id = contact_id(&t.id, i);
            let built = match contact {
                Contact::Webhook { url } => intake_notify::build(
                    &NotifierConfig {
                        id: id.clone(),
                        kind: NotifierKind::Webhook,
                        url: Some(url.clone()),
                        to: Vec::new(),
                        from: None,
                        smtp_url: None,
                        ca_file: None,
                        tls: None,
                        routing_key: None,
                        severities: Vec::new(),
                    },
                    ctx,
                ),
                Contact::Email { to } => match mailer {
                    Some(m) => intake_notify::build(
                        &NotifierConfig {
                            id: id.clone(),
                            to: vec![to.clone()],
                            ..m.clone()
                        },
                        ctx,
                    ),
                    None => Ok(Box::new(Unreachable { id: id.clone() }) as Box<dyn Notifier>),
                },
            };
            match built {
                Ok(n) => out.push((id, Arc::from(n))),
                Err(e) => {
                    tracing::error!(contact = %id, error = %e, "a tenant contact cannot be reached; its notices will fail");
                    out.push((
                        id.clone(),
                        Arc::new(Unreachable { id }) as Arc<dyn Notifier>,
                    ));
                }
            }
        }
    }
    out
}

/// The sender of a contact intake cannot reach: it refuses every notice, for good, saying
/// what to configure.
struct Unreachable {
    id: String,
}

#[async_trait::async_trait]
impl Notifier for Unreachable {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, _notice: &Notice) -> Result<(), NotifyError> {
        Err(NotifyError::permanent(format!(
            "contact `{}` cannot be reached: an e-mail contact is sent through an `email` notifier's SMTP server; configure one in [[notifiers]] and name it in [incidents] email_via (or keep exactly one)",
            self.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_get_ids_by_place_and_are_described_without_their_paths() {
        let config = Config::from_toml_str(
            r#"
[[tenants]]
id = "maelys"
contacts = [
  { kind = "webhook", url = "https://status.maelys.example/hooks/S3CR3T" },
  { kind = "email", to = "ops@maelys.example" },
]
"#,
        )
        .unwrap();
        let c = of_tenant(&config, "maelys");
        let ids: Vec<&str> = c.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["contact:maelys:0", "contact:maelys:1"]);
        assert_eq!(describe(c[0].1), "webhook https://status.maelys.example");
        assert_eq!(describe(c[1].1), "e-mail ops@maelys.example");
        assert!(of_tenant(&config, "nobody").is_empty());
    }

    #[tokio::test]
    async fn an_e_mail_contact_without_an_smtp_server_is_refused_for_good() {
        let config = Config::from_toml_str(
            "[[tenants]]\nid = \"maelys\"\ncontacts = [{ kind = \"email\", to = \"ops@maelys.example\" }]\n",
        )
        .unwrap();
        let ctx = NotifyContext::new(std::sync::Arc::new(intake_core::ManualClock::new(
            intake_core::Timestamp(0),
        )));
        let built = build(&config, &ctx);
        assert_eq!(built.len(), 1);
        let links = intake_notify::LinkBuilder::default();
        let notice = Notice::watchdog(intake_core::Timestamp(0), intake_core::Timestamp(1), &links);
        let err = built[0].1.send(&notice).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("email_via"), "{err}");
    }
}
