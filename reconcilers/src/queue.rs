//! Queue: the portable state every cloud's queue backend observes and converges.

use cloudkit_crds::Reference;
use cloudkit_crds::common::{Kind, Tags};
use cloudkit_crds::queue::QueueSpec;
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// Defaults that apply when the manifest leaves a field out; documented on the CRD fields,
/// and managed like any other value so that a queue never keeps a stale setting.
pub const DEFAULT_VISIBILITY_TIMEOUT: i32 = 30;
pub const DEFAULT_RETENTION: i32 = 345_600;
pub const DEFAULT_MAX_MESSAGE_SIZE: i32 = 262_144;

/// Where messages received too often go.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterState {
    /// The dead-letter queue's ARN (on AWS).
    pub target_arn: String,
    pub max_receive_count: i32,
}

/// The settings of a queue CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueueState {
    pub fifo: bool,
    pub visibility_timeout_seconds: i32,
    pub message_retention_seconds: i32,
    pub delay_seconds: i32,
    pub max_message_size_bytes: i32,
    pub receive_wait_time_seconds: i32,
    pub dead_letter: Option<DeadLetterState>,
    pub content_based_deduplication: bool,
    /// `None` for the cloud-managed key.
    pub kms_key_id: Option<String>,
    pub tags: Tags,
    /// GCP: the topic the subscription receives from (`projects/<p>/topics/<t>`). Absent on
    /// other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl QueueState {
    /// The state a manifest asks for; a dead-letter queue is named by its ARN from `deps`.
    pub fn desired(spec: &QueueSpec, deps: &Dependencies) -> Result<Self, String> {
        let dead_letter = match (&spec.dead_letter, spec.references().first()) {
            (Some(dl), Some(reference)) => Some(DeadLetterState {
                // A dead-letter queue that publishes a `topic` output (a Pub/Sub
                // subscription) is sent to through that topic: Pub/Sub dead-letters to topics.
                target_arn: match deps
                    .status(Kind::Queue, &reference.name)
                    .and_then(|s| s.outputs.as_ref()?.get("topic").cloned())
                {
                    Some(topic) => topic,
                    None => deps.arn(reference)?,
                },
                max_receive_count: dl.max_receive_count,
            }),
            _ => None,
        };
        let topic = match &spec.gcp {
            Some(gcp) => Some(deps.arn(&Reference::new(Kind::Topic, &gcp.topic_ref.name, "spec.gcp.topicRef"))?),
            None => None,
        };
        let aws = spec.aws.clone().unwrap_or_default();
        Ok(Self {
            fifo: spec.fifo,
            visibility_timeout_seconds: spec.visibility_timeout_seconds.unwrap_or(DEFAULT_VISIBILITY_TIMEOUT),
            message_retention_seconds: spec.message_retention_seconds.unwrap_or(DEFAULT_RETENTION),
            delay_seconds: spec.delay_seconds.unwrap_or(0),
            max_message_size_bytes: spec.max_message_size_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            receive_wait_time_seconds: spec.receive_wait_time_seconds.unwrap_or(0),
            dead_letter,
            content_based_deduplication: aws.content_based_deduplication,
            kms_key_id: aws.kms_key_id,
            tags: spec.tags.clone(),
            topic,
        })
    }
}

pub type QueueBackend = dyn ExternalResource<State = QueueState>;

/// The queue backend for the ProviderConfig's cloud.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    allow(unused_variables)
)]
pub async fn backend(ctx: &ProviderContext, clouds: &Clouds) -> Result<Box<QueueBackend>, CloudError> {
    match ctx.cloud {
        #[cfg(feature = "aws")]
        cloudkit_crds::Cloud::Aws => Ok(Box::new(crate::aws::queue::SqsQueue::new(&clouds.aws, ctx).await)),
        #[cfg(feature = "azure")]
        cloudkit_crds::Cloud::Azure => Ok(Box::new(crate::azure::queue::StorageQueue::new(&clouds.azure, ctx)?)),
        #[cfg(feature = "gcp")]
        cloudkit_crds::Cloud::Gcp => Ok(Box::new(crate::gcp::queue::PubsubSubscription::new(&clouds.gcp, ctx)?)),
        // Unreachable only when every cloud has a backend for the kind and all are built.
        #[allow(unreachable_patterns)]
        cloud => Err(CloudError::Unsupported { kind: "Queue", cloud }),
    }
}

#[cfg(test)]
mod tests {
    use cloudkit_crds::ManagedStatus;

    use super::*;

    fn spec(json: serde_json::Value) -> QueueSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    #[test]
    fn defaults_fill_what_the_manifest_leaves_out() {
        let s = QueueState::desired(&spec(serde_json::json!({})), &Dependencies::default()).expect("desired");
        assert_eq!(s.visibility_timeout_seconds, 30);
        assert_eq!(s.message_retention_seconds, 345_600);
        assert_eq!(s.max_message_size_bytes, 262_144);
        assert_eq!(s.dead_letter, None);
    }

    #[test]
    fn dead_letter_reads_the_referenced_queues_arn() {
        let s = spec(serde_json::json!({"deadLetter": {"queueRef": {"name": "dlq"}, "maxReceiveCount": 3}}));
        let err = QueueState::desired(&s, &Dependencies::default()).expect_err("no ARN yet");
        assert!(err.contains("Queue/dlq"), "{err}");
        let mut deps = Dependencies::default();
        deps.insert(
            Kind::Queue,
            "dlq",
            ManagedStatus {
                arn: Some("arn:aws:sqs:us-east-1:1:dlq".into()),
                ..Default::default()
            },
        );
        let state = QueueState::desired(&s, &deps).expect("desired");
        assert_eq!(
            state.dead_letter,
            Some(DeadLetterState {
                target_arn: "arn:aws:sqs:us-east-1:1:dlq".into(),
                max_receive_count: 3
            })
        );
    }
}
