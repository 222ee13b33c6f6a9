//! The demo's view of the server it started: the admin API through the command line's table of
//! endpoints (`crate::api`, checked against the OpenAPI document), asynchronously, since the
//! server runs in the same runtime; and the built-in demo receivers (`/demo/handler`,
//! `/demo/notifications`), which are not part of the admin API.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::api::{endpoint_url, Call, Endpoint};

/// An async client of one server, with one token.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// A client of the server at `base`, authenticating with `token`.
    pub fn new(base: &str, token: &str) -> anyhow::Result<Admin> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Admin {
            http,
            base: base.to_string(),
            token: token.to_string(),
        })
    }

    /// Calls `endpoint`; its JSON answer, or an error quoting the problem's `detail`.
    pub async fn call(&self, endpoint: &Endpoint, call: Call<'_>) -> anyhow::Result<Value> {
        let text = self.call_text(endpoint, call).await?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} answered something that is not JSON", endpoint.path))
    }

    /// Calls `endpoint`; the answer's text (a Markdown document), or an error quoting the
    /// problem's `detail`.
    pub async fn call_text(&self, endpoint: &Endpoint, call: Call<'_>) -> anyhow::Result<String> {
        let url = endpoint_url(&self.base, endpoint, &call)?;
        let method = endpoint.verb.method();
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        if let Some(b) = call.body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {}: the server did not answer", endpoint.path))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let detail = body["detail"].as_str().unwrap_or("no detail");
            anyhow::bail!("{method} {}: HTTP {status}: {detail}", endpoint.path);
        }
        Ok(text)
    }

    /// What a built-in demo receiver kept (`/demo/handler`, `/demo/notifications`): newest
    /// first, at most its last hundred.
    pub async fn demo_list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}: the server did not answer"))?;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "GET {path}: HTTP {status}");
        let list: Value = resp
            .json()
            .await
            .with_context(|| format!("GET {path} answered something that is not JSON"))?;
        Ok(list.as_array().cloned().unwrap_or_default())
    }
}
