//! Bucket: the portable state every cloud's bucket backend observes and converges.

use cloudkit_crds::bucket::{AzurePublicAccess, BucketSpec, GcsStorageClass, PublicAccessBlock};
use cloudkit_crds::common::Tags;
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// The settings of a bucket CloudKit manages, whatever the cloud.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketState {
    pub versioning: bool,
    pub tags: Tags,
    /// Public access switches; clouds with a single switch treat "all true" as blocked.
    pub public_access_block: PublicAccessBlock,
    /// `None` for the provider-managed key.
    pub encryption_key_id: Option<String>,
    /// Azure: anonymous access granted (`None`: private). Absent on other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_access: Option<AzurePublicAccess>,
    /// Azure: the container's default encryption scope (`None`: the account's). Absent on
    /// other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_encryption_scope: Option<String>,
    /// GCP: the default storage class of new objects, when not `STANDARD` (GCS's default,
    /// written as `None` on both sides so a manifest without `spec.gcp` matches). Absent on
    /// other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<GcsStorageClass>,
}

impl BucketState {
    /// The state a manifest asks for.
    pub fn desired(spec: &BucketSpec, _deps: &Dependencies) -> Result<Self, String> {
        let all = spec.block_public_access;
        let public_access_block = spec
            .aws
            .as_ref()
            .and_then(|aws| aws.public_access_block.clone())
            .unwrap_or(PublicAccessBlock {
                block_public_acls: all,
                ignore_public_acls: all,
                block_public_policy: all,
                restrict_public_buckets: all,
            });
        let azure = spec.azure.clone().unwrap_or_default();
        Ok(Self {
            versioning: spec.versioning,
            tags: spec.tags.clone(),
            public_access_block,
            encryption_key_id: spec.encryption.key_id.clone(),
            public_access: azure.public_access.filter(|_| !all),
            default_encryption_scope: azure.default_encryption_scope,
            storage_class: spec
                .gcp
                .as_ref()
                .map(|g| g.storage_class)
                .filter(|c| *c != GcsStorageClass::Standard),
        })
    }
}

pub type BucketBackend = dyn ExternalResource<State = BucketState>;

/// The bucket backend for the ProviderConfig's cloud.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    allow(unused_variables)
)]
pub async fn backend(ctx: &ProviderContext, clouds: &Clouds) -> Result<Box<BucketBackend>, CloudError> {
    match ctx.cloud {
        #[cfg(feature = "aws")]
        cloudkit_crds::Cloud::Aws => Ok(Box::new(crate::aws::bucket::S3Bucket::new(&clouds.aws, ctx).await)),
        #[cfg(feature = "azure")]
        cloudkit_crds::Cloud::Azure => Ok(Box::new(crate::azure::bucket::BlobContainer::new(&clouds.azure, ctx)?)),
        #[cfg(feature = "gcp")]
        cloudkit_crds::Cloud::Gcp => Ok(Box::new(crate::gcp::bucket::GcsBucket::new(&clouds.gcp, ctx)?)),
        // Unreachable only when every cloud has a backend for the kind and all are built.
        #[allow(unreachable_patterns)]
        cloud => Err(CloudError::Unsupported { kind: "Bucket", cloud }),
    }
}

#[cfg(test)]
mod tests {
    use cloudkit_crds::bucket::AwsBucket;

    use super::*;

    fn spec(json: serde_json::Value) -> BucketSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    #[test]
    fn portable_switch_sets_all_four_flags() {
        let s = BucketState::desired(&spec(serde_json::json!({})), &Dependencies::default()).expect("desired");
        assert!(s.public_access_block.block_public_acls && s.public_access_block.restrict_public_buckets);
        let s = BucketState::desired(
            &spec(serde_json::json!({"blockPublicAccess": false})),
            &Dependencies::default(),
        )
        .expect("desired");
        assert_eq!(s.public_access_block, PublicAccessBlock::default());
    }

    #[test]
    fn aws_block_overrides_portable_switch() {
        let mut bucket = spec(serde_json::json!({"blockPublicAccess": true}));
        bucket.aws = Some(AwsBucket {
            public_access_block: Some(PublicAccessBlock {
                block_public_acls: true,
                ..Default::default()
            }),
        });
        let s = BucketState::desired(&bucket, &Dependencies::default()).expect("desired");
        assert!(s.public_access_block.block_public_acls);
        assert!(!s.public_access_block.block_public_policy);
    }
}
