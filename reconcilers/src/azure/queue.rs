//! Storage queues: metadata (tags). Azure sets visibility, time to live and delay per
//! message, and has no FIFO, size switch, long polling or dead-letter queue: validation
//! refuses those fields for Azure, so this backend reports the portable defaults for them.

use std::sync::Arc;

use async_trait::async_trait;
use azure_storage_queue::models::{QueueClientCreateOptions, QueueClientGetPropertiesResultHeaders};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use cloudkit_crds::reason::Reason;
use cloudkit_drift::{FieldDiff, touches};

use super::{Account, Clients, Service, metadata_to_tags, tags_to_metadata};
use crate::queue::{DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RETENTION, DEFAULT_VISIBILITY_TIMEOUT, QueueState};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct StorageQueue {
    account: Arc<Account>,
}

impl StorageQueue {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        Ok(Self {
            account: clients.account(ctx)?,
        })
    }

    fn client(&self, name: &str) -> Result<QueueClient, CloudError> {
        let url = self.account.url(Service::Queue, name)?;
        let options = QueueClientOptions {
            client_options: self.account.client_options(Service::Queue),
            ..Default::default()
        };
        QueueClient::new(url, None, Some(options)).map_err(|e| CloudError::Rejected {
            reason: Reason::InvalidProviderConfig,
            message: format!("queue endpoint for '{name}': {e}"),
        })
    }

    fn outputs(&self, name: &str) -> Outputs {
        Outputs {
            url: self.account.url(Service::Queue, name).ok().map(|u| u.to_string()),
            // `arn` is the cloud identifier in every status (an ARM resource ID here, when the
            // ProviderConfig names subscription and resource group); `id` falls back to the name.
            arn: self
                .account
                .resource_id(&format!("queueServices/default/queues/{name}")),
            id: Some(
                self.account
                    .resource_id(&format!("queueServices/default/queues/{name}"))
                    .unwrap_or_else(|| name.to_owned()),
            ),
            ..Default::default()
        }
    }
}

#[async_trait]
impl ExternalResource for StorageQueue {
    type State = QueueState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<QueueState>>, CloudError> {
        let client = self.client(name)?;
        let props = match self
            .account
            .call(Service::Queue, "GetQueueMetadata", name, client.get_properties(None))
            .await
        {
            Ok(props) => props,
            Err(f) if f.status == Some(404) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let metadata = props.metadata().map_err(|e| CloudError::Transient {
            reason: Reason::ProviderError,
            message: format!("GetQueueMetadata {name}: unreadable metadata: {e}"),
            retry_after: None,
        })?;
        let state = QueueState {
            fifo: false,
            visibility_timeout_seconds: DEFAULT_VISIBILITY_TIMEOUT,
            message_retention_seconds: DEFAULT_RETENTION,
            delay_seconds: 0,
            max_message_size_bytes: DEFAULT_MAX_MESSAGE_SIZE,
            receive_wait_time_seconds: 0,
            dead_letter: None,
            content_based_deduplication: false,
            kms_key_id: None,
            tags: metadata_to_tags(metadata),
            topic: None,
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, _desired: &QueueState) -> Result<(), CloudError> {
        let client = self.client(name)?;
        // Create Queue succeeds on an existing queue only when the metadata given matches;
        // creating bare and converging the metadata after makes a retry always succeed.
        match self
            .account
            .call(
                Service::Queue,
                "CreateQueue",
                name,
                client.create(Some(QueueClientCreateOptions::default())),
            )
            .await
        {
            Ok(_) => Ok(()),
            // The queue exists with other metadata: ours from an earlier try (names are per
            // account); update converges it.
            Err(f) if f.code.as_deref() == Some("QueueAlreadyExists") => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &QueueState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        if touches(diffs, "tags") {
            let client = self.client(name)?;
            // Set Queue Metadata replaces the whole set: removed keys go with it.
            let metadata = tags_to_metadata(&desired.tags);
            self.account
                .call(
                    Service::Queue,
                    "SetQueueMetadata",
                    name,
                    client.set_metadata(&metadata, None),
                )
                .await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let client = self.client(name)?;
        match self
            .account
            .call(Service::Queue, "DeleteQueue", name, client.delete(None))
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
}
