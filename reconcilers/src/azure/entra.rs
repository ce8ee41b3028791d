//! Entra ID credentials: a service principal's client secret, the pod's workload identity,
//! or, for `source: Environment`, what the controller's environment offers.
//!
//! The tokens come from `azure_identity`, which caches each and renews it before it
//! expires; its requests go through the same HTTP client (TLS roots, timeouts) as the
//! storage calls, and its own retries are off like theirs.

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use cloudkit_crds::provider_config::AzureProviderSettings;
use cloudkit_crds::reason::Reason;

use crate::{CloudError, ResolvedCredentials};

/// The one audience every storage service (blob, queue, table) accepts.
pub(super) const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// The credential a ProviderConfig's resolved credentials ask for.
pub(super) fn credential(
    credentials: &ResolvedCredentials,
    settings: &AzureProviderSettings,
    http: Arc<reqwest::Client>,
) -> Result<Arc<dyn TokenCredential>, CloudError> {
    let client_options = || {
        let mut options = ClientOptions {
            transport: Some(Transport::new(http.clone())),
            retry: RetryOptions::none(),
            ..Default::default()
        };
        if let Some(host) = &settings.authority_host {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.trim_end_matches('/').to_owned();
            options.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
        }
        options
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let built: azure_core::Result<Arc<dyn TokenCredential>> = match credentials {
        ResolvedCredentials::AzureClientSecret {
            tenant_id,
            client_id,
            secret,
        } => client_secret(tenant_id, client_id, secret, client_options()),
        ResolvedCredentials::AzureWorkloadIdentity { tenant_id, client_id } => {
            workload_identity(tenant_id.clone(), client_id.clone(), client_options())
        }
        // The environment, in the order azure_identity's own chains use: a service principal
        // in AZURE_* variables, then workload identity, then the managed identity.
        ResolvedCredentials::Ambient => {
            let tenant = settings.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID"));
            let client = settings.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
            match (tenant, client, env("AZURE_CLIENT_SECRET")) {
                (Some(tenant), Some(client), Some(secret)) => {
                    client_secret(&tenant, &client, &secret, client_options())
                }
                (tenant, client, _) if env("AZURE_FEDERATED_TOKEN_FILE").is_some() => {
                    workload_identity(tenant, client, client_options())
                }
                (_, client, _) => ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client.map(azure_identity::UserAssignedId::ClientId),
                    client_options: client_options(),
                }))
                .map(|c| c as Arc<dyn TokenCredential>),
            }
        }
        ResolvedCredentials::Static { .. }
        | ResolvedCredentials::AzureSharedKey { .. }
        | ResolvedCredentials::AzureSas { .. }
        | ResolvedCredentials::GcpServiceAccount { .. }
        | ResolvedCredentials::Anonymous => {
            return Err(CloudError::Rejected {
                reason: Reason::InternalError,
                message: "an Entra ID credential was asked for keys that sign requests themselves".into(),
            });
        }
    };
    built.map_err(|e| CloudError::Rejected {
        reason: Reason::CredentialsInvalid,
        message: format!("the Entra ID credential cannot be set up: {e}"),
    })
}

fn client_secret(
    tenant_id: &str,
    client_id: &str,
    secret: &str,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    ClientSecretCredential::new(
        tenant_id,
        client_id.to_owned(),
        Secret::new(secret.to_owned()),
        Some(ClientSecretCredentialOptions { client_options }),
    )
    .map(|c| c as Arc<dyn TokenCredential>)
}

fn workload_identity(
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions { client_options },
        tenant_id,
        client_id,
        ..Default::default()
    }))
    .map(|c| c as Arc<dyn TokenCredential>)
}
