//! Pub/Sub admin clients (topics, subscriptions) of one project, over gRPC with the official
//! `google-cloud-pubsub`, and the error classification of their calls.

use std::future::Future;

use cloudkit_crds::reason::Reason;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};

use super::{OPERATION_TIMEOUT, Project, Service};
use crate::CloudError;

/// The two admin clients; each holds its own connection pool and token cache.
#[derive(Clone)]
pub(crate) struct Admin {
    pub topics: TopicAdmin,
    pub subscriptions: SubscriptionAdmin,
}

impl Project {
    /// The Pub/Sub admin clients, made at first use (building one is async) and kept.
    pub(crate) async fn pubsub(&self) -> Result<Admin, CloudError> {
        let admin = self
            .pubsub
            .get_or_try_init(|| async {
                let endpoint = self.endpoint(Service::Pubsub)?;
                let credentials = self
                    .credentials
                    .clone()
                    .unwrap_or_else(|| google_cloud_auth::credentials::anonymous::Builder::new().build());
                let failed = |e: google_cloud_gax::client_builder::Error| CloudError::Rejected {
                    reason: Reason::InvalidProviderConfig,
                    message: format!("Pub/Sub client for {endpoint}: {e}"),
                };
                // The controller's loop retries with backoff and counts each call; the
                // client's own retries would sleep inside a worker.
                let topics = TopicAdmin::builder()
                    .with_endpoint(endpoint.clone())
                    .with_credentials(credentials.clone())
                    .with_retry_policy(NeverRetry)
                    .build()
                    .await
                    .map_err(failed)?;
                let subscriptions = SubscriptionAdmin::builder()
                    .with_endpoint(endpoint.clone())
                    .with_credentials(credentials)
                    .with_retry_policy(NeverRetry)
                    .build()
                    .await
                    .map_err(failed)?;
                Ok::<_, CloudError>(Admin { topics, subscriptions })
            })
            .await?;
        Ok(admin.clone())
    }

    /// `projects/<project>/<collection>/<name>`.
    pub(crate) fn path(&self, collection: &str, name: &str) -> String {
        format!("projects/{}/{collection}/{name}", self.id)
    }

    /// Runs one Pub/Sub call: counted, bounded in time, its error sorted into retry-later or
    /// needs-a-human with the gRPC code kept for the caller to match on.
    pub(crate) async fn pubsub_call<T>(
        &self,
        operation: &str,
        name: &str,
        request: impl Future<Output = google_cloud_pubsub::Result<T>>,
    ) -> Result<T, PubsubFailed> {
        (self.observer)(Service::Pubsub.as_str(), operation);
        self.budget.spend();
        match tokio::time::timeout(OPERATION_TIMEOUT, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let failed = PubsubFailed::from_error(operation, name, &e);
                if failed.code == Some(Code::ResourceExhausted) {
                    self.budget.throttled();
                }
                Err(failed)
            }
            Err(_) => Err(PubsubFailed {
                code: None,
                error: CloudError::transient(format!(
                    "{operation} {name}: no answer from Pub/Sub within {}s",
                    OPERATION_TIMEOUT.as_secs()
                )),
            }),
        }
    }
}

/// A failed Pub/Sub call: the error the controller acts on, and the gRPC code.
#[derive(Debug)]
pub(crate) struct PubsubFailed {
    pub code: Option<Code>,
    pub error: CloudError,
}

impl From<PubsubFailed> for CloudError {
    fn from(f: PubsubFailed) -> Self {
        f.error
    }
}

impl PubsubFailed {
    fn from_error(operation: &str, name: &str, e: &google_cloud_pubsub::Error) -> Self {
        let code = e.status().map(|s| s.code);
        let detail = match e.status() {
            Some(status) => format!("{:?}: {}", status.code, status.message),
            None => e.to_string(),
        };
        let message = format!("{operation} {name}: {detail}");
        let error = if e.is_authentication() {
            CloudError::Transient {
                reason: Reason::AccessDenied,
                message: format!("{message}; check the ProviderConfig's credentials"),
                retry_after: None,
            }
        } else {
            match code {
                Some(code) => classify(code, message),
                // Transport, timeout, an answer that could not be read: passing.
                None => CloudError::transient(message),
            }
        };
        Self { code, error }
    }
}

fn classify(code: Code, message: String) -> CloudError {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => CloudError::Transient {
            reason: Reason::AccessDenied,
            message: format!(
                "{message}; check the ProviderConfig's credentials and the roles granted to that identity"
            ),
            retry_after: None,
        },
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::Unimplemented => {
            CloudError::Rejected {
                reason: Reason::CloudRejected,
                message,
            }
        }
        // NotFound here is a race (the next observe sorts it out); AlreadyExists is matched by
        // the callers that expect it; the rest are the service's passing troubles.
        _ => CloudError::transient(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_say_retry_or_not() {
        assert!(classify(Code::Unavailable, "x".into()).is_retryable());
        assert!(classify(Code::NotFound, "x".into()).is_retryable());
        assert_eq!(
            classify(Code::PermissionDenied, "x".into()).reason(),
            Reason::AccessDenied
        );
        let rejected = classify(Code::InvalidArgument, "x".into());
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.reason(), Reason::CloudRejected);
    }
}
