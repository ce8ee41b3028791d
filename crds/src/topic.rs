//! `Topic`: publish/subscribe (SNS, Pub/Sub topic).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalRef, ManagedFields, ManagedStatus, Tags};

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

/// A publish/subscribe topic: SNS on AWS, Pub/Sub on GCP.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cloudkit.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "ManagedStatus",
    shortname = "cktopic",
    category = "cloudkit",
    doc = "A publish/subscribe topic: SNS on AWS, Pub/Sub on GCP.",
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "REASON",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "EXTERNAL-NAME", type_ = "string", json_path = ".status.externalName"),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
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
