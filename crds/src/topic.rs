//! `Topic`: publish/subscribe (SNS, Pub/Sub topic).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalRef, ManagedFields, Tags};

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
        #[serde(default)]
        pub subscriptions: Vec<Subscription>,
    }
}
