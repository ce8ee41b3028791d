//! `ProviderConfig`: which cloud, where, and as whom.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, DriftPolicy};

/// The clouds CloudKit speaks to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Azure,
    Gcp,
}

impl Cloud {
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
        }
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where credentials come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CredentialsSource {
    /// A Secret in the ProviderConfig's namespace (see `secretRef`).
    Secret,
    /// The controller's environment (AWS: the SDK default chain).
    #[default]
    Environment,
    /// The pod's workload identity (AWS: IRSA web identity; Azure/GCP: workload identity).
    WorkloadIdentity,
    /// No credentials at all: only for GCP emulators, so only with `gcp.endpoints` set
    /// (a service without an override is refused rather than called unauthenticated).
    Anonymous,
}

/// A key set in a Secret of the ProviderConfig's namespace.
///
/// AWS reads `accessKeyId`, `secretAccessKey` and optionally `sessionToken`. Azure reads
/// `accountKey` (the storage account's shared key, base64 as the portal shows it), or
/// `sasToken` (an account SAS allowing the blob, queue and table services, with or without
/// the leading `?`), or an Entra ID service principal: `clientSecret` with `tenantId` and
/// `clientId` (each may come from `spec.azure` instead). With several, the first in that
/// order is used. GCP reads `serviceAccountKey`: a service account's JSON key file, as
/// downloaded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    #[serde(default)]
    pub source: CredentialsSource,
    /// Required when `source` is `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// When to compute request checksums on S3 calls; some S3-compatible stores reject them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ChecksumMode {
    #[default]
    WhenSupported,
    WhenRequired,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProviderSettings {
    /// S3 request checksums; `WhenRequired` for MinIO, R2 and similar stores.
    #[serde(default)]
    pub request_checksum_calculation: ChecksumMode,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureProviderSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Storage account holding containers, queues and tables (required on Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account: Option<String>,
    /// Per-service endpoint overrides (Azurite, sovereign clouds, private endpoints); each
    /// defaults to `https://<storageAccount>.<service>.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<AzureEndpoints>,
    /// Entra ID tenant (directory) ID, for a service principal or workload identity; a
    /// `tenantId` in the Secret, or `AZURE_TENANT_ID` for workload identity, is used when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Entra ID application (client) ID, as for `tenantId`: lets ProviderConfigs in one
    /// controller act as different applications federated with its service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Where Entra ID tokens are requested, for sovereign clouds
    /// (`https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`); defaults to
    /// `AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com`. Must be https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
}

/// Where each Azure Storage service of the account answers. With path-style addresses
/// (Azurite) include the account: `http://127.0.0.1:10000/devstoreaccount1`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureEndpoints {
    /// Blob service (Buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// Queue service (Queues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Table service (Tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpProviderSettings {
    /// Project holding buckets, topics, subscriptions and Bigtable tables (required on GCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Where new buckets are made, e.g. `europe-west1`, `EU` or `US` (the default). Fixed
    /// per bucket once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Per-service endpoint overrides (emulators, private endpoints); each defaults to
    /// Google's public endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<GcpEndpoints>,
}

/// Where each GCP service answers. The emulators each listen on their own port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpEndpoints {
    /// Cloud Storage JSON API (Buckets), e.g. `http://127.0.0.1:4443` for an emulator;
    /// default `https://storage.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Pub/Sub (Topics, Queues), e.g. `http://127.0.0.1:8085`; default
    /// `https://pubsub.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<String>,
    /// Bigtable admin (Tables), e.g. `http://127.0.0.1:8086`; default
    /// `https://bigtableadmin.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigtable: Option<String>,
}

impl GcpEndpoints {
    /// Each override set, by service name.
    pub fn overrides(&self) -> Vec<(&'static str, &str)> {
        [
            ("storage", &self.storage),
            ("pubsub", &self.pubsub),
            ("bigtable", &self.bigtable),
        ]
        .into_iter()
        .filter_map(|(service, url)| url.as_deref().map(|u| (service, u)))
        .collect()
    }
}

/// Which cloud, region, credentials and endpoint managed resources use.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cloudkit.dev",
    version = "v1alpha1",
    kind = "ProviderConfig",
    namespaced,
    status = "ProviderConfigStatus",
    shortname = "ckpc",
    category = "cloudkit",
    doc = "Which cloud, region, credentials and endpoint CloudKit resources use.",
    printcolumn(name = "PROVIDER", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "REGION", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "ENDPOINT", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    pub provider: Cloud,
    /// Region for AWS resources (e.g. `eu-west-1`); defaults to `us-east-1`. Not for GCP:
    /// use `gcp.location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub credentials: Credentials,
    /// Endpoint override, e.g. `http://localstack:4566` or a MinIO URL. Not for Azure or GCP,
    /// whose services each have their own: use `azure.endpoints` / `gcp.endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How often resources are re-observed to find drift, e.g. `30s`, `10m`, `1h`.
    /// Defaults to `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_interval: Option<String>,
    /// `driftPolicy` for the objects using this ProviderConfig that set none: `Correct`
    /// (the default), `Report` or `Ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_policy: Option<DriftPolicy>,
    /// A budget for the requests every resource using this ProviderConfig sends to the
    /// cloud, shared by all kinds (an account's quota is per account, not per controller).
    /// Unset: no limit, but throttling answers still slow this ProviderConfig down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProviderSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureProviderSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpProviderSettings>,
}

/// A token bucket: `requestsPerSecond` on average, up to `burst` at once. A throttling
/// answer from the cloud (HTTP 429, S3 `SlowDown`, `Throttling*`, gRPC `RESOURCE_EXHAUSTED`)
/// halves the rate, which then recovers by a tenth a second.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests a second, retries included, at least 1.
    pub requests_per_second: u32,
    /// Requests that may go at once after a quiet spell; defaults to `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests_per_second)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Since when this generation has failed for a reason that usually heals by itself (its
    /// Secret not there yet, users still there on delete); once older than the controller's
    /// `--stall-after` it is reported `Stalled`. Cleared when it is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
}
