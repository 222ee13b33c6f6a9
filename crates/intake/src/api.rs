//! The admin API as the command line sees it: where the server is, how to authenticate, the
//! table of every endpoint the command line calls ([`ENDPOINTS`]), and a small blocking client.
//! `intake status`, `intake silence`, `intake token`, `intake recover`, `intake audit`,
//! `intake drill` and `intake incident` talk to the server through it; it knows nothing of any of them.
//! `intake demo`, which runs the server in its own async runtime, calls the same table through
//! an async client of its own that builds its URLs with [`endpoint_url`].
//!
//! The client only calls endpoints of the table, never a free-form path, and a test checks
//! each entry (method, path, the query parameters it may send) against the server's OpenAPI
//! document (`intake_server::api::openapi::document`): a route renamed or removed on the
//! server fails that test, not a user's command.

use anyhow::Context;
use serde_json::Value;

/// An HTTP method the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `DELETE`
    Delete,
}

impl Verb {
    /// Its HTTP method.
    pub fn method(self) -> reqwest::Method {
        match self {
            Verb::Get => reqwest::Method::GET,
            Verb::Post => reqwest::Method::POST,
            Verb::Delete => reqwest::Method::DELETE,
        }
    }
}

/// One admin API operation the command line calls.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Its method.
    pub verb: Verb,
    /// Its path as the OpenAPI document writes it, `{name}` for a path parameter.
    pub path: &'static str,
    /// The query parameters the command line may send.
    pub query: &'static [&'static str],
}

/// Declares each endpoint once, and [`ENDPOINTS`] with all of them, so none escapes the test.
macro_rules! endpoints {
    ($($(#[$doc:meta])* $name:ident = $verb:ident $path:literal [$($q:literal),*];)*) => {
        $(
            $(#[$doc])*
            pub const $name: Endpoint = Endpoint { verb: Verb::$verb, path: $path, query: &[$($q),*] };
        )*
        /// Every endpoint the command line calls (read by the test that checks them against
        /// the OpenAPI document).
        #[cfg(test)]
        pub const ENDPOINTS: &[Endpoint] = &[$($name),*];
    };
}

endpoints! {
    /// `intake status`: inbound flows.
    FLOWS = Get "/api/v1/flows" [];
    /// `intake status`: the outbound queue.
    QUEUE = Get "/api/v1/queue" [];
    /// `intake status`: the alerts.
    ALERTS = Get "/api/v1/alerts" ["limit"];
    /// `intake status`: the canaries.
    CANARIES = Get "/api/v1/canaries" [];
    /// `intake status`, `intake silence list`.
    SILENCES = Get "/api/v1/silences" ["state"];
    /// `intake silence add`.
    SILENCE_CREATE = Post "/api/v1/silences" [];
    /// `intake silence expire ID`.
    SILENCE_EXPIRE = Delete "/api/v1/silences/{id}" [];
    /// `intake token list`.
    TOKENS = Get "/api/v1/tokens" [];
    /// `intake token create`.
    TOKEN_CREATE = Post "/api/v1/tokens" [];
    /// `intake token revoke ID`.
    TOKEN_REVOKE = Delete "/api/v1/tokens/{id}" [];
    /// `intake recover list`.
    RECOVERIES = Get "/api/v1/recoveries" ["limit", "source", "state"];
    /// `intake recover backfill|replay|requeue`.
    RECOVERY_CREATE = Post "/api/v1/recoveries" [];
    /// `intake recover show ID`, and following a job's progress.
    RECOVERY = Get "/api/v1/recoveries/{id}" [];
    /// `intake recover cancel ID`.
    RECOVERY_CANCEL = Post "/api/v1/recoveries/{id}/cancel" [];
    /// `intake audit`.
    AUDIT = Get "/api/v1/audit" ["source", "from", "to"];
    /// `intake status`: reconciliation's open gaps.
    RECONCILIATION = Get "/api/v1/reconciliation" [];
    /// `intake drill list`.
    DRILLS = Get "/api/v1/drills" ["limit", "state"];
    /// `intake drill <scenario>`.
    DRILL_CREATE = Post "/api/v1/drills" [];
    /// `intake drill show ID`, and following a drill.
    DRILL = Get "/api/v1/drills/{id}" [];
    /// `intake drill cancel ID`.
    DRILL_CANCEL = Post "/api/v1/drills/{id}/cancel" [];
    /// `intake incident list`, and `intake status`'s open incidents.
    INCIDENTS = Get "/api/v1/incidents" ["state", "tenant"];
    /// `intake incident declare`.
    INCIDENT_DECLARE = Post "/api/v1/incidents" [];
    /// `intake incident show ID`.
    INCIDENT = Get "/api/v1/incidents/{id}" [];
    /// `intake incident update ID`.
    INCIDENT_UPDATE = Post "/api/v1/incidents/{id}/updates" [];
    /// `intake incident resolve ID`.
    INCIDENT_RESOLVE = Post "/api/v1/incidents/{id}/resolve" [];
    /// `intake incident postmortem ID` (Markdown).
    INCIDENT_POSTMORTEM = Get "/api/v1/incidents/{id}/postmortem" [];
}

/// What one call sends besides its endpoint.
#[derive(Debug, Default)]
pub struct Call<'a> {
    /// The path parameters, in the order of the path.
    pub path: &'a [&'a str],
    /// Query parameters, among the endpoint's.
    pub query: &'a [(&'a str, &'a str)],
    /// A JSON body.
    pub body: Option<&'a Value>,
}

impl<'a> Call<'a> {
    /// A call with these path parameters and nothing else.
    pub fn at(path: &'a [&'a str]) -> Self {
        Call {
            path,
            ..Call::default()
        }
    }

    /// A call with these query parameters and nothing else.
    pub fn query(query: &'a [(&'a str, &'a str)]) -> Self {
        Call {
            query,
            ..Call::default()
        }
    }
}

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The server's base URL.
    #[arg(long, env = "INTAKE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An operator token (admin.token) or a tenant's api_token, or one made by
    /// `intake token create`.
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// A small blocking client for the admin API.
pub struct Api {
    args: ApiArgs,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    /// A client for `args`.
    pub fn new(args: ApiArgs) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            args,
            http,
            runtime,
        })
    }

    /// Calls `endpoint` and returns the JSON answer, or an error that quotes the server's
    /// explanation (the problem's `detail`).
    pub fn call(&self, endpoint: &Endpoint, call: Call<'_>) -> anyhow::Result<Value> {
        let text = self.call_text(endpoint, call)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Calls `endpoint` and returns the answer's text (a Markdown document), or an error that
    /// quotes the server's explanation (the problem's `detail`).
    pub fn call_text(&self, endpoint: &Endpoint, call: Call<'_>) -> anyhow::Result<String> {
        let url = self.url(endpoint, &call)?;
        let method = endpoint.verb.method();
        // `--url` is shown as any URL of the configuration is: without a password or token.
        let shown = intake_core::config::mask("url", url.as_str()).into_owned();
        let base = intake_core::config::mask("url", &self.args.url).into_owned();
        self.runtime.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&self.args.token);
            if let Some(b) = call.body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(reqwest::Error::without_url)
                .with_context(|| format!("cannot reach intake at {base}"))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let detail = body["detail"].as_str().unwrap_or("no detail");
                anyhow::bail!("{method} {shown}: HTTP {status}: {detail}");
            }
            Ok(text)
        })
    }

    /// The URL of one call against `--url`.
    fn url(&self, endpoint: &Endpoint, call: &Call<'_>) -> anyhow::Result<reqwest::Url> {
        endpoint_url(&self.args.url, endpoint, call)
    }
}

