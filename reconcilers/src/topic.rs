//! Topic: the portable state every cloud's topic backend observes and converges.

use std::collections::BTreeMap;

use cloudkit_crds::Reference;
use cloudkit_crds::common::{Kind, Tags};
use cloudkit_crds::topic::{SubscriptionProtocol, TopicSpec};
use cloudkit_drift::normalize::{self, json_document};
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// One subscription's managed settings. Subscriptions are keyed by what they deliver to
/// (`subscription_key`), so the one diff says which to add (`subscriptions.<key>` missing
/// from the observed state), which to remove (missing from the desired state) and which
/// setting to change in place (`subscriptions.<key>.<field>`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionState {
    /// Part of the key already; kept for the backend's calls, not compared.
    #[serde(skip)]
    pub protocol: SubscriptionProtocol,
    /// The cloud's address of the target (an ARN on AWS for queues and functions); in the key.
    #[serde(skip)]
    pub endpoint: String,
    /// Desired state only: the queue's URL, where the delivery permission is written.
    #[serde(skip)]
    pub queue_url: Option<String>,
    pub raw_message_delivery: bool,
    /// Canonical JSON (`normalize::json_document`): key order, whitespace and `{}` versus
    /// none never show as drift.
    pub filter_policy: Option<String>,
    /// Whether the target lets the topic deliver (a queue's access policy, a function's
    /// resource policy); always true for targets that need no grant.
    pub delivery_allowed: bool,
}

/// The settings of a topic CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TopicState {
    pub fifo: bool,
    /// Empty when unset, as SNS reports it.
    pub display_name: String,
    pub content_based_deduplication: bool,
    pub tags: Tags,
    pub subscriptions: BTreeMap<String, SubscriptionState>,
    /// GCP: how long the topic keeps published messages (`None`: none kept). Absent on
    /// other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_retention_seconds: Option<i64>,
}

/// `<protocol>:<endpoint>`: what identifies a subscription on every cloud.
pub fn subscription_key(protocol: &str, endpoint: &str) -> String {
    format!("{protocol}:{endpoint}")
}

impl TopicState {
    /// The state a manifest asks for; queues and functions are named by their ARNs from `deps`.
    pub fn desired(spec: &TopicSpec, deps: &Dependencies) -> Result<Self, String> {
        let mut subscriptions = BTreeMap::new();
        for (i, s) in spec.subscriptions.iter().enumerate() {
            let (endpoint, queue_url) = match s.protocol {
                SubscriptionProtocol::Queue => {
                    let name = s.queue_ref.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
                    let reference = Reference::new(Kind::Queue, name, format!("spec.subscriptions[{i}].queueRef"));
                    let url = deps
                        .status(Kind::Queue, name)
                        .and_then(|s| s.url.clone())
                        .ok_or_else(|| format!("Queue/{name} has no URL in its status yet"))?;
                    (deps.arn(&reference)?, Some(url))
                }
                SubscriptionProtocol::Function => {
                    let name = s.function_ref.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
                    let reference =
                        Reference::new(Kind::Function, name, format!("spec.subscriptions[{i}].functionRef"));
                    (deps.arn(&reference)?, None)
                }
                SubscriptionProtocol::Https | SubscriptionProtocol::Email => {
                    (s.endpoint.clone().unwrap_or_default(), None)
                }
            };
            let filter_policy = json_document(s.filter_policy.as_deref());
            subscriptions.insert(
                subscription_key(s.protocol.as_str(), &endpoint),
                SubscriptionState {
                    protocol: s.protocol,
                    endpoint,
                    queue_url,
                    raw_message_delivery: s.raw_message_delivery,
                    filter_policy,
                    delivery_allowed: true,
                },
            );
        }
        let aws = spec.aws.clone().unwrap_or_default();
        Ok(Self {
            fifo: spec.fifo,
            display_name: normalize::text_or_empty(spec.display_name.as_deref()),
            content_based_deduplication: aws.content_based_deduplication,
            tags: spec.tags.clone(),
            subscriptions,
            message_retention_seconds: spec.gcp.as_ref().and_then(|g| g.message_retention_seconds),
        })
    }
}

pub type TopicBackend = dyn ExternalResource<State = TopicState>;

/// The topic backend for the ProviderConfig's cloud.
#[cfg_attr(not(any(feature = "aws", feature = "gcp")), allow(unused_variables))]
pub async fn backend(ctx: &ProviderContext, clouds: &Clouds) -> Result<Box<TopicBackend>, CloudError> {
    match ctx.cloud {
        #[cfg(feature = "aws")]
        cloudkit_crds::Cloud::Aws => Ok(Box::new(crate::aws::topic::SnsTopic::new(&clouds.aws, ctx).await)),
        #[cfg(feature = "gcp")]
        cloudkit_crds::Cloud::Gcp => Ok(Box::new(crate::gcp::topic::PubsubTopic::new(&clouds.gcp, ctx)?)),
        cloud => Err(CloudError::Unsupported { kind: "Topic", cloud }),
    }
}

