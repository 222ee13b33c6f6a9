//! Dashboard sessions without a session table: a cookie that carries a MAC'd claim, and a
//! CSRF token derived from it. Pure functions of a key, a cookie and an instant, tested with
//! tables below; the door (`web::auth`) does the IO around them.
//!
//! **Why no table.** Several `intake serve` nodes answer the same dashboard behind a load
//! balancer. A session the cookie proves by itself (an HMAC under a key made once per cluster
//! and kept in the store, like the canary key) works on every node at once and costs no write
//! per login. The cookie never holds the token that logged in: for a configured token
//! (`admin.token`, a tenant's `api_token`) it holds an HMAC fingerprint of it under the session
//! key, and for a minted `itk_…` token the hash the store indexes it by. Every request resolves
//! that credential again with the admin API's rules, so revoking a minted token, changing a
//! configured one or removing a tenant ends its sessions at once, on every node.
//!
//! **CSRF.** Every form carries `_csrf`, an HMAC of the session cookie under the same key: a
//! page of another site can neither read it (the cookie is `HttpOnly`, and `SameSite=Strict`
//! keeps it off cross-site requests anyway) nor guess it, and it changes with every login.

use std::time::Duration;

use intake_core::signature::{constant_time_eq, hmac_sha256};
use intake_core::Timestamp;

/// The cookie's name.
pub const COOKIE: &str = "intake_session";

/// How long a session lasts after its login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The state document holding the session key (hex), written once by the first node to start.
pub const KEY_STATE: &str = "web-session-key";

/// The form field (or `x-csrf-token` header) that carries the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";

const VERSION: &str = "v1";

/// What a session remembers of the token that logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A configured token, as its fingerprint under the session key ([`fingerprint`]).
    Configured(String),
    /// A minted token, as the hash the store keeps it under (`intake_core::token::hash`).
    Minted(String),
}

/// A session as its cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who logged in.
    pub credential: Credential,
    /// When it ends.
    pub expires: Timestamp,
}

/// Why a cookie is not a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a cookie this code wrote (or of another version).
    Malformed,
    /// Its MAC does not verify under this cluster's key.
    Forged,
    /// It has ended.
    Expired,
}

/// The fingerprint of a configured token: what a session keeps instead of the token.
pub fn fingerprint(key: &[u8], token: &str) -> String {
    hex::encode(hmac_sha256(key, &[b"token\n", token.as_bytes()]))
}

fn mac(key: &[u8], claim: &str) -> String {
    hex::encode(hmac_sha256(key, &[b"session\n", claim.as_bytes()]))
}

/// The cookie value of a session.
pub fn encode(key: &[u8], s: &Session) -> String {
    let cred = match &s.credential {
        Credential::Configured(fp) => format!("c{fp}"),
        Credential::Minted(hash) => format!("m{hash}"),
    };
    let claim = format!("{VERSION}.{cred}.{}", s.expires.as_millis());
    let mac = mac(key, &claim);
    format!("{claim}.{mac}")
}

