#[path = "it/cli.rs"]
mod cli;
#[path = "it/admin.rs"]
mod admin;
