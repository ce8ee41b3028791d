//! Blob containers: metadata (tags), anonymous access level, default encryption scope.
//! Versioning and customer-managed keys are storage account settings on Azure: validation
//! refuses them for Azure, so this backend reports them as off.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::{Context, Method, Request, RequestContent};
use azure_storage_blob::models::{
    BlobContainerClientCreateOptions, BlobContainerClientGetPropertiesResultHeaders,
    BlobContainerClientSetAccessPolicyOptions, PublicAccessType,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use cloudkit_crds::bucket::{AzurePublicAccess, PublicAccessBlock};
use cloudkit_crds::reason::Reason;
use cloudkit_drift::{FieldDiff, touches};

use super::{Account, Clients, Service, metadata_to_tags, tags_to_metadata};
use crate::bucket::BucketState;
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

/// The List Blobs version used for the emptiness check before delete.
const LIST_VERSION: &str = "2021-08-06";

/// What Azure reports as the default encryption scope of a container that names none.
const ACCOUNT_SCOPE: &str = "$account-encryption-key";

pub struct BlobContainer {
    account: Arc<Account>,
}

impl BlobContainer {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        Ok(Self {
            account: clients.account(ctx)?,
        })
    }

    fn client(&self, name: &str) -> Result<BlobContainerClient, CloudError> {
        let url = self.account.url(Service::Blob, name)?;
        let options = BlobContainerClientOptions {
            client_options: self.account.client_options(Service::Blob),
            ..Default::default()
        };
        BlobContainerClient::new(url, None, Some(options)).map_err(|e| CloudError::Rejected {
            reason: Reason::InvalidProviderConfig,
            message: format!("blob endpoint for '{name}': {e}"),
        })
    }

    /// Whether the container holds at least one blob (`None`: no container): deleting a
    /// container deletes its blobs, and deleting data is never implied (as on S3, where a
    /// bucket must be empty).
    async fn has_blobs(&self, name: &str) -> Result<Option<bool>, CloudError> {
        let mut url = self.account.url(Service::Blob, name)?;
        url.query_pairs_mut()
            .append_pair("restype", "container")
            .append_pair("comp", "list")
            .append_pair("maxresults", "1");
        let mut request = Request::new(url, Method::Get);
        request.insert_header("x-ms-version", LIST_VERSION);
        let pipeline = self.account.pipeline(Service::Blob);
        let ctx = Context::new();
        match self
            .account
            .call(
                Service::Blob,
                "ListBlobs",
                name,
                pipeline.send(&ctx, &mut request, None),
            )
            .await
        {
            Ok(response) => Ok(Some(String::from_utf8_lossy(response.body()).contains("<Blob>"))),
            Err(f) if f.status == Some(404) => Ok(None),
            Err(f) => Err(f.into()),
        }
    }

    fn outputs(&self, name: &str) -> Outputs {
        let url = self.account.url(Service::Blob, name).ok().map(|u| u.to_string());
        Outputs {
            url,
            // `arn` is the cloud identifier in every status (an ARM resource ID here, when the
            // ProviderConfig names subscription and resource group); `id` falls back to the name.
            arn: self
                .account
                .resource_id(&format!("blobServices/default/containers/{name}")),
            id: Some(
                self.account
                    .resource_id(&format!("blobServices/default/containers/{name}"))
                    .unwrap_or_else(|| name.to_owned()),
            ),
            ..Default::default()
        }
    }
}

fn to_azure(access: Option<AzurePublicAccess>) -> Option<PublicAccessType> {
    access.map(|a| match a {
        AzurePublicAccess::Blob => PublicAccessType::Blob,
        AzurePublicAccess::Container => PublicAccessType::Container,
    })
}

/// Azure has one switch per container: private reads as every S3-style block on.
fn block_for(access: Option<AzurePublicAccess>) -> PublicAccessBlock {
    let all = access.is_none();
    PublicAccessBlock {
        block_public_acls: all,
        ignore_public_acls: all,
        block_public_policy: all,
        restrict_public_buckets: all,
    }
}

