//! `intake token create|list|revoke`: API tokens minted by the server, through the admin API.
//! The server decides what is allowed (only an operator token creates tokens; a tenant token
//! lists and revokes its own tenant's); a refused request exits non-zero with its explanation.
//! The new token is printed once, on standard output, and cannot be shown again.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};

use crate::api::{self, Api, ApiArgs, Call};

/// `intake token …`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token (operator tokens only). Prints it once.
    Create {
        /// `operator` (sees everything) or `tenant` (needs --tenant).
        #[arg(long, value_parser = ["operator", "tenant"])]
        scope: String,
        /// The tenant of a tenant token.
        #[arg(long)]
        tenant: Option<String>,
        /// What it is for (shown in listings).
        #[arg(long, alias = "comment")]
        name: String,
        /// How long it works, e.g. 90d (default: until revoked).
        #[arg(
            long = "expires-in",
            value_name = "DURATION",
            conflicts_with = "expires_at"
        )]
        expires_in: Option<String>,
        /// When it stops working, RFC 3339.
        #[arg(long = "expires-at", value_name = "TIME")]
        expires_at: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List tokens (never their text).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke a token now, on every node.
    Revoke {
        /// The token's id (tok_…), as `intake token list` shows it.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Runs one `intake token` command.
pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            scope,
            tenant,
            name,
            expires_in,
            expires_at,
            api,
        } => {
            let mut body = json!({ "scope": scope, "name": name });
            if let Some(t) = tenant {
                body["tenant"] = json!(t);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = json!(e);
            }
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            let api = Api::new(api)?;
            let create = Call {
                body: Some(&body),
                ..Call::default()
            };
            let t = api
                .call(&api::TOKEN_CREATE, create)
                .context("the token was not created")?;
            eprintln!(
                "created {} ({}); this is the only time the token is shown:",
                t["id"].as_str().unwrap_or("?"),
                describe(&t),
            );
            println!("{}", t["token"].as_str().unwrap_or(""));
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { api } => {
            let api = Api::new(api)?;
            print!("{}", render(&api.call(&api::TOKENS, Call::default())?));
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id, api } => {
            let api = Api::new(api)?;
            let revoke = Call {
                path: &[&id],
                ..Call::default()
            };
            let t = api
                .call(&api::TOKEN_REVOKE, revoke)
                .context("the token could not be revoked")?;
            println!(
                "revoked {} ({}) at {}",
                t["id"].as_str().unwrap_or("?"),
                describe(&t),
                t["revoked_at"].as_str().unwrap_or("?"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe(t: &Value) -> String {
    let scope = match t["tenant"].as_str() {
        Some(tenant) => format!("tenant {tenant}"),
        None => "operator".into(),
    };
    format!("{scope}, {}", t["name"].as_str().unwrap_or(""))
}

/// The tokens as a table.
pub fn render(tokens: &Value) -> String {
    let mut out = String::new();
    let list = tokens["data"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(out, "TOKENS: {}", list.len());
    for t in list {
        let _ = writeln!(
            out,
            "  {}  {:<7}  {}  created {}  expires {}",
            t["id"].as_str().unwrap_or("?"),
            t["state"].as_str().unwrap_or("?"),
            describe(t),
            t["created_at"].as_str().unwrap_or("?"),
            t["expires_at"].as_str().unwrap_or("never"),
        );
    }
    out
}
