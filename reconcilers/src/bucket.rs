//! Bucket: the portable state every cloud's bucket backend observes and converges.

use cloudkit_crds::bucket::{BucketSpec, PublicAccessBlock};
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
        Ok(Self {
            versioning: spec.versioning,
            tags: spec.tags.clone(),
            public_access_block,
            encryption_key_id: spec.encryption.key_id.clone(),
        })
    }
}

pub type BucketBackend = dyn ExternalResource<State = BucketState>;

/// The bucket backend for the ProviderConfig's cloud.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub async fn backend(ctx: &ProviderContext, clouds: &Clouds) -> Result<Box<BucketBackend>, CloudError> {
    match ctx.cloud {
        #[cfg(feature = "aws")]
        cloudkit_crds::Cloud::Aws => Ok(Box::new(crate::aws::bucket::S3Bucket::new(&clouds.aws, ctx).await)),
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
