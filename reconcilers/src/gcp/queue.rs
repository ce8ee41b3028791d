//! Pub/Sub subscriptions as Queues: the topic (fixed), labels (tags), the ack deadline
//! (`visibilityTimeoutSeconds`), retention, ordering (`fifo`, fixed) and the dead-letter
//! policy. Pub/Sub has no delay, size switch or long polling: validation refuses those for
//! GCP, so this backend reports the portable defaults for them.

use std::sync::Arc;

use async_trait::async_trait;
use cloudkit_crds::reason::Reason;
use cloudkit_drift::{FieldDiff, touches};
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::model::{DeadLetterPolicy, Subscription};
use google_cloud_wkt::FieldMask;

use super::{Clients, Project};
use crate::queue::{DEFAULT_MAX_MESSAGE_SIZE, DeadLetterState, QueueState};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

/// What Pub/Sub keeps unacknowledged messages for when a subscription names no retention.
const PUBSUB_DEFAULT_RETENTION: i64 = 604_800;

pub struct PubsubSubscription {
    project: Arc<Project>,
}

impl PubsubSubscription {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        Ok(Self {
            project: clients.project(ctx)?,
        })
    }

    fn outputs(&self, name: &str, topic: &str) -> Outputs {
        let mut extra = std::collections::BTreeMap::new();
        // A Queue naming this one as its dead-letter queue sends to this topic (Pub/Sub
        // dead-letters to a topic, not to a subscription).
        extra.insert("topic".to_owned(), topic.to_owned());
        Outputs {
            // `arn` is the cloud identifier in every status: the subscription's full name.
            arn: Some(self.project.path("subscriptions", name)),
            id: Some(name.to_owned()),
            extra,
            ..Default::default()
        }
    }

    /// The subscription as `desired` has it: the fields CloudKit manages.
    fn subscription(&self, name: &str, desired: &QueueState) -> Result<Subscription, CloudError> {
        // Validation requires spec.gcp.topicRef on GCP and the desired state carries the
        // topic's name from its status; checked again so no call goes out without one.
        let topic = desired.topic.clone().ok_or_else(|| CloudError::Rejected {
            reason: Reason::InvalidSpec,
            message: format!("subscription '{name}' has no topic: set spec.gcp.topicRef"),
        })?;
        Ok(Subscription::new()
            .set_name(self.project.path("subscriptions", name))
            .set_topic(topic)
            .set_labels(desired.tags.clone())
            .set_ack_deadline_seconds(desired.visibility_timeout_seconds)
            .set_message_retention_duration(google_cloud_wkt::Duration::clamp(
                i64::from(desired.message_retention_seconds),
                0,
            ))
            .set_enable_message_ordering(desired.fifo)
            .set_or_clear_dead_letter_policy(desired.dead_letter.as_ref().map(|d| {
                DeadLetterPolicy::new()
                    .set_dead_letter_topic(d.target_arn.clone())
                    .set_max_delivery_attempts(d.max_receive_count)
            })))
    }
}

#[async_trait]
impl ExternalResource for PubsubSubscription {
    type State = QueueState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<QueueState>>, CloudError> {
        let admin = self.project.pubsub().await?;
        let path = self.project.path("subscriptions", name);
        let sub = match self
            .project
            .pubsub_call(
                "GetSubscription",
                name,
                admin.subscriptions.get_subscription().set_subscription(&path).send(),
            )
            .await
        {
            Ok(sub) => sub,
            Err(f) if f.code == Some(Code::NotFound) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let retention = sub
            .message_retention_duration
            .map(|d| d.seconds())
            .unwrap_or(PUBSUB_DEFAULT_RETENTION);
        let state = QueueState {
            fifo: sub.enable_message_ordering,
            visibility_timeout_seconds: sub.ack_deadline_seconds,
            message_retention_seconds: i32::try_from(retention).unwrap_or(i32::MAX),
            delay_seconds: 0,
            max_message_size_bytes: DEFAULT_MAX_MESSAGE_SIZE,
            receive_wait_time_seconds: 0,
            dead_letter: sub
                .dead_letter_policy
                .filter(|p| !p.dead_letter_topic.is_empty())
                .map(|p| DeadLetterState {
                    target_arn: p.dead_letter_topic,
                    max_receive_count: p.max_delivery_attempts,
                }),
            content_based_deduplication: false,
            kms_key_id: None,
            tags: sub.labels.into_iter().collect(),
            topic: Some(sub.topic.clone()),
        };
        Ok(Some(Observed::ready(state, self.outputs(name, &sub.topic))))
    }

    async fn create(&self, name: &str, desired: &QueueState) -> Result<(), CloudError> {
        let admin = self.project.pubsub().await?;
        let s = self.subscription(name, desired)?;
        let request = admin
            .subscriptions
            .create_subscription()
            .set_name(s.name)
            .set_topic(s.topic)
            .set_labels(s.labels)
            .set_ack_deadline_seconds(s.ack_deadline_seconds)
            .set_or_clear_message_retention_duration(s.message_retention_duration)
            .set_enable_message_ordering(s.enable_message_ordering)
            .set_or_clear_dead_letter_policy(s.dead_letter_policy)
            .send();
        match self.project.pubsub_call("CreateSubscription", name, request).await {
            Ok(_) => Ok(()),
            // A retry after a lost answer (names are per project); whether it is this
            // object's, the owner label decides at the next observe.
            Err(f) if f.code == Some(Code::AlreadyExists) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &QueueState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let mut paths = Vec::new();
        for (field, path) in [
            // Replaces the whole label set: shared labels are in `desired` already.
            ("tags", "labels"),
            ("visibilityTimeoutSeconds", "ack_deadline_seconds"),
            ("messageRetentionSeconds", "message_retention_duration"),
            ("deadLetter", "dead_letter_policy"),
        ] {
            if touches(diffs, field) {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Ok(());
        }
        let admin = self.project.pubsub().await?;
        let request = admin
            .subscriptions
            .update_subscription()
            .set_subscription(self.subscription(name, desired)?)
            .set_update_mask(FieldMask::default().set_paths(paths))
            .send();
        self.project.pubsub_call("UpdateSubscription", name, request).await?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let admin = self.project.pubsub().await?;
        let path = self.project.path("subscriptions", name);
        match self
            .project
            .pubsub_call(
                "DeleteSubscription",
                name,
                admin.subscriptions.delete_subscription().set_subscription(&path).send(),
            )
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

    /// A subscription adopted by `externalName` is not relabelled for its owner (see
    /// `OWNER_LABEL_UNCOMPARED`): a missing owner label is no difference.
    fn unobserved(&self) -> &'static [&'static str] {
        super::OWNER_LABEL_UNCOMPARED
    }

    /// Pub/Sub fixes both when the subscription is made.
    fn immutable(&self) -> &'static [&'static str] {
        &["fifo", "topic"]
    }
}
