//! Cloud errors, typed by what the controller should do with them.

use std::time::Duration;

use cloudkit_crds::Cloud;
use cloudkit_crds::reason::Reason;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CloudError {
    /// The kind has no backend for this cloud: a human must pick another ProviderConfig.
    #[error("{kind} is not supported on {cloud}: use a ProviderConfig for a cloud that serves {kind}")]
    Unsupported { kind: &'static str, cloud: Cloud },

    /// The cloud refused the request as it stands; retrying the same request will not help.
    #[error("{message}")]
    Rejected { reason: Reason, message: String },

    /// A passing failure (network, throttling, server error, eventual consistency), or one
    /// someone may fix outside Kubernetes at any time (permissions, a bucket's objects).
    #[error("{message}")]
    Transient {
        reason: Reason,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl CloudError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            reason: Reason::ProviderError,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The condition reason users see.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unsupported { .. } => Reason::UnsupportedForProvider,
            Self::Rejected { reason, .. } | Self::Transient { reason, .. } => *reason,
        }
    }

    /// A delay the cloud asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error and its sources, by their Display only, each text once (Azure and GCP clients
/// repeat a source's text in its wrapper).
#[cfg(any(feature = "azure", feature = "gcp"))]
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