/// The URL of one call: `base` (the server's URL, `--url`), then the endpoint's path with each
/// `{name}` replaced by the next path parameter (percent-encoded: an id cannot change the
/// path), then the query. Errors name `--url`, which is where a base comes from for people.
pub fn endpoint_url(
    base: &str,
    endpoint: &Endpoint,
    call: &Call<'_>,
) -> anyhow::Result<reqwest::Url> {
    let shown = intake_core::config::mask("url", base).into_owned();
    let mut url = reqwest::Url::parse(base)
        .with_context(|| format!("--url `{shown}` is not a URL (e.g. http://127.0.0.1:8080)"))?;
    let mut params = call.path.iter();
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--url `{shown}` cannot have a path"))?;
        segments.pop_if_empty();
        for seg in endpoint.path.split('/').filter(|s| !s.is_empty()) {
            if seg.starts_with('{') {
                let value = params
                    .next()
                    .with_context(|| format!("bug: {} needs a value for {seg}", endpoint.path))?;
                segments.push(value);
            } else {
                segments.push(seg);
            }
        }
    }
    anyhow::ensure!(
        params.next().is_none(),
        "bug: too many path parameters for {}",
        endpoint.path
    );
    for (name, value) in call.query {
        anyhow::ensure!(
            endpoint.query.contains(name),
            "bug: `{name}` is not a query parameter of {} in the table",
            endpoint.path
        );
        url.query_pairs_mut().append_pair(name, value);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(url: &str) -> Api {
        Api::new(ApiArgs {
            url: url.into(),
            token: "t".into(),
        })
        .unwrap()
    }

    #[test]
    fn every_cli_endpoint_is_in_the_openapi_document() {
        let doc = serde_json::to_value(intake_server::api::openapi::document()).unwrap();
        for e in ENDPOINTS {
            let method = match e.verb {
                Verb::Get => "get",
                Verb::Post => "post",
                Verb::Delete => "delete",
            };
            let op = &doc["paths"][e.path][method];
            assert!(
                op.is_object(),
                "the command line calls {:?} {}, which the OpenAPI document does not have",
                e.verb,
                e.path
            );
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let named = |place: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == place)
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect()
            };
            for q in e.query {
                assert!(
                    named("query").iter().any(|n| n == q),
                    "{:?} {}: query parameter `{q}` is not documented",
                    e.verb,
                    e.path
                );
            }
            let in_path: Vec<String> = e
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(String::from)
                .collect();
            assert_eq!(in_path, named("path"), "{:?} {}", e.verb, e.path);
        }
    }

    #[test]
    fn ids_and_queries_are_encoded_and_the_base_path_kept() {
        let call = Call {
            path: &["sil_1/../../tokens?x=1#y"],
            ..Call::default()
        };
        let url = api("http://127.0.0.1:8080/")
            .url(&SILENCE_EXPIRE, &call)
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/api/v1/silences/sil_1%2F..%2F..%2Ftokens%3Fx=1%23y"
        );
        let call = Call {
            query: &[("state", "all & more")],
            ..Call::default()
        };
        let url = api("https://ops.example/intake")
            .url(&SILENCES, &call)
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://ops.example/intake/api/v1/silences?state=all+%26+more"
        );
        let wrong = Call {
            query: &[("limit", "1")],
            ..Call::default()
        };
        assert!(api("http://h").url(&SILENCES, &wrong).is_err());
        assert!(api("http://h")
            .url(&SILENCE_EXPIRE, &Call::default())
            .is_err());
        assert!(api("not a url").url(&FLOWS, &Call::default()).is_err());
    }
}
