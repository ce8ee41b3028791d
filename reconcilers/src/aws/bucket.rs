//! S3 buckets: versioning, tags, public access block and default encryption.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use cloudkit_crds::bucket::PublicAccessBlock;
use cloudkit_crds::common::Tags;
use cloudkit_crds::reason::Reason;
use cloudkit_drift::{FieldDiff, touches};

use super::{Clients, classify, error_code};
use crate::bucket::BucketState;
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

/// The key S3 uses for `aws:kms` without an explicit key.
const AWS_MANAGED_KMS_KEY: &str = "alias/aws/s3";

pub struct S3Bucket {
    client: Client,
    region: String,
    endpoint: Option<String>,
}

impl S3Bucket {
    pub async fn new(clients: &Clients, ctx: &ProviderContext) -> Self {
        Self {
            client: clients.s3(ctx).await,
            region: ctx.region.clone(),
            endpoint: ctx.endpoint.clone(),
        }
    }

    fn outputs(&self, name: &str) -> Outputs {
        let url = match &self.endpoint {
            Some(endpoint) => format!("{}/{name}", endpoint.trim_end_matches('/')),
            None => format!("https://{name}.s3.{}.amazonaws.com", self.region),
        };
        Outputs {
            arn: Some(format!("arn:aws:s3:::{name}")),
            url: Some(url),
            id: Some(name.to_owned()),
            ..Default::default()
        }
    }

    async fn tags(&self, name: &str) -> Result<Tags, CloudError> {
        match self.client.get_bucket_tagging().bucket(name).send().await {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect()),
            Err(e) if error_code(&e) == Some("NoSuchTagSet") => Ok(Tags::new()),
            Err(e) => Err(classify("GetBucketTagging", name, e)),
        }
    }

    async fn public_access_block(&self, name: &str) -> Result<PublicAccessBlock, CloudError> {
        match self.client.get_public_access_block().bucket(name).send().await {
            Ok(out) => {
                let c = out.public_access_block_configuration();
                Ok(PublicAccessBlock {
                    block_public_acls: c.and_then(|c| c.block_public_acls()).unwrap_or(false),
                    ignore_public_acls: c.and_then(|c| c.ignore_public_acls()).unwrap_or(false),
                    block_public_policy: c.and_then(|c| c.block_public_policy()).unwrap_or(false),
                    restrict_public_buckets: c.and_then(|c| c.restrict_public_buckets()).unwrap_or(false),
                })
            }
            Err(e) if error_code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => {
                Ok(PublicAccessBlock::default())
            }
            Err(e) => Err(classify("GetPublicAccessBlock", name, e)),
        }
    }

    async fn encryption_key(&self, name: &str) -> Result<Option<String>, CloudError> {
        match self.client.get_bucket_encryption().bucket(name).send().await {
            Ok(out) => {
                let default = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first())
                    .and_then(|r| r.apply_server_side_encryption_by_default());
                Ok(match default {
                    Some(d) if d.sse_algorithm() != &ServerSideEncryption::Aes256 => {
                        Some(d.kms_master_key_id().unwrap_or(AWS_MANAGED_KMS_KEY).to_owned())
                    }
                    _ => None,
                })
            }
            Err(e) if error_code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => Ok(None),
            Err(e) => Err(classify("GetBucketEncryption", name, e)),
        }
    }
}

