//! `Topic`: publish/subscribe (SNS, Pub/Sub topic).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Kind, LocalRef, ManagedFields, Reference, Tags};

/// Where a subscription delivers; each protocol needs exactly one target field.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
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

impl SubscriptionProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "Queue",
            Self::Function => "Function",
            Self::Https => "Https",
            Self::Email => "Email",
        }
    }
}

impl std::fmt::Display for SubscriptionProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One delivery target of the topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub protocol: SubscriptionProtocol,
    /// `Queue` only: the CloudKit `Queue` (same namespace) to deliver to. The topic waits until
    /// it is Ready, and allows itself to send to it in the queue's access policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ref: Option<LocalRef>,
    /// `Function` only: the CloudKit `Function` (same namespace) to invoke. The topic waits
    /// until it is Ready, and allows itself to invoke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_ref: Option<LocalRef>,
    /// `Https`: an `https://` URL; `Email`: an address. These need the recipient to confirm the
    /// subscription before anything is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Deliver the message body without the provider's envelope (`Queue` and `Https` only).
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// Only messages matching this filter policy are delivered: a JSON object, e.g.
    /// `{"event": ["created"]}`, matched against message attributes. Omit to deliver every message.
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

/// Settings only Pub/Sub has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpTopic {
    /// Seconds the topic keeps published messages, acknowledged or not, so that a
    /// subscription can seek back (600 to 2678400: 10 minutes to 31 days). Omit to keep none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_retention_seconds: Option<i64>,
}

managed_kind! {
    kind = "Topic",
    shortname = "cktopic",
    doc = "A publish/subscribe topic: SNS on AWS, Pub/Sub on GCP.",
    pub struct TopicSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        /// Strict ordering and deduplication. On AWS the name must end in `.fifo`, and only
        /// `Queue` subscriptions are allowed. Cannot change once the topic exists: create a new
        /// Topic instead.
        #[serde(default)]
        pub fifo: bool,
        #[serde(default)]
        pub tags: Tags,
        /// Name shown to people, e.g. as the sender of SMS and email notifications.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub display_name: Option<String>,
        /// Every subscription of the topic: missing ones are added, settings are kept as listed,
        /// and subscriptions not listed here are removed (unconfirmed `Https`/`Email` ones
        /// cannot be removed before they are confirmed or expire).
        #[serde(default)]
        pub subscriptions: Vec<Subscription>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsTopic>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gcp: Option<GcpTopic>,
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
