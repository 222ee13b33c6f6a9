//! Why the server could not start or stop cleanly. Only the binary turns this into `anyhow`.

use intake_core::config::ConfigError;
use intake_core::signature::SecretError;
use intake_store::StoreError;

/// An error of [`Server::start`](crate::Server::start) or of a running server's shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot be served by this build (see [`Server::check`](crate::Server::check)).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened, or could not commit what was queued when closing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A destination's signing secret is unusable.
    #[error("destination `{destination}`: secret")]
    Secret {
        /// The destination's id.
        destination: String,
        /// What is wrong with the secret.
        #[source]
        source: SecretError,
    },
    /// A source's connector could not be set up.
    #[error(transparent)]
    Connector(#[from] intake_connectors::SetupError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// `server.listen`.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another IO failure of the listener.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server's task panicked or was cancelled.
    #[error("server task panicked")]
    Task(#[source] tokio::task::JoinError),
}
