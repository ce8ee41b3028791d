//! `Bucket`: object storage (S3 bucket, Azure blob container, GCS bucket).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ManagedFields, Tags};

fn yes() -> bool {
    true
}

/// Encryption at rest. Every cloud encrypts by default with a provider-managed key;
/// `keyId` switches to a customer-managed key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// KMS key ARN or alias (AWS), Key Vault key URI (Azure), Cloud KMS key name (GCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// The four S3 public access block switches, for finer control than `blockPublicAccess`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicAccessBlock {
    #[serde(default)]
    pub block_public_acls: bool,
    #[serde(default)]
    pub ignore_public_acls: bool,
    #[serde(default)]
    pub block_public_policy: bool,
    #[serde(default)]
    pub restrict_public_buckets: bool,
}

/// Settings only S3 has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsBucket {
    /// Overrides `blockPublicAccess` switch by switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
}

/// Who may read a blob container without credentials.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AzurePublicAccess {
    /// Anyone may read blobs by their URL, but not list the container.
    Blob,
    /// Anyone may read blobs and list the container.
    Container,
}

/// Settings only Azure blob containers have.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureBucket {
    /// Encryption scope applied to new blobs. Set when the container is created and fixed
    /// from then on (Azure cannot change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_encryption_scope: Option<String>,
    /// Anonymous read access, only with `blockPublicAccess: false` (which on Azure requires
    /// it: a container is either private or public). The storage account must allow public
    /// access too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access: Option<AzurePublicAccess>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GcsStorageClass {
    #[default]
    Standard,
    Nearline,
    Coldline,
    Archive,
}

/// Settings only GCS buckets have.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpBucket {
    #[serde(default)]
    pub storage_class: GcsStorageClass,
}

managed_kind! {
    kind = "Bucket",
    shortname = "ckbucket",
    doc = "An object storage bucket: S3 on AWS, a blob container on Azure, GCS on GCP.",
    pub struct BucketSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        /// Keep every version of every object.
        #[serde(default)]
        pub versioning: bool,
        /// S3 tags, blob container metadata, GCS labels.
        #[serde(default)]
        pub tags: Tags,
        /// Block every form of public access (default true).
        #[serde(default = "yes")]
        pub block_public_access: bool,
        #[serde(default)]
        pub encryption: Encryption,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsBucket>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub azure: Option<AzureBucket>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gcp: Option<GcpBucket>,
    }
}

impl BucketSpec {
    /// A bucket reads no other object's outputs.
    pub fn references(&self) -> Vec<crate::common::Reference> {
        Vec::new()
    }
}
