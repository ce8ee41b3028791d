#![forbid(unsafe_code)]
//! Cloud backends. Each kind has a module holding its portable state (what `observe`
//! returns and what the manifest asks for) and a `backend` function picking the cloud's
//! implementation; each cloud lives in its own module behind a Cargo feature.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod bucket;
pub mod error;
pub mod function;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(any(feature = "azure", feature = "gcp"))]
mod https;
pub mod queue;
pub mod rate_budget;
pub mod table;
pub mod topic;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use cloudkit_crds::common::{Kind, ManagedStatus, Tags};
use cloudkit_crds::provider_config::{AwsProviderSettings, AzureProviderSettings, GcpProviderSettings, RateLimit};
use cloudkit_crds::{Cloud, Reference};
use cloudkit_drift::FieldDiff;
use serde::Serialize;

pub use error::CloudError;

/// Credentials read from a ProviderConfig's Secret, or a marker to use the ambient ones.
#[derive(Clone, PartialEq, Eq)]
pub enum ResolvedCredentials {
    /// Keys from a Secret.
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// An Azure storage account's shared key (base64), signing each request.
    AzureSharedKey { account: String, key: String },
    /// An Azure SAS token (the query string, without `?`), appended to each request.
    AzureSas { token: String },
    /// An Entra ID service principal: a bearer token got with its client secret.
    AzureClientSecret {
        tenant_id: String,
        client_id: String,
        secret: String,
    },
    /// Entra ID workload identity: the pod's federated service-account token
    /// (`AZURE_FEDERATED_TOKEN_FILE`) exchanged for a bearer token; IDs left `None` come
    /// from `AZURE_TENANT_ID` / `AZURE_CLIENT_ID`.
    AzureWorkloadIdentity {
        tenant_id: Option<String>,
        client_id: Option<String>,
    },
    /// A GCP service account's JSON key file.
    GcpServiceAccount { key: String },
    /// No credentials (GCP emulators only; validation requires an endpoint override).
    Anonymous,
    /// The environment or the pod's workload identity, found by the cloud SDK's default chain.
    Ambient,
}

// Secrets must never reach a log line through `{:?}`.
impl fmt::Debug for ResolvedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static { access_key_id, .. } => write!(f, "Static({access_key_id}, <redacted>)"),
            Self::AzureSharedKey { account, .. } => write!(f, "AzureSharedKey({account}, <redacted>)"),
            Self::AzureSas { .. } => f.write_str("AzureSas(<redacted>)"),
            Self::AzureClientSecret {
                tenant_id, client_id, ..
            } => {
                write!(f, "AzureClientSecret({tenant_id}, {client_id}, <redacted>)")
            }
            Self::AzureWorkloadIdentity { tenant_id, client_id } => {
                write!(f, "AzureWorkloadIdentity({tenant_id:?}, {client_id:?})")
            }
            Self::GcpServiceAccount { .. } => f.write_str("GcpServiceAccount(<redacted>)"),
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Ambient => f.write_str("Ambient"),
        }
    }
}

/// A ProviderConfig with its credentials resolved: all a backend needs to reach a cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderContext {
    /// Identifies the ProviderConfig (`namespace/name`), so clients can be reused across reconciles.
    pub key: String,
    pub cloud: Cloud,
    pub region: String,
    pub endpoint: Option<String>,
    pub credentials: ResolvedCredentials,
    pub aws: AwsProviderSettings,
    pub azure: AzureProviderSettings,
    pub gcp: GcpProviderSettings,
    /// The Bigtable instance of the object being reconciled (`spec.gcp.instance` of a
    /// Table), set by the controller; `None` for every other object.
    pub gcp_instance: Option<String>,
    /// The ProviderConfig's request budget (`rate_budget`); `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
}

impl ProviderContext {
    /// Where resources made through this context live, for `status.provider`: the cloud and
    /// its region, Azure storage account or GCP project, and the endpoint if overridden.
    /// Credentials are not part of it: new keys for the same place are no move.
    pub fn target(&self) -> String {
        let place = match self.cloud {
            Cloud::Aws => format!("aws region {}", self.region),
            Cloud::Azure => format!(
                "azure account {}",
                self.azure.storage_account.as_deref().unwrap_or("(unset)")
            ),
            Cloud::Gcp => match &self.gcp_instance {
                Some(instance) => format!(
                    "gcp project {} instance {instance}",
                    self.gcp.project.as_deref().unwrap_or("(unset)")
                ),
                None => format!("gcp project {}", self.gcp.project.as_deref().unwrap_or("(unset)")),
            },
        };
        // Azure's and GCP's services each have an endpoint; any override moves the resources.
        let endpoint = match (&self.endpoint, &self.azure.endpoints, &self.gcp.endpoints) {
            (Some(endpoint), _, _) => Some(endpoint.clone()),
            (None, Some(e), _) if self.cloud == Cloud::Azure => {
                let parts: Vec<String> = [("blob", &e.blob), ("queue", &e.queue), ("table", &e.table)]
                    .into_iter()
                    .filter_map(|(service, url)| url.as_ref().map(|u| format!("{service} {u}")))
                    .collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            }
            (None, _, Some(e)) if self.cloud == Cloud::Gcp => {
                let parts: Vec<String> = e.overrides().iter().map(|(s, u)| format!("{s} {u}")).collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            }
            _ => None,
        };
        match endpoint {
            Some(endpoint) => format!("{place} at {endpoint}"),
            None => place,
        }
    }
}

