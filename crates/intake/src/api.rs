//! The admin API as the command line sees it: where the server is, how to authenticate, and a
//! small blocking client. `intake status`, `intake silence` and `intake token` talk to the server through
//! it; it knows nothing of either.

use anyhow::Context;
use serde_json::Value;

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

    /// GETs `path` and returns its JSON, or an error that says what the server answered.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }

    /// Sends a request with an optional JSON body and returns the JSON answer, or an error
    /// that quotes the server's explanation (the problem's `detail`).
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.args.url.trim_end_matches('/'));
        // `--url` is shown as any URL of the configuration is: without a password or token.
        let shown = intake_core::config::mask("url", &url).into_owned();
        let base = intake_core::config::mask("url", &self.args.url).into_owned();
        self.runtime.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.args.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(reqwest::Error::without_url)
                .with_context(|| format!("cannot reach intake at {base}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let detail = body["detail"].as_str().unwrap_or("no detail");
                anyhow::bail!("{method} {shown}: HTTP {status}: {detail}");
            }
            Ok(body)
        })
    }
}
