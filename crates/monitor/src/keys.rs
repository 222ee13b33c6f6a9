//! What identifies a series: a flow, a source, a queue.

use serde::{Deserialize, Serialize};

/// One inbound flow: (tenant, source, channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
    /// Channel (`email`, `chat`, …).
    pub channel: String,
}

/// One source: (tenant, source).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceKey {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
}

/// One queue: (tenant, source, destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueKey {
    /// Tenant id.
    pub tenant: String,
    /// Source id.
    pub source: String,
    /// Destination id.
    pub destination: String,
}
