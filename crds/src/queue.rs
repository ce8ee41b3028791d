//! `Queue`: a message queue (SQS, Azure Storage Queue, Pub/Sub subscription).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Kind, LocalRef, ManagedFields, Reference, Tags};

/// Messages received too often move to another `Queue`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The `Queue` (same namespace) that receives the messages; this queue waits until it is Ready.
    pub queue_ref: LocalRef,
    /// Receives of one message before it moves to the dead-letter queue (1 to 1000).
    pub max_receive_count: i32,
}

/// Settings only SQS has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsQueue {
    /// FIFO queues only: deduplicate by a hash of the body.
    #[serde(default)]
    pub content_based_deduplication: bool,
    /// KMS key (ID, ARN or alias) for server-side encryption; omit for SQS-managed encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// Settings only Pub/Sub has. On GCP a Queue is a Pub/Sub subscription, which receives the
/// messages of one topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpQueue {
    /// The `Topic` (same namespace) this subscription receives from; the queue waits until it
    /// is Ready. Cannot change once the subscription exists.
    pub topic_ref: LocalRef,
}

managed_kind! {
    kind = "Queue",
    shortname = "ckqueue",
    doc = "A message queue: SQS on AWS, a Storage Queue on Azure, a Pub/Sub subscription on GCP.",
    pub struct QueueSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        /// First-in first-out delivery with exactly-once processing. On AWS the name must end
        /// in `.fifo`. Cannot change once the queue exists: create a new Queue instead.
        #[serde(default)]
        pub fifo: bool,
        /// Seconds a received message stays hidden from other consumers (0 to 43200, default 30).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub visibility_timeout_seconds: Option<i32>,
        /// Seconds a message is kept (60 to 1209600, default 345600: four days).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message_retention_seconds: Option<i32>,
        /// Seconds each new message waits before delivery (0 to 900, default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delay_seconds: Option<i32>,
        /// Largest message accepted, in bytes (1024 to 262144, default 262144).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_message_size_bytes: Option<i32>,
        /// Seconds a receive call waits for a message to arrive: long polling (0 to 20, default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub receive_wait_time_seconds: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dead_letter: Option<DeadLetter>,
        #[serde(default)]
        pub tags: Tags,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsQueue>,
        /// Required on GCP: the topic the subscription belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gcp: Option<GcpQueue>,
    }
}

impl QueueSpec {
    pub fn references(&self) -> Vec<Reference> {
        self.dead_letter
            .iter()
            .map(|d| Reference::new(Kind::Queue, &d.queue_ref.name, "spec.deadLetter.queueRef"))
            .chain(
                self.gcp
                    .iter()
                    .map(|g| Reference::new(Kind::Topic, &g.topic_ref.name, "spec.gcp.topicRef")),
            )
            .collect()
    }
}
