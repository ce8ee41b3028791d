//! `Queue`: a message queue (SQS, Azure Storage Queue, Pub/Sub subscription).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalRef, ManagedFields, Tags};

/// Messages received too often move to another `Queue`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub queue_ref: LocalRef,
    pub max_receive_count: i32,
}

/// Settings only SQS has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsQueue {
    /// FIFO queues only: deduplicate by a hash of the body.
    #[serde(default)]
    pub content_based_deduplication: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

managed_kind! {
    kind = "Queue",
    shortname = "ckqueue",
    doc = "A message queue: SQS on AWS, a Storage Queue on Azure, a Pub/Sub subscription on GCP.",
    pub struct QueueSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        /// First-in first-out delivery with exactly-once processing.
        #[serde(default)]
        pub fifo: bool,
        /// Seconds a received message stays hidden from other consumers (default 30).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub visibility_timeout_seconds: Option<i32>,
        /// Seconds a message is kept (default 345600, four days).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message_retention_seconds: Option<i32>,
        /// Seconds each new message waits before delivery (default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delay_seconds: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dead_letter: Option<DeadLetter>,
        #[serde(default)]
        pub tags: Tags,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsQueue>,
    }
}
