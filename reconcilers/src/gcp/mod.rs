//! GCP: one project per ProviderConfig. Cloud Storage is reached over its JSON API by a thin
//! client of ours on the shared reqwest client, Pub/Sub by the official `google-cloud-pubsub`
//! (gRPC); credentials come from the official
//! `google-cloud-auth` (a service account key, application default credentials / workload
//! identity, or none for an emulator).
//!
//! Why not a storage crate: see docs/gcp.md ("Why these crates").

mod bigtable;
pub mod bucket;
mod pubsub;
pub mod queue;
pub mod table;
pub mod topic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudkit_crds::common::Tags;
use cloudkit_crds::reason::Reason;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::causes;
use crate::rate_budget::{Budget, RateBudgets};
use crate::{CallObserver, CloudError, OwnerTag, ProviderContext, ResolvedCredentials};

/// An endpoint that accepts a connection and never answers must not hold a worker.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Each request; no retries inside (the controller's loop retries with backoff).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Each call, token fetch included.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Where buckets go when the ProviderConfig names no location: GCS's own default.
pub const DEFAULT_LOCATION: &str = "US";

/// The GCP services CloudKit uses, each at its own endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Storage,
    Pubsub,
    Bigtable,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Storage => "storage",
            Service::Pubsub => "pubsub",
            Service::Bigtable => "bigtable",
        }
    }

    fn default_endpoint(self) -> &'static str {
        match self {
            Service::Storage => "https://storage.googleapis.com",
            Service::Pubsub => "https://pubsub.googleapis.com",
            Service::Bigtable => "https://bigtableadmin.googleapis.com",
        }
    }
}

/// A project as one ProviderConfig reaches it.
pub struct Project {
    pub id: String,
    /// Where new buckets are made (uppercase, as GCS reports it).
    pub location: String,
    endpoints: HashMap<&'static str, String>,
    /// `None`: anonymous, only allowed towards an endpoint override.
    credentials: Option<Credentials>,
    http: Arc<reqwest::Client>,
    /// Pub/Sub admin clients, made at first use.
    pubsub: tokio::sync::OnceCell<pubsub::Admin>,
    /// The Bigtable admin channel, made at first use.
    bigtable: tokio::sync::OnceCell<tonic::transport::Channel>,
    observer: CallObserver,
    /// The ProviderConfig's request budget: each call spends, a throttling answer slows it.
    pub(crate) budget: Arc<Budget>,
}

impl Project {
    /// The service's endpoint, without a trailing slash; refused when the credentials are
    /// anonymous and the endpoint is Google's own (it would answer 401 to every call).
    pub fn endpoint(&self, service: Service) -> Result<String, CloudError> {
        match self.endpoints.get(service.as_str()) {
            Some(url) => Ok(url.trim_end_matches('/').to_owned()),
            None if self.credentials.is_none() => Err(CloudError::Rejected {
                reason: Reason::InvalidProviderConfig,
                message: format!(
                    "credentials source Anonymous reaches emulators only, and spec.gcp.endpoints.{} is not set: \
                     set it, or use a serviceAccountKey Secret or ambient credentials",
                    service.as_str()
                ),
            }),
            None => Ok(service.default_endpoint().to_owned()),
        }
    }