#[cfg(test)]
mod tests {
    use cloudkit_crds::ManagedStatus;

    use super::*;

    fn spec(json: serde_json::Value) -> TopicSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    fn ready(deps: &mut Dependencies, kind: Kind, name: &str, arn: &str, url: Option<&str>) {
        deps.insert(
            kind,
            name,
            ManagedStatus {
                arn: Some(arn.into()),
                url: url.map(str::to_owned),
                ..Default::default()
            },
        );
    }

    #[test]
    fn defaults_fill_what_the_manifest_leaves_out() {
        let s = TopicState::desired(&spec(serde_json::json!({})), &Dependencies::default()).expect("desired");
        assert_eq!(
            s,
            TopicState {
                fifo: false,
                display_name: String::new(),
                content_based_deduplication: false,
                tags: Tags::new(),
                subscriptions: BTreeMap::new(),
                message_retention_seconds: None,
            }
        );
    }

    #[test]
    fn subscriptions_are_keyed_by_protocol_and_target() {
        let s = spec(serde_json::json!({
            "fifo": true,
            "displayName": "Orders",
            "aws": {"contentBasedDeduplication": true},
            "subscriptions": [
                {"protocol": "Queue", "queueRef": {"name": "q"}, "rawMessageDelivery": true,
                 "filterPolicy": "{ \"b\": [1],\n \"a\": {\"y\": 1, \"x\": [\"z\"]} }"},
                {"protocol": "Function", "functionRef": {"name": "f"}},
                {"protocol": "Email", "endpoint": "ops@example.com"}
            ]
        }));
        let err = TopicState::desired(&s, &Dependencies::default()).expect_err("no queue yet");
        assert!(err.contains("Queue/q"), "{err}");

        let mut deps = Dependencies::default();
        ready(
            &mut deps,
            Kind::Queue,
            "q",
            "arn:aws:sqs:us-east-1:1:q",
            Some("http://sqs/1/q"),
        );
        ready(
            &mut deps,
            Kind::Function,
            "f",
            "arn:aws:lambda:us-east-1:1:function:f",
            None,
        );
        let state = TopicState::desired(&s, &deps).expect("desired");
        assert!(state.fifo && state.content_based_deduplication);
        assert_eq!(state.display_name, "Orders");
        let keys: Vec<&str> = state.subscriptions.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "Email:ops@example.com",
                "Function:arn:aws:lambda:us-east-1:1:function:f",
                "Queue:arn:aws:sqs:us-east-1:1:q"
            ]
        );
        let queue = &state.subscriptions["Queue:arn:aws:sqs:us-east-1:1:q"];
        assert!(queue.raw_message_delivery && queue.delivery_allowed);
        assert_eq!(queue.queue_url.as_deref(), Some("http://sqs/1/q"));
        assert_eq!(
            queue.filter_policy.as_deref(),
            Some(r#"{"a":{"x":["z"],"y":1},"b":[1]}"#)
        );
        // Only the compared settings reach the diff (and the drift report).
        let json = serde_json::to_value(queue).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"rawMessageDelivery": true, "filterPolicy": r#"{"a":{"x":["z"],"y":1},"b":[1]}"#, "deliveryAllowed": true})
        );
    }

    #[test]
    fn queue_without_a_url_waits() {
        let s = spec(serde_json::json!({"subscriptions": [{"protocol": "Queue", "queueRef": {"name": "q"}}]}));
        let mut deps = Dependencies::default();
        ready(&mut deps, Kind::Queue, "q", "arn:aws:sqs:us-east-1:1:q", None);
        let err = TopicState::desired(&s, &deps).expect_err("no URL yet");
        assert!(err.contains("Queue/q has no URL"), "{err}");
    }

    #[test]
    fn one_diff_says_what_to_subscribe_remove_and_change() {
        let mut deps = Dependencies::default();
        ready(&mut deps, Kind::Queue, "q", "arn:q", Some("url"));
        let desired = TopicState::desired(
            &spec(serde_json::json!({"subscriptions": [
                {"protocol": "Queue", "queueRef": {"name": "q"}, "rawMessageDelivery": true},
                {"protocol": "Https", "endpoint": "https://a.example.com/x"}
            ]})),
            &deps,
        )
        .expect("desired");
        let mut observed = desired.clone();
        observed.subscriptions.remove("Https:https://a.example.com/x");
        if let Some(q) = observed.subscriptions.get_mut("Queue:arn:q") {
            q.raw_message_delivery = false;
        }
        let mut extra = desired.subscriptions["Queue:arn:q"].clone();
        extra.endpoint = "arn:old".into();
        observed.subscriptions.insert("Queue:arn:old".into(), extra);
        let paths: Vec<String> = cloudkit_drift::diff(&desired, &observed)
            .expect("diff")
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(
            paths,
            [
                "subscriptions.Https:https://a.example.com/x",
                "subscriptions.Queue:arn:old",
                "subscriptions.Queue:arn:q.rawMessageDelivery"
            ]
        );
    }
}
