//! Why a reconcile did not reach Ready, typed by what happens next.

use std::time::Duration;

use cloudkit_crds::reason::Reason;
use cloudkit_reconcilers::CloudError;
use thiserror::Error;

/// A reconcile that did not converge, as the user will read it in the conditions.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Failure {
    /// A human must act (fix the spec, create the ProviderConfig…); retried slowly in case
    /// the fix happens outside this object.
    #[error("{message}")]
    Stalled { reason: Reason, message: String },
    /// Passing trouble; retried with jittered exponential backoff.
    #[error("{message}")]
    Retrying {
        reason: Reason,
        message: String,
        after: Option<Duration>,
    },
    /// Nothing is wrong, but something else must happen first (a dependency turns Ready,
    /// the cloud finishes provisioning); looked at again after `after`, with no backoff.
    #[error("{message}")]
    Waiting {
        reason: Reason,
        message: String,
        after: Duration,
    },
}

impl Failure {
    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason,
            message: message.into(),
        }
    }

    pub fn waiting(reason: Reason, message: impl Into<String>, after: Duration) -> Self {
        Self::Waiting {
            reason,
            message: message.into(),
            after,
        }
    }

    /// A delay the cloud asked for before the next try, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retrying { after, .. } => *after,
            Self::Waiting { after, .. } => Some(*after),
            Self::Stalled { .. } => None,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Self::Stalled { reason, .. } | Self::Retrying { reason, .. } | Self::Waiting { reason, .. } => *reason,
        }
    }
}

impl From<CloudError> for Failure {
    fn from(err: CloudError) -> Self {
        let reason = err.reason();
        if err.is_retryable() {
            Self::Retrying {
                reason,
                after: err.retry_after(),
                message: err.to_string(),
            }
        } else {
            Self::Stalled {
                reason,
                message: err.to_string(),
            }
        }
    }
}

/// What makes a reconcile itself fail (as opposed to reporting a Failure in status).
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("status could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// Cleanup could not finish; the finalizer stays until it does.
    #[error("cleanup blocked: {0}")]
    Cleanup(Failure),
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The whole reconcile outran its bound; it was cut short and is retried with backoff.
    #[error("reconcile took longer than {0:?}: cut short, to be retried")]
    TimedOut(std::time::Duration),
}
