//! The Bigtable table admin API of one project over gRPC (a generated tonic client), with
//! our own token injection and error classification.

use std::future::Future;

use cloudkit_crds::reason::Reason;
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient;
use tonic::Code;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::{CONNECT_TIMEOUT, OPERATION_TIMEOUT, Project, REQUEST_TIMEOUT, Service};
use crate::CloudError;

pub(crate) type Admin = BigtableTableAdminClient<Channel>;

impl Project {
    /// The Bigtable table admin client; its channel is made at first use and kept.
    pub(crate) async fn bigtable(&self) -> Result<Admin, CloudError> {
        let channel = self
            .bigtable
            .get_or_try_init(|| async {
                let url = self.endpoint(Service::Bigtable)?;
                let invalid = |e: tonic::transport::Error| CloudError::Rejected {
                    reason: Reason::InvalidProviderConfig,
                    message: format!("Bigtable endpoint {url}: {e}"),
                };
                let mut endpoint = Endpoint::from_shared(url.clone())
                    .map_err(invalid)?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT);
                if url.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_native_roots())
                        .map_err(invalid)?;
                }
                // Connects at the first call, so an endpoint that is down is a call's error
                // (retried) rather than a client that can never be built.
                Ok::<_, CloudError>(endpoint.connect_lazy())
            })
            .await?;
        Ok(BigtableTableAdminClient::new(channel.clone()))
    }

    /// A request carrying the credentials' authorization headers (none when anonymous).
    pub(crate) async fn bigtable_request<M>(&self, message: M) -> Result<tonic::Request<M>, CloudError> {
        let mut request = tonic::Request::new(message);
        for (name, value) in self.auth_headers().await?.iter() {
            let key = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes());
            let value = tonic::metadata::MetadataValue::try_from(value.as_bytes());
            if let (Ok(key), Ok(value)) = (key, value) {
                request.metadata_mut().insert(key, value);
            }
        }
        Ok(request)
    }

    /// Runs one Bigtable admin call: counted, bounded in time, its error sorted into
    /// retry-later or needs-a-human with the gRPC code kept for the caller to match on.
    pub(crate) async fn bigtable_call<T>(
        &self,
        operation: &str,
        name: &str,
        request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, BigtableFailed> {
        (self.observer)(Service::Bigtable.as_str(), operation);
        self.budget.spend();
        match tokio::time::timeout(OPERATION_TIMEOUT, request).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                if status.code() == Code::ResourceExhausted {
                    self.budget.throttled();
                }
                Err(BigtableFailed {
                    code: Some(status.code()),
                    error: classify(
                        status.code(),
                        format!("{operation} {name}: {:?}: {}", status.code(), status.message()),
                    ),
                })
            }
            Err(_) => Err(BigtableFailed {
                code: None,
                error: CloudError::transient(format!(
                    "{operation} {name}: no answer from Bigtable within {}s",
                    OPERATION_TIMEOUT.as_secs()
                )),
            }),
        }
    }
}

/// A failed Bigtable call: the error the controller acts on, and the gRPC code.
#[derive(Debug)]
pub(crate) struct BigtableFailed {
    pub code: Option<Code>,
    pub error: CloudError,
}

impl From<BigtableFailed> for CloudError {
    fn from(f: BigtableFailed) -> Self {
        f.error
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
        // NotFound is a race here (callers match on it where they expect it); the rest
        // (Unavailable, transport errors as Unknown, ...) pass.
        _ => CloudError::transient(message),
    }
}