    /// The authorization headers for a call (none when anonymous).
    async fn auth_headers(&self) -> Result<http::HeaderMap, CloudError> {
        let Some(credentials) = &self.credentials else {
            return Ok(http::HeaderMap::new());
        };
        match credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            // Only returned when the caller passes an entity tag, which we never do.
            Ok(CacheableResource::NotModified) => Ok(http::HeaderMap::new()),
            Err(e) if e.is_transient() => Err(CloudError::Transient {
                reason: Reason::ProviderError,
                message: format!("getting a GCP access token: {e}"),
                retry_after: None,
            }),
            Err(e) => Err(CloudError::Transient {
                // Someone may fix the key or the identity outside Kubernetes at any time.
                reason: Reason::AccessDenied,
                message: format!(
                    "getting a GCP access token: {e}; check the ProviderConfig's credentials (serviceAccountKey, \
                     or the pod's workload identity)"
                ),
                retry_after: None,
            }),
        }
    }

    /// One JSON API call to Cloud Storage: counted, bounded in time, its error sorted into
    /// retry-later or needs-a-human, with the status and GCS reason kept for the caller.
    /// Returns the response body (`Value::Null` when empty).
    pub(crate) async fn storage(
        &self,
        operation: &str,
        name: &str,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failed> {
        (self.observer)(Service::Storage.as_str(), operation);
        self.budget.spend();
        let call = async {
            let base = self.endpoint(Service::Storage).map_err(Failed::from)?;
            let headers = self.auth_headers().await.map_err(Failed::from)?;
            let mut url = url::Url::parse(&format!("{base}/storage/v1/{path}")).map_err(|e| {
                Failed::from(CloudError::Rejected {
                    reason: Reason::InvalidProviderConfig,
                    message: format!("{operation} {name}: the storage endpoint '{base}' is not a URL: {e}"),
                })
            })?;
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
            // JSON by hand: reqwest's `json`/`query` features are not ours to rely on.
            let mut request = self.http.request(method, url).headers(headers);
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let response = request
                .send()
                .await
                .map_err(|e| Failed::from(CloudError::transient(format!("{operation} {name}: {}", causes(&e)))))?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(|e| {
                Failed::from(CloudError::transient(format!(
                    "{operation} {name}: reading the answer: {e}"
                )))
            })?;
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| {
                    Failed::from(CloudError::transient(format!(
                        "{operation} {name}: the answer is not JSON: {e}"
                    )))
                });
            }
            if status == 429 || status == 503 {
                self.budget.throttled();
            }
            Err(Failed::from_status(operation, name, status, &text))
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(Failed::from(CloudError::transient(format!(
                "{operation} {name}: no answer from the storage service within {}s",
                OPERATION_TIMEOUT.as_secs()
            )))),
        }
    }
}

/// One project per ProviderConfig, rebuilt when its settings change.
pub struct Clients {
    /// Shared by every project; an error (no TLS setup) is reported by each GCP resource.
    http: Result<Arc<reqwest::Client>, String>,
    projects: Mutex<HashMap<String, (ProviderContext, Arc<Project>)>>,
    observer: CallObserver,
    budgets: Arc<RateBudgets>,
}