/// What a resource exposes to users and to other resources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub arn: Option<String>,
    pub url: Option<String>,
    pub id: Option<String>,
    /// What only this kind has, by name (a table's `streamArn`).
    pub extra: BTreeMap<String, String>,
}

/// The live state of a cloud resource, as `observe` found it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed<S> {
    pub state: S,
    pub outputs: Outputs,
    /// Why the resource cannot be used or changed yet (a table still CREATING, a function
    /// Pending), or `None` when it is settled. The controller waits and looks again.
    pub pending: Option<String>,
}

impl<S> Observed<S> {
    /// A resource that is settled and ready for use.
    pub fn ready(state: S, outputs: Outputs) -> Self {
        Self {
            state,
            outputs,
            pending: None,
        }
    }
}

/// The status of every object a spec references, as the controller found them Ready;
/// desired states read their outputs (a dead-letter queue's ARN, a bucket's name) here.
#[derive(Clone, Debug, Default)]
pub struct Dependencies(BTreeMap<(Kind, String), ManagedStatus>);

impl Dependencies {
    pub fn insert(&mut self, kind: Kind, name: &str, status: ManagedStatus) {
        self.0.insert((kind, name.to_owned()), status);
    }

    pub fn status(&self, kind: Kind, name: &str) -> Option<&ManagedStatus> {
        self.0.get(&(kind, name.to_owned()))
    }

    /// The ARN of a referenced object, or a message saying which output is missing.
    pub fn arn(&self, reference: &Reference) -> Result<String, String> {
        self.status(reference.kind, &reference.name)
            .and_then(|s| s.arn.clone())
            .ok_or_else(|| format!("{}/{} has no ARN in its status yet", reference.kind, reference.name))
    }
}

/// The tag by which a resource names the object that manages it, as
/// `<cluster>/<namespace>/<kind>/<name>`: a resource carrying another object's is left alone.
pub const OWNER_TAG: &str = "cloudkit.dev/owner";

/// How a resource records which object manages it: one entry of its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerTag {
    pub key: String,
    pub value: String,
}

/// States carry the resource's tags (labels, metadata), where the owner is recorded.
pub trait Tagged {
    fn tags(&self) -> &Tags;
    fn tags_mut(&mut self) -> &mut Tags;
}

/// Keys of a map-valued field, by field (`tags`, `env`, …).
pub type SharedKeys = BTreeMap<String, std::collections::BTreeSet<String>>;

/// Map-valued fields others write to as well — tags (AWS Backup, tag policies), a Lambda's
/// environment (tracing tools), a topic's subscriptions (other teams' queues), a function's
/// queue triggers — of which CloudKit manages only the keys it set.
pub trait SharedMaps {
    /// Each shared field (named as in the diff) and the keys this state holds in it.
    fn shared_keys(&self) -> SharedKeys;
    /// Copies into this state the entries of `observed` it lacks that `foreign(field, key)`
    /// says CloudKit does not manage, so the diff never sees them and an update that
    /// replaces the whole map writes them back as they were.
    fn keep_foreign(&mut self, observed: &Self, foreign: &dyn Fn(&str, &str) -> bool);
}

fn copy_foreign<V: Clone>(
    field: &str,
    desired: &mut BTreeMap<String, V>,
    observed: &BTreeMap<String, V>,
    foreign: &dyn Fn(&str, &str) -> bool,
) {
    for (key, value) in observed {
        if !desired.contains_key(key) && foreign(field, key) {
            desired.insert(key.clone(), value.clone());
        }
    }
}

macro_rules! shared_maps {
    ($($state:ty { $($field:literal => $member:ident),* }),* $(,)?) => {$(
        impl SharedMaps for $state {
            fn shared_keys(&self) -> SharedKeys {
                SharedKeys::from([$(($field.to_owned(), self.$member.keys().cloned().collect())),*])
            }
            fn keep_foreign(&mut self, observed: &Self, foreign: &dyn Fn(&str, &str) -> bool) {
                $(copy_foreign($field, &mut self.$member, &observed.$member, foreign);)*
            }
        }
    )*};
}
shared_maps!(
    bucket::BucketState { "tags" => tags },
    table::TableState { "tags" => tags },
    queue::QueueState { "tags" => tags },
    topic::TopicState { "tags" => tags, "subscriptions" => subscriptions },
    function::FunctionState { "tags" => tags, "env" => env, "queueTriggers" => queue_triggers },
);

/// Observed values that name what the desired ones do in another spelling — ones only
/// the pair can tell apart, such as a KMS key ID and its ARN — rewritten to the desired
/// spelling before the one diff (`cloudkit_drift::normalize` holds the rules). Rules that
/// need one side only are applied where each side is built.
pub trait Normalize {
    fn normalize_to(&mut self, _desired: &Self) {}
}