#[async_trait]
impl ExternalResource for S3Bucket {
    type State = BucketState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<BucketState>>, CloudError> {
        // GetBucketVersioning is both the existence check and one of the four reads the state
        // needs: a quiet resync costs 4 calls instead of HeadBucket + 4, in the same two round
        // trips, and a missing bucket still costs one.
        let versioning = match self.client.get_bucket_versioning().bucket(name).send().await {
            Ok(out) => out.status() == Some(&BucketVersioningStatus::Enabled),
            Err(e)
                if error_code(&e) == Some("NoSuchBucket")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                return Ok(None);
            }
            // S3 answers 403 for a name another account owns (a human must pick another) and
            // for missing permissions (which may be granted any time): retried, and reported
            // Stalled once it lasts.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                return Err(CloudError::Transient {
                    reason: Reason::AccessDenied,
                    retry_after: None,
                    message: format!(
                        "bucket '{name}' exists but these credentials may not read it: another AWS account owns \
                         the name (choose another spec.externalName), or the credentials lack \
                         s3:GetBucketVersioning on it"
                    ),
                });
            }
            Err(e) => return Err(classify("GetBucketVersioning", name, e)),
        };
        // One round trip of latency instead of three.
        let (tags, public_access_block, encryption_key_id) = tokio::join!(
            self.tags(name),
            self.public_access_block(name),
            self.encryption_key(name),
        );
        let state = BucketState {
            versioning,
            tags: tags?,
            public_access_block: public_access_block?,
            encryption_key_id: encryption_key_id?,
            public_access: None,
            default_encryption_scope: None,
            storage_class: None,
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, _desired: &BucketState) -> Result<(), CloudError> {
        let mut request = self.client.create_bucket().bucket(name);
        // us-east-1 is the default location and rejects an explicit constraint.
        if self.region != "us-east-1" {
            let constraint = BucketLocationConstraint::from(self.region.as_str());
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(constraint)
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            // A retry after a lost response, or a restart mid-create: the bucket is ours.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_exists()) => Err(CloudError::Rejected {
                reason: Reason::ExternalNameTaken,
                message: format!(
                    "bucket name '{name}' is taken by another AWS account (names are global): choose another spec.externalName"
                ),
            }),
            Err(e) => Err(classify("CreateBucket", name, e)),
        }
    }

    async fn update(&self, name: &str, desired: &BucketState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        if touches(diffs, "versioning") {
            let status = if desired.versioning {
                BucketVersioningStatus::Enabled
            } else {
                BucketVersioningStatus::Suspended
            };
            let config = VersioningConfiguration::builder().status(status).build();
            let out = self
                .client
                .put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(config)
                .send()
                .await;
            out.map_err(|e| classify("PutBucketVersioning", name, e))?;
        }
        if touches(diffs, "tags") {
            if desired.tags.is_empty() {
                let out = self.client.delete_bucket_tagging().bucket(name).send().await;
                out.map_err(|e| classify("DeleteBucketTagging", name, e))?;
            } else {
                let tag_set = desired
                    .tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CloudError::Rejected {
                        reason: Reason::InvalidSpec,
                        message: format!("spec.tags: {e}"),
                    })?;
                let tagging =
                    Tagging::builder()
                        .set_tag_set(Some(tag_set))
                        .build()
                        .map_err(|e| CloudError::Rejected {
                            reason: Reason::InvalidSpec,
                            message: format!("spec.tags: {e}"),
                        })?;
                let out = self
                    .client
                    .put_bucket_tagging()
                    .bucket(name)
                    .tagging(tagging)
                    .send()
                    .await;
                out.map_err(|e| classify("PutBucketTagging", name, e))?;
            }
        }
        if touches(diffs, "publicAccessBlock") {
            let p = &desired.public_access_block;
            let config = PublicAccessBlockConfiguration::builder()
                .block_public_acls(p.block_public_acls)
                .ignore_public_acls(p.ignore_public_acls)
                .block_public_policy(p.block_public_policy)
                .restrict_public_buckets(p.restrict_public_buckets)
                .build();
            let out = self
                .client
                .put_public_access_block()
                .bucket(name)
                .public_access_block_configuration(config)
                .send()
                .await;
            out.map_err(|e| classify("PutPublicAccessBlock", name, e))?;
        }
        if touches(diffs, "encryptionKeyId") {
            let by_default = match &desired.encryption_key_id {
                None => ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256),
                Some(key) => ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id(key),
            }
            .build()
            .map_err(|e| CloudError::Rejected {
                reason: Reason::InvalidSpec,
                message: format!("spec.encryption: {e}"),
            })?;
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .build();
            let config = ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| CloudError::Rejected {
                    reason: Reason::InvalidSpec,
                    message: format!("spec.encryption: {e}"),
                })?;
            let out = self
                .client
                .put_bucket_encryption()
                .bucket(name)
                .server_side_encryption_configuration(config)
                .send()
                .await;
            out.map_err(|e| classify("PutBucketEncryption", name, e))?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        match self.client.delete_bucket().bucket(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("NoSuchBucket") => Ok(()),
            // Deleting objects is never implied; the user decides what happens to the data.
            Err(e) if error_code(&e) == Some("BucketNotEmpty") => Err(CloudError::Transient {
                reason: Reason::BucketNotEmpty,
                message: format!(
                    "bucket '{name}' is not empty: delete its objects (and versions), or set deletionPolicy: Retain to keep it"
                ),
                retry_after: Some(std::time::Duration::from_secs(60)),
            }),
            Err(e) => Err(classify("DeleteBucket", name, e)),
        }
    }
}