impl Clients {
    pub fn new(observer: CallObserver, budgets: Arc<RateBudgets>) -> Self {
        // google-cloud-auth is built without its default aws-lc provider (kube uses ring; two
        // providers make rustls panic) and signs service account tokens with the process
        // default provider, which must therefore be installed. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: crate::https::client("GCP", CONNECT_TIMEOUT, REQUEST_TIMEOUT).map(Arc::new),
            projects: Mutex::new(HashMap::new()),
            observer,
            budgets,
        }
    }

    /// The project for a ProviderContext, built once per version of its settings (so its
    /// credentials cache their token across reconciles).
    pub fn project(&self, ctx: &ProviderContext) -> Result<Arc<Project>, CloudError> {
        // One project (clients, token cache) for every object of the ProviderConfig, wherever
        // inside it the object's resource lives.
        let mut shared = ctx.clone();
        shared.gcp_instance = None;
        if let Some((seen, project)) = self.lock().get(&ctx.key)
            && *seen == shared
        {
            return Ok(project.clone());
        }
        let project = Arc::new(self.build(&shared)?);
        self.lock().insert(ctx.key.clone(), (shared, project.clone()));
        Ok(project)
    }

    fn build(&self, ctx: &ProviderContext) -> Result<Project, CloudError> {
        let invalid = |message: String| CloudError::Rejected {
            reason: Reason::InvalidProviderConfig,
            message,
        };
        // Validation of the ProviderConfig requires it; checked again so no call goes out
        // for an empty project.
        let id = ctx
            .gcp
            .project
            .clone()
            .ok_or_else(|| invalid("spec.gcp.project is required with provider gcp".into()))?;
        let credentials = match &ctx.credentials {
            ResolvedCredentials::GcpServiceAccount { key } => {
                let json: Value = serde_json::from_str(key).map_err(|_| CloudError::Rejected {
                    reason: Reason::CredentialsInvalid,
                    message: "the Secret's serviceAccountKey is not JSON: store the service account's key file as \
                              downloaded"
                        .into(),
                })?;
                let built = google_cloud_auth::credentials::service_account::Builder::new(json)
                    .build()
                    .map_err(|e| CloudError::Rejected {
                        reason: Reason::CredentialsInvalid,
                        message: format!("the Secret's serviceAccountKey is not a service account key: {e}"),
                    })?;
                Some(built)
            }
            // Application default credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's own
            // login, or the metadata server (GKE workload identity).
            ResolvedCredentials::Ambient => Some(google_cloud_auth::credentials::Builder::default().build().map_err(
                |e| CloudError::Transient {
                    reason: Reason::CredentialsNotFound,
                    message: format!("no GCP application default credentials: {e}"),
                    retry_after: None,
                },
            )?),
            ResolvedCredentials::Anonymous => None,
            ResolvedCredentials::Static { .. }
            | ResolvedCredentials::AzureSharedKey { .. }
            | ResolvedCredentials::AzureSas { .. }
            | ResolvedCredentials::AzureClientSecret { .. }
            | ResolvedCredentials::AzureWorkloadIdentity { .. } => {
                return Err(CloudError::Rejected {
                    reason: Reason::CredentialsInvalid,
                    message: "GCP needs a serviceAccountKey in the ProviderConfig's Secret, ambient credentials \
                              (Environment / WorkloadIdentity) or, for emulators, Anonymous"
                        .into(),
                });
            }
        };
        let http = self.http.clone().map_err(|message| CloudError::Rejected {
            reason: Reason::InternalError,
            message,
        })?;
        let endpoints = ctx
            .gcp
            .endpoints
            .clone()
            .unwrap_or_default()
            .overrides()
            .into_iter()
            .map(|(service, url)| (service, url.to_owned()))
            .collect();
        Ok(Project {
            id,
            location: ctx
                .gcp
                .location
                .clone()
                .unwrap_or_else(|| DEFAULT_LOCATION.to_owned())
                .to_ascii_uppercase(),
            endpoints,
            credentials,
            http,
            pubsub: tokio::sync::OnceCell::new(),
            bigtable: tokio::sync::OnceCell::new(),
            observer: self.observer.clone(),
            budget: self.budgets.budget(&ctx.key, ctx.rate_limit),
        })
    }

    /// Drops a deleted ProviderConfig's project.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ProviderContext, Arc<Project>)>> {
        // A panic while holding the lock leaves only a cache behind; keep using it.
        self.projects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A failed call: the error the controller acts on, and what the caller may match on.
#[derive(Debug)]
pub(crate) struct Failed {
    pub status: Option<u16>,
    pub error: CloudError,
}

impl From<CloudError> for Failed {
    fn from(error: CloudError) -> Self {
        Self { status: None, error }
    }
}

impl From<Failed> for CloudError {
    fn from(f: Failed) -> Self {
        f.error
    }
}

