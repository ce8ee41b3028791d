//! Pub/Sub topics: labels (tags) and message retention. Pub/Sub has no FIFO topic, display
//! name or topic-side subscription list (a subscription is a CloudKit Queue naming its
//! topic): validation refuses those for GCP, so this backend reports them as unset.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cloudkit_drift::{FieldDiff, touches};
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::model::Topic;
use google_cloud_wkt::FieldMask;

use super::{Clients, Project};
use crate::topic::TopicState;
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct PubsubTopic {
    project: Arc<Project>,
}

impl PubsubTopic {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        Ok(Self {
            project: clients.project(ctx)?,
        })
    }

    fn outputs(&self, name: &str) -> Outputs {
        Outputs {
            // `arn` is the cloud identifier in every status: the topic's full name here,
            // which subscriptions (Queues) name their topic by.
            arn: Some(self.project.path("topics", name)),
            id: Some(name.to_owned()),
            ..Default::default()
        }
    }

    /// The topic as `desired` has it: labels and retention (the fields CloudKit manages).
    fn topic(&self, name: &str, desired: &TopicState) -> Topic {
        Topic::new()
            .set_name(self.project.path("topics", name))
            .set_labels(desired.tags.clone())
            .set_or_clear_message_retention_duration(
                desired
                    .message_retention_seconds
                    .map(|s| google_cloud_wkt::Duration::clamp(s, 0)),
            )
    }
}

#[async_trait]
impl ExternalResource for PubsubTopic {
    type State = TopicState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<TopicState>>, CloudError> {
        let admin = self.project.pubsub().await?;
        let path = self.project.path("topics", name);
        let topic = match self
            .project
            .pubsub_call("GetTopic", name, admin.topics.get_topic().set_topic(&path).send())
            .await
        {
            Ok(topic) => topic,
            Err(f) if f.code == Some(Code::NotFound) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let state = TopicState {
            fifo: false,
            display_name: String::new(),
            content_based_deduplication: false,
            tags: topic.labels.into_iter().collect(),
            subscriptions: BTreeMap::new(),
            message_retention_seconds: topic.message_retention_duration.map(|d| d.seconds()),
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, desired: &TopicState) -> Result<(), CloudError> {
        let admin = self.project.pubsub().await?;
        let topic = self.topic(name, desired);
        let request = admin
            .topics
            .create_topic()
            .set_name(topic.name.clone())
            .set_labels(topic.labels.clone())
            .set_or_clear_message_retention_duration(topic.message_retention_duration)
            .send();
        match self.project.pubsub_call("CreateTopic", name, request).await {
            Ok(_) => Ok(()),
            // A retry after a lost answer: names are per project, so it is ours; whether it
            // is this object's, the owner label decides at the next observe.
            Err(f) if f.code == Some(Code::AlreadyExists) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &TopicState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let mut paths = Vec::new();
        if touches(diffs, "tags") {
            // Replaces the whole label set: shared labels are in `desired` already.
            paths.push("labels");
        }
        if touches(diffs, "messageRetentionSeconds") {
            paths.push("message_retention_duration");
        }
        if paths.is_empty() {
            return Ok(());
        }
        let admin = self.project.pubsub().await?;
        let request = admin
            .topics
            .update_topic()
            .set_topic(self.topic(name, desired))
            .set_update_mask(FieldMask::default().set_paths(paths))
            .send();
        self.project.pubsub_call("UpdateTopic", name, request).await?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let admin = self.project.pubsub().await?;
        let path = self.project.path("topics", name);
        // Subscriptions of a deleted topic stay, detached; CloudKit deletes the Queues that
        // name this Topic first (deletion goes in reverse order of references).
        match self
            .project
            .pubsub_call("DeleteTopic", name, admin.topics.delete_topic().set_topic(&path).send())
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.code == Some(Code::NotFound) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    fn owner_tag(&self, owner: &str) -> crate::OwnerTag {
        super::owner_tag(owner)
    }

    /// A topic adopted by `externalName` is not relabelled for its owner (see
    /// `OWNER_LABEL_UNCOMPARED`): a missing owner label is no difference.
    fn unobserved(&self) -> &'static [&'static str] {
        super::OWNER_LABEL_UNCOMPARED
    }
}
