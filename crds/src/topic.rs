//! `Topic`: publish/subscribe (SNS, Pub/Sub topic).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Kind, LocalRef, ManagedFields, Reference, Tags};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SubscriptionProtocol {
    /// Deliver to a CloudKit `Queue` (`queueRef`).
    Queue,
    /// Invoke a CloudKit `Function` (`functionRef`).
    Function,
    /// POST to `endpoint`.
    Https,
    /// Mail `endpoint`.
    Email,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub protocol: SubscriptionProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ref: Option<LocalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_ref: Option<LocalRef>,
    /// URL or address for `Https` and `Email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Deliver the message body without the provider's envelope.
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// Provider filter policy, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_policy: Option<String>,
}

/// Settings only SNS has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsTopic {
    /// FIFO topics only: deduplicate by a hash of the body.
    #[serde(default)]
    pub content_based_deduplication: bool,
}

managed_kind! {
    kind = "Topic",
    shortname = "cktopic",
    doc = "A publish/subscribe topic: SNS on AWS, Pub/Sub on GCP.",
    pub struct TopicSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        #[serde(default)]
        pub fifo: bool,
        #[serde(default)]
        pub tags: Tags,
        /// Name shown to people, e.g. as the sender of SMS and email notifications.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub display_name: Option<String>,
        #[serde(default)]
        pub subscriptions: Vec<Subscription>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsTopic>,
    }
}

impl TopicSpec {
    pub fn references(&self) -> Vec<Reference> {
        let mut refs = Vec::new();
        for (i, s) in self.subscriptions.iter().enumerate() {
            if let Some(q) = &s.queue_ref {
                refs.push(Reference::new(
                    Kind::Queue,
                    &q.name,
                    format!("spec.subscriptions[{i}].queueRef"),
                ));
            }
            if let Some(f) = &s.function_ref {
                refs.push(Reference::new(
                    Kind::Function,
                    &f.name,
                    format!("spec.subscriptions[{i}].functionRef"),
                ));
            }
        }
        refs
    }
}