impl Failed {
    /// From an HTTP error answer: `{"error": {"code", "message", "errors": [...]}}`.
    fn from_status(operation: &str, name: &str, status: u16, body: &str) -> Self {
        let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let detail = parsed["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.chars().take(200).collect());
        let message = format!("{operation} {name}: {detail} (HTTP {status})");
        Self {
            status: Some(status),
            error: classify_status(status, message),
        }
    }
}

fn classify_status(status: u16, message: String) -> CloudError {
    // 404 here means the resource vanished between calls: the next observe sorts it out.
    if status >= 500 || status == 429 || status == 408 || status == 404 {
        CloudError::transient(message)
    } else if status == 401 || status == 403 {
        // Roles and keys change outside Kubernetes (and IAM takes a while to propagate).
        CloudError::Transient {
            reason: Reason::AccessDenied,
            message: format!(
                "{message}; check the ProviderConfig's credentials and the roles granted to that identity"
            ),
            retry_after: None,
        }
    } else {
        CloudError::Rejected {
            reason: Reason::CloudRejected,
            message,
        }
    }
}

/// The label recording which object manages a resource. Label keys cannot hold `.` or `/`,
/// so `cloudkit.dev/owner` cannot be one; validation reserves the `cloudkit-` prefix on GCP,
/// so a manifest cannot forge it.
pub const OWNER_LABEL: &str = "cloudkit-owner";

/// The diff path of the owner label, for backends where its absence is no difference.
///
/// Pub/Sub: the owner label is written when CloudKit creates a topic or subscription, and
/// with the labels whenever they are written anyway, but a topic or subscription adopted
/// with `spec.externalName` is not relabelled for it: it is this object's by its
/// external-name record (as a Bigtable table is). Why: the Pub/Sub emulator refuses every
/// label update (`labels is not a known Topic field`), so adoption that needs one can only
/// be proven against Pub/Sub itself, and adopting then needs no update permission when
/// nothing else differs. Another object's label is still read and refused
/// (`OwnedByAnother`), as it is not a diff but the ownership check. docs/gcp.md, "Adoption
/// on Pub/Sub", says what this costs.
pub(crate) const OWNER_LABEL_UNCOMPARED: &[&str] = &["tags.cloudkit-owner"];

/// Label values are at most 63 lowercase letters, digits, `_` and `-`, so the owner
/// (`<cluster>/<namespace>/<kind>/<name>`) is written as a readable part — namespace, kind
/// and name, lowercased, other characters as `-`, cut to 52 — then `-` and the first 10 hex
/// digits of the SHA-256 of the whole owner. The same owner always gives the same value, so
/// comparing values still tells this object's resources from another's; the hash carries
/// the cluster and whatever the cut dropped.
pub(crate) fn owner_tag(owner: &str) -> OwnerTag {
    let readable: String = owner
        .split('/')
        .skip(1)
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .take(52)
        .collect();
    let digest = Sha256::digest(owner.as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    OwnerTag {
        key: OWNER_LABEL.to_owned(),
        value: format!("{readable}-{hash}"),
    }
}

/// Labels as GCS returns them. An emulator may keep a label removed by a patch as `null`
/// (gcp-storage-emulator stores the patch's `"key": null` as is): no value means no label.
pub(crate) fn labels_to_tags(labels: &Value) -> Tags {
    labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The `labels` of a PATCH that makes a resource's labels exactly `desired`: PATCH merges
/// label by label on GCS, so a label to remove is sent as `null`.
pub(crate) fn labels_patch(desired: &Tags, removed: impl IntoIterator<Item = String>) -> Value {
    let mut labels: serde_json::Map<String, Value> = desired
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for key in removed {
        labels.entry(key).or_insert(Value::Null);
    }
    Value::Object(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_label_values_are_legal_stable_and_distinct() {
        let a = owner_tag("prod/team-a/Bucket/assets");
        assert_eq!(a.key, "cloudkit-owner");
        assert_eq!(OWNER_LABEL_UNCOMPARED, [format!("tags.{OWNER_LABEL}")]);
        assert!(a.value.starts_with("team-a-bucket-assets-"), "{}", a.value);
        assert_eq!(a, owner_tag("prod/team-a/Bucket/assets"));
        assert_ne!(
            a.value,
            owner_tag("staging/team-a/Bucket/assets").value,
            "the cluster counts"
        );
        let long = owner_tag(&format!("c/{}/Bucket/{}", "n".repeat(63), "x.y".repeat(80)));
        assert!(long.value.len() <= 63, "{}", long.value.len());
        assert!(
            long.value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
            "{}",
            long.value
        );
    }

    #[test]
    fn null_labels_are_no_labels_and_removed_ones_are_sent_as_null() {
        let labels = serde_json::json!({"team": "a", "gone": null});
        assert_eq!(
            labels_to_tags(&labels),
            Tags::from([("team".to_owned(), "a".to_owned())])
        );
        let patch = labels_patch(&Tags::from([("team".to_owned(), "b".to_owned())]), ["old".to_owned()]);
        assert_eq!(patch, serde_json::json!({"team": "b", "old": null}));
    }

    #[test]
    fn status_codes_say_retry_or_not() {
        assert!(classify_status(503, "x".into()).is_retryable());
        assert_eq!(classify_status(403, "x".into()).reason(), Reason::AccessDenied);
        let rejected = classify_status(400, "x".into());
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.reason(), Reason::CloudRejected);
        let f = Failed::from_status(
            "InsertBucket",
            "b",
            409,
            r#"{"error": {"code": 409, "message": "You already own it.", "errors": [{"reason": "conflict"}]}}"#,
        );
        assert_eq!(f.status, Some(409));
        assert!(f.error.to_string().contains("You already own it. (HTTP 409)"));
    }
}
