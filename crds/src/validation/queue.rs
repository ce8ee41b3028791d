//! Queue checks: SQS naming, FIFO rules and attribute ranges.

use super::{FieldError, azure_queue_name, fifo_name, in_range, name_error, pubsub_name, tags};
use crate::provider_config::Cloud;
use crate::queue::QueueSpec;

/// Checks a Queue spec against the rules of the target cloud.
pub fn queue(name: &str, name_field: &str, spec: &QueueSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud == Cloud::Aws {
        if let Some(problem) = sqs_name(name, spec.fifo) {
            errors.push(name_error(name_field, name, "SQS queue", &problem));
        }
        if spec.aws.as_ref().is_some_and(|a| a.content_based_deduplication) && !spec.fifo {
            errors.push(FieldError::new(
                "spec.aws.contentBasedDeduplication",
                "applies to FIFO queues only: set spec.fifo: true or remove it",
            ));
        }
        if spec
            .aws
            .as_ref()
            .and_then(|a| a.kms_key_id.as_deref())
            .is_some_and(|k| k.trim().is_empty())
        {
            errors.push(FieldError::new(
                "spec.aws.kmsKeyId",
                "is empty: remove it for SQS-managed encryption or give a KMS key",
            ));
        }
        errors.extend(tags(&spec.tags, cloud));
    }
    if cloud == Cloud::Azure {
        if let Some(problem) = azure_queue_name(name) {
            errors.push(name_error(name_field, name, "Azure queue", &problem));
        }
        errors.extend(tags(&spec.tags, cloud));
    }
    let i = |v: Option<i32>| v.map(i64::from);
    if cloud == Cloud::Gcp {
        if let Some(problem) = pubsub_name(name) {
            errors.push(name_error(name_field, name, "Pub/Sub subscription", &problem));
        }
        errors.extend(tags(&spec.tags, cloud));
        if spec.gcp.is_none() {
            errors.push(FieldError::new(
                "spec.gcp.topicRef",
                "is required on GCP: a Queue there is a Pub/Sub subscription, which receives the messages of a \
                 topic; add spec.gcp.topicRef: {name: <a Topic in this namespace>}",
            ));
        }
        // Pub/Sub's own ranges, narrower than SQS's.
        in_range(
            &mut errors,
            "spec.visibilityTimeoutSeconds",
            i(spec.visibility_timeout_seconds),
            10..=600,
        );
        in_range(
            &mut errors,
            "spec.messageRetentionSeconds",
            i(spec.message_retention_seconds),
            600..=604_800,
        );
        if let Some(dl) = &spec.dead_letter {
            in_range(
                &mut errors,
                "spec.deadLetter.maxReceiveCount",
                Some(dl.max_receive_count.into()),
                5..=100,
            );
        }
    }
    in_range(
        &mut errors,
        "spec.visibilityTimeoutSeconds",
        i(spec.visibility_timeout_seconds),
        0..=43_200,
    );
    in_range(
        &mut errors,
        "spec.messageRetentionSeconds",
        i(spec.message_retention_seconds),
        60..=1_209_600,
    );
    in_range(&mut errors, "spec.delaySeconds", i(spec.delay_seconds), 0..=900);
    in_range(
        &mut errors,
        "spec.maxMessageSizeBytes",
        i(spec.max_message_size_bytes),
        1024..=262_144,
    );
    in_range(
        &mut errors,
        "spec.receiveWaitTimeSeconds",
        i(spec.receive_wait_time_seconds),
        0..=20,
    );
    if let Some(dl) = &spec.dead_letter {
        in_range(
            &mut errors,
            "spec.deadLetter.maxReceiveCount",
            Some(dl.max_receive_count.into()),
            1..=1000,
        );
        if dl.queue_ref.name.is_empty() {
            errors.push(FieldError::new(
                "spec.deadLetter.queueRef.name",
                "is empty: name a Queue",
            ));
        }
    }
    errors
}

/// SQS queue names: 1 to 80 characters.
fn sqs_name(name: &str, fifo: bool) -> Option<String> {
    fifo_name(name, fifo, 80, "queue")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> QueueSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    #[test]
    fn sqs_names() {
        assert_eq!(sqs_name("orders", false), None);
        assert_eq!(sqs_name("orders_2-x.fifo", true), None);
        assert!(sqs_name("orders", true).expect("needs suffix").contains(".fifo"));
        assert!(sqs_name("orders.fifo", false).expect("not fifo").contains("spec.fifo"));
        assert!(sqs_name("my.queue", false).is_some());
        assert!(sqs_name(&"q".repeat(81), false).is_some());
        assert!(sqs_name(".fifo", true).is_some());
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let s = spec(serde_json::json!({
            "visibilityTimeoutSeconds": 50000,
            "messageRetentionSeconds": 10,
            "delaySeconds": 901,
            "maxMessageSizeBytes": 100,
            "receiveWaitTimeSeconds": 21,
            "deadLetter": {"queueRef": {"name": "dlq"}, "maxReceiveCount": 0},
            "aws": {"contentBasedDeduplication": true, "kmsKeyId": " "}
        }));
        let fields: Vec<String> = queue("jobs", "metadata.name", &s, Cloud::Aws)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.aws.contentBasedDeduplication",
                "spec.aws.kmsKeyId",
                "spec.visibilityTimeoutSeconds",
                "spec.messageRetentionSeconds",
                "spec.delaySeconds",
                "spec.maxMessageSizeBytes",
                "spec.receiveWaitTimeSeconds",
                "spec.deadLetter.maxReceiveCount",
            ]
        );
    }

    #[test]
    fn range_messages_say_what_to_use() {
        let s = spec(serde_json::json!({"visibilityTimeoutSeconds": -1}));
        let errors = queue("jobs", "metadata.name", &s, Cloud::Aws);
        assert_eq!(errors[0].message, "-1 is out of range: use 0 to 43200");
    }

    #[test]
    fn fifo_name_rule_names_the_field() {
        let s = spec(serde_json::json!({"fifo": true}));
        let errors = queue("jobs", "metadata.name", &s, Cloud::Aws);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("must end in '.fifo'"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.contains("set spec.externalName"),
            "{}",
            errors[0].message
        );
    }
}
