//! Spec and status pieces shared by every managed kind.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "cloudkit.dev";
pub const VERSION: &str = "v1alpha1";

/// Tags (AWS), metadata (Azure) or labels (GCP): one map, mapped by each backend.
pub type Tags = BTreeMap<String, String>;

fn default_provider_config() -> String {
    "default".to_owned()
}

/// Which `ProviderConfig` (in the resource's own namespace) says where and as whom to act.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProviderConfigRef {
    #[serde(default = "default_provider_config")]
    pub name: String,
}

impl Default for ProviderConfigRef {
    fn default() -> Self {
        Self {
            name: default_provider_config(),
        }
    }
}

/// What happens to the cloud resource when the Kubernetes object is deleted. Unset, a
/// resource the object created is deleted and one it adopted (`externalName`) is kept.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the cloud resource, then release the object.
    Delete,
    /// Release the object and leave the cloud resource in place.
    Retain,
}

/// What the controller does when the cloud resource was changed outside CloudKit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DriftPolicy {
    /// Set the fields back to the manifest and report it (`DriftCorrected` Event).
    #[default]
    Correct,
    /// Leave the cloud as it is and report what differs: condition `Drifted=True`,
    /// `status.drift`, a `DriftDetected` Event. A deleted resource is reported
    /// (`ExternalResourceMissing`), not made again.
    Report,
    /// Leave the cloud as it is and say nothing; the resource is observed for its outputs only.
    Ignore,
}

/// A reference to another CloudKit resource in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    pub name: String,
}

/// The managed kinds, as references name them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Kind {
    Bucket,
    Table,
    Queue,
    Topic,
    Function,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bucket => "Bucket",
            Kind::Table => "Table",
            Kind::Queue => "Queue",
            Kind::Topic => "Topic",
            Kind::Function => "Function",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One edge from a spec to another CloudKit object: the object waits until it is Ready.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub kind: Kind,
    pub name: String,
    /// Where in the spec the reference is written, e.g. `spec.deadLetter.queueRef`.
    pub field: String,
}

impl Reference {
    pub fn new(kind: Kind, name: &str, field: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            field: field.into(),
        }
    }
}

/// Fields every managed kind carries at the top of its spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFields {
    /// ProviderConfig to use; defaults to `default` in the same namespace.
    #[serde(default)]
    pub provider_config_ref: ProviderConfigRef,
    /// `Delete` removes the cloud resource with the object; `Retain` keeps it. Unset, a
    /// resource this object created is deleted and one it adopted (`externalName`) is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// What to do about changes made outside CloudKit: `Correct` (default), `Report` or
    /// `Ignore`. A change of the manifest itself is always applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_policy: Option<DriftPolicy>,
    /// Name of the cloud resource. Defaults to `metadata.name`. Set it to adopt an
    /// existing resource. It cannot change once the resource exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// A Secret in the same namespace to write the outputs to (`arn`, `url`, `id`,
    /// `name`, `region`), for applications to mount. It is owned by this object,
    /// updated when the outputs change and deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<LocalRef>,
}

/// Condition as Kubernetes API conventions define it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    /// Absent rather than empty: kube-apiserver 1.20 turns `""` into null on apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One field whose live value differs from the manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct FieldDrift {
    /// When this difference was first seen (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<String>,
    /// Path of the field, e.g. `tags.team`.
    pub field: String,
    /// Wanted value, as JSON.
    pub desired: String,
    /// Live value found in the cloud, as JSON.
    pub observed: String,
}

/// Status of every managed kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStatus {
    /// The `metadata.generation` whose outcome this status reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Name of the cloud resource this object manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Cloud identifier (ARN on AWS, resource ID on Azure/GCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Address clients use to reach the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Provider-side identifier (bucket name, queue URL, function name…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    // Optional rather than an empty map: kube-apiserver 1.20's server-side apply turns a
    // removed map into null, which only a nullable field accepts.
    /// Outputs only this kind has, e.g. a Table's `streamArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, String>>,
    /// Drift found at the last observation and corrected by the controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<FieldDrift>,
    /// Since when this generation has failed for a reason that usually heals by itself
    /// (a ProviderConfig, Secret or dependency not there yet, a cloud error); once older than
    /// the controller's `--stall-after` the object is reported `Stalled`. Cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// When the controller last created, updated or adopted the cloud resource. Quiet
    /// resyncs that find nothing to change leave it (and the whole status) untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// Where the resource lives (cloud, region or account, endpoint), recorded with the
    /// external name: a ProviderConfig pointing elsewhere later is refused, not obeyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}