/// The session a cookie value proves at `now`.
pub fn decode(key: &[u8], value: &str, now: Timestamp) -> Result<Session, Refusal> {
    let mut parts = value.split('.');
    let (Some(version), Some(cred), Some(expires), Some(given), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Refusal::Malformed);
    };
    if version != VERSION {
        return Err(Refusal::Malformed);
    }
    let claim = format!("{version}.{cred}.{expires}");
    if !constant_time_eq(mac(key, &claim).as_bytes(), given.as_bytes()) {
        return Err(Refusal::Forged);
    }
    let expires = Timestamp(expires.parse::<i64>().map_err(|_| Refusal::Malformed)?);
    let credential = match cred.split_at_checked(1) {
        Some(("c", fp)) if is_hex(fp) => Credential::Configured(fp.to_string()),
        Some(("m", hash)) if is_hex(hash) => Credential::Minted(hash.to_string()),
        _ => return Err(Refusal::Malformed),
    };
    if now >= expires {
        return Err(Refusal::Expired);
    }
    Ok(Session {
        credential,
        expires,
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The CSRF token of the session whose cookie is `cookie`.
pub fn csrf_token(key: &[u8], cookie: &str) -> String {
    hex::encode(hmac_sha256(key, &[b"csrf\n", cookie.as_bytes()]))
}

/// Whether `presented` is the CSRF token of the session whose cookie is `cookie`.
pub fn csrf_ok(key: &[u8], cookie: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| constant_time_eq(csrf_token(key, cookie).as_bytes(), p.as_bytes()))
}

/// The `Set-Cookie` value that stores `value` for `max_age` (zero: deletes it). `Secure` when
/// the dashboard is served over https (`server.public_url`).
pub fn set_cookie(value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value in a `Cookie` header, if there is one.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
}

/// Where a login may send the browser next: a path of this site (`/…`), never another site
/// (`//host`, `https://…`, `/\host`), else the overview.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn session(cred: Credential) -> Session {
        Session {
            credential: cred,
            expires: NOW.plus(LIFETIME),
        }
    }

    #[test]
    fn a_cookie_proves_its_session_until_it_ends() {
        let configured = session(Credential::Configured(fingerprint(KEY, "change-me")));
        let minted = session(Credential::Minted(intake_core::token::hash("itk_x")));
        for s in [configured, minted] {
            let v = encode(KEY, &s);
            assert!(!v.contains("change-me") && !v.contains("itk_x"), "{v}");
            assert_eq!(decode(KEY, &v, NOW), Ok(s.clone()));
            assert_eq!(decode(KEY, &v, s.expires), Err(Refusal::Expired));
        }
    }

    #[test]
    fn a_cookie_that_was_not_made_here_is_refused() {
        let v = encode(KEY, &session(Credential::Minted("ab".repeat(32))));
        let other_key = encode(
            b"another key",
            &session(Credential::Minted("ab".repeat(32))),
        );
        let longer = {
            // The expiry pushed a day later, the MAC kept.
            let parts: Vec<&str> = v.split('.').collect();
            let later = (NOW.plus(LIFETIME * 3)).as_millis().to_string();
            format!("{}.{}.{}.{}", parts[0], parts[1], later, parts[3])
        };
        let cases: Vec<(String, Refusal)> = vec![
            (other_key, Refusal::Forged),
            (longer, Refusal::Forged),
            (v.replacen("v1.", "v2.", 1), Refusal::Malformed),
            ("".into(), Refusal::Malformed),
            ("v1.mab.1.2.3".into(), Refusal::Malformed),
            (format!("{v}.extra"), Refusal::Malformed),
            (v[..v.len() - 1].to_string(), Refusal::Forged),
        ];
        for (value, want) in cases {
            assert_eq!(decode(KEY, &value, NOW), Err(want), "{value}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let a = encode(KEY, &session(Credential::Minted("ab".repeat(32))));
        let b = encode(KEY, &session(Credential::Minted("cd".repeat(32))));
        let t = csrf_token(KEY, &a);
        assert!(csrf_ok(KEY, &a, Some(&t)));
        assert!(!csrf_ok(KEY, &b, Some(&t)));
        assert!(!csrf_ok(KEY, &a, None));
        assert!(!csrf_ok(KEY, &a, Some("")));
        assert!(!csrf_ok(b"another key", &a, Some(&t)));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let c = set_cookie("v", LIFETIME, true);
        assert_eq!(
            c,
            "intake_session=v; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie("v", LIFETIME, false).contains("Secure"));
        assert_eq!(cookie_value("a=1; intake_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("intake_sessionx=1"), None);
    }

    #[test]
    fn a_login_only_sends_the_browser_within_the_site() {
        let cases = [
            (Some("/alerts?rule=x"), "/alerts?rule=x"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("/a\r\nSet-Cookie: x"), "/"),
            (Some(""), "/"),
            (None, "/"),
        ];
        for (next, want) in cases {
            assert_eq!(safe_next(next), want, "{next:?}");
        }
    }
}