#[async_trait]
impl ExternalResource for BlobContainer {
    type State = BucketState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<BucketState>>, CloudError> {
        let client = self.client(name)?;
        let props = match self
            .account
            .call(
                Service::Blob,
                "GetContainerProperties",
                name,
                client.get_properties(None),
            )
            .await
        {
            Ok(props) => props,
            Err(f) if f.status == Some(404) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let unreadable = |what: &str, e: azure_core::Error| CloudError::Transient {
            reason: Reason::ProviderError,
            message: format!("GetContainerProperties {name}: unreadable {what}: {e}"),
            retry_after: None,
        };
        let public_access = match props.access().map_err(|e| unreadable("public access", e))? {
            None => None,
            Some(PublicAccessType::Blob) => Some(AzurePublicAccess::Blob),
            Some(PublicAccessType::Container) => Some(AzurePublicAccess::Container),
            Some(other) => {
                return Err(CloudError::Rejected {
                    reason: Reason::CloudRejected,
                    message: format!("container '{name}' has public access '{other}', which CloudKit does not know"),
                });
            }
        };
        let default_encryption_scope = props
            .default_encryption_scope()
            .map_err(|e| unreadable("encryption scope", e))?
            .filter(|s| s != ACCOUNT_SCOPE);
        let tags = metadata_to_tags(props.metadata().map_err(|e| unreadable("metadata", e))?);
        let state = BucketState {
            versioning: false,
            tags,
            public_access_block: block_for(public_access),
            encryption_key_id: None,
            public_access,
            default_encryption_scope,
            storage_class: None,
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, desired: &BucketState) -> Result<(), CloudError> {
        let client = self.client(name)?;
        // The scope can only be given here; metadata and access converge through update.
        let options = BlobContainerClientCreateOptions {
            default_encryption_scope: desired.default_encryption_scope.clone(),
            ..Default::default()
        };
        match self
            .account
            .call(Service::Blob, "CreateContainer", name, client.create(Some(options)))
            .await
        {
            Ok(_) => Ok(()),
            // A retry after a lost response, or a restart mid-create: the account is ours
            // (names are per account), so the container is too.
            Err(f) if f.code.as_deref() == Some("ContainerAlreadyExists") => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &BucketState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let client = self.client(name)?;
        if touches(diffs, "tags") {
            // Set Container Metadata replaces the whole set: removed keys go with it.
            let metadata = tags_to_metadata(&desired.tags);
            self.account
                .call(
                    Service::Blob,
                    "SetContainerMetadata",
                    name,
                    client.set_metadata(&metadata, None),
                )
                .await?;
        }
        if touches(diffs, "publicAccess") || touches(diffs, "publicAccessBlock") {
            // Set Container ACL replaces the stored access policies too: send back those
            // found, so only the access level changes.
            let current = self
                .account
                .call(Service::Blob, "GetContainerACL", name, client.get_access_policy(None))
                .await?;
            let body = current.into_body().to_vec();
            let options = BlobContainerClientSetAccessPolicyOptions {
                access: to_azure(desired.public_access),
                ..Default::default()
            };
            self.account
                .call(
                    Service::Blob,
                    "SetContainerACL",
                    name,
                    client.set_access_policy(RequestContent::from(body), Some(options)),
                )
                .await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let client = self.client(name)?;
        match self.has_blobs(name).await? {
            None => return Ok(()),
            Some(false) => {}
            Some(true) => {
                return Err(CloudError::Transient {
                    reason: Reason::BucketNotEmpty,
                    message: format!(
                        "container '{name}' is not empty: delete its blobs, or set deletionPolicy: Retain to keep it"
                    ),
                    retry_after: Some(std::time::Duration::from_secs(60)),
                });
            }
        }
        match self
            .account
            .call(Service::Blob, "DeleteContainer", name, client.delete(None))
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.status == Some(404) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    fn owner_tag(&self, owner: &str) -> crate::OwnerTag {
        super::owner_tag(owner)
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["defaultEncryptionScope"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_is_every_block_on() {
        assert!(block_for(None).block_public_acls && block_for(None).restrict_public_buckets);
        assert_eq!(block_for(Some(AzurePublicAccess::Blob)), PublicAccessBlock::default());
    }
}