impl Normalize for bucket::BucketState {
    fn normalize_to(&mut self, desired: &Self) {
        self.encryption_key_id =
            cloudkit_drift::normalize::kms_key(desired.encryption_key_id.as_deref(), self.encryption_key_id.as_deref());
    }
}
impl Normalize for table::TableState {}
impl Normalize for queue::QueueState {}
impl Normalize for topic::TopicState {}
impl Normalize for function::FunctionState {}

/// Implements `Tagged` for states whose `tags` field holds the resource's own tags.
macro_rules! tagged {
    ($($state:ty),* $(,)?) => {$(
        impl $crate::Tagged for $state {
            fn tags(&self) -> &cloudkit_crds::common::Tags {
                &self.tags
            }
            fn tags_mut(&mut self) -> &mut cloudkit_crds::common::Tags {
                &mut self.tags
            }
        }
    )*};
}
tagged!(
    bucket::BucketState,
    table::TableState,
    queue::QueueState,
    topic::TopicState,
    function::FunctionState,
);

/// One kind on one cloud. The controller owns the loop; a backend only talks to the cloud.
///
/// `create` makes the bare resource; the controller then observes it and converges every
/// setting through `update`, so settings have one code path whether new or drifted.
/// Every method must be safe to repeat after a crash or retry.
#[async_trait]
pub trait ExternalResource: Send + Sync {
    type State: Serialize + Clone + fmt::Debug + Send + Sync + Tagged + Normalize + SharedMaps;

    /// The live state, or `None` when the resource does not exist.
    async fn observe(&self, name: &str) -> Result<Option<Observed<Self::State>>, CloudError>;
    /// Creates the resource; succeeding when it already exists and is ours.
    async fn create(&self, name: &str, desired: &Self::State) -> Result<(), CloudError>;
    /// Converges the fields listed in `diffs` to `desired`.
    async fn update(&self, name: &str, desired: &Self::State, diffs: &[FieldDiff]) -> Result<(), CloudError>;
    /// Deletes the resource; succeeding when it is already gone.
    async fn delete(&self, name: &str) -> Result<(), CloudError>;

    /// State fields (top-level names, as in the spec) the cloud fixes at creation. A diff
    /// there stalls with `ImmutableFieldChanged` instead of being applied.
    fn immutable(&self) -> &'static [&'static str] {
        &[]
    }

    /// State fields the cloud does not store (Azure Table storage keeps no key schema), or
    /// paths below one that CloudKit does not compare (Pub/Sub's owner label, see
    /// `gcp::OWNER_LABEL_UNCOMPARED`): never compared, so never drift. Validation refuses any
    /// value the cloud would not honour.
    fn unobserved(&self) -> &'static [&'static str] {
        &[]
    }

    /// The tag recording `owner` (`<cluster>/<namespace>/<kind>/<name>`) on this cloud.
    /// Clouds whose keys or values cannot hold it as written override this.
    fn owner_tag(&self, owner: &str) -> OwnerTag {
        OwnerTag {
            key: OWNER_TAG.to_owned(),
            value: owner.to_owned(),
        }
    }

    /// Whether an update leaves the resource busy for a while (DynamoDB UPDATING, Lambda
    /// InProgress): the controller then observes again before calling it Ready.
    fn settles_async(&self) -> bool {
        false
    }
}

/// Told the service and operation of every request sent to a cloud, retries included, so
/// that the controller can count what each kind costs.
pub type CallObserver = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Long-lived cloud clients shared by every reconcile.
pub struct Clouds {
    /// One request budget per ProviderConfig, drawn on by every cloud's transport.
    pub budgets: std::sync::Arc<rate_budget::RateBudgets>,
    #[cfg(feature = "aws")]
    pub aws: aws::Clients,
    #[cfg(feature = "azure")]
    pub azure: azure::Clients,
    #[cfg(feature = "gcp")]
    pub gcp: gcp::Clients,
}

impl Clouds {
    #[cfg_attr(
        not(any(feature = "aws", feature = "azure", feature = "gcp")),
        allow(unused_variables)
    )]
    pub fn new(observer: CallObserver, on_throttle: rate_budget::ThrottleObserver) -> Self {
        let budgets = std::sync::Arc::new(rate_budget::RateBudgets::new(on_throttle));
        Self {
            #[cfg(feature = "aws")]
            aws: aws::Clients::new(observer.clone(), budgets.clone()),
            #[cfg(feature = "azure")]
            azure: azure::Clients::new(observer.clone(), budgets.clone()),
            #[cfg(feature = "gcp")]
            gcp: gcp::Clients::new(observer, budgets.clone()),
            budgets,
        }
    }

    /// Lets go of what was kept for a deleted ProviderConfig (`namespace/name`): its clients
    /// and its budget, so the caches hold only ProviderConfigs that exist.
    pub fn forget(&self, key: &str) {
        self.budgets.forget(key);
        #[cfg(feature = "aws")]
        self.aws.forget(key);
        #[cfg(feature = "azure")]
        self.azure.forget(key);
        #[cfg(feature = "gcp")]
        self.gcp.forget(key);
    }
}
