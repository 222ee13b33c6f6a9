//! How PostgreSQL's errors become [`StoreError`]s, and the error an injected fault raises.

use deadpool_postgres::GenericClient;

use crate::StoreError;

/// A PostgreSQL error as text: the server's code and message when there is one (the `Display`
/// of a server error is only "db error").
pub(super) fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(inner) = cur {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                cur = inner.source();
            }
            s
        }
    }
}

pub(super) fn unavailable(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(pg_error(&e))
}

pub(super) fn pool_unavailable(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => unavailable(e),
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        other => StoreError::Unavailable(format!("no connection to PostgreSQL: {other}")),
    }
}

/// How a write statement failed: the connection was lost (every request of the batch fails),
/// or the statement failed (perhaps because of one request: the batch is run request by
/// request).
pub(super) enum WriteError {
    /// The connection was lost.
    Lost(StoreError),
    /// A statement failed.
    Failed(StoreError),
    /// A statement was refused because the database's disk is full (the `room` module).
    NoRoom(StoreError),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            WriteError::Lost(unavailable(e))
        } else if super::room::is_out_of_space(&e) {
            WriteError::NoRoom(unavailable(e))
        } else {
            WriteError::Failed(unavailable(e))
        }
    }
}

impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Lost(e) | WriteError::Failed(e) | WriteError::NoRoom(e) => e,
        }
    }
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(pg_error(&e))
}

/// Reads fail as `Unavailable` when the database cannot be reached, as `Corrupt` when what it
/// returned cannot be read.
pub(super) fn read_error(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_some() || e.is_closed() || std::error::Error::source(&e).is_some() {
        unavailable(e)
    } else {
        corrupt(e)
    }
}

/// `url` as messages may show it: through the one masking function of the configuration,
/// so a password in the user info or in the query (`?password=…`) is never printed.
pub(super) fn redact(url: &str) -> String {
    intake_core::config::mask("storage.url", url).into_owned()
}

/// Runs a write in a read-only transaction, which fails, and returns its error.
pub(super) async fn injected_failure(client: &impl GenericClient) -> StoreError {
    let result = client
        .batch_execute(
            "BEGIN READ ONLY; INSERT INTO meta (key, value) VALUES ('fault', 'injected')",
        )
        .await;
    let _ = client.batch_execute("ROLLBACK").await;
    match result {
        Err(e) => unavailable(e),
        Ok(()) => StoreError::Unavailable("writes are rejected (injected fault)".into()),
    }
}
