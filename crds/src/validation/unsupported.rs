//! Portable fields a cloud cannot honour. A manifest that sets one is refused for that
//! cloud, naming the field, rather than made without it: the controller reports these as
//! `UnsupportedForProvider` (the spec is fine; the cloud is the problem), apart from the
//! `InvalidSpec` errors of the other checks.

use super::FieldError;
use crate::bucket::BucketSpec;
use crate::function::FunctionSpec;
use crate::provider_config::Cloud;
use crate::queue::QueueSpec;
use crate::table::{AttributeType, BillingMode, TableSpec};
use crate::topic::{SubscriptionProtocol, TopicSpec};

fn on_azure(field: &str, why: &str) -> FieldError {
    FieldError::new(field, format!("is not supported on azure: {why}"))
}

fn on_gcp(field: &str, why: &str) -> FieldError {
    FieldError::new(field, format!("is not supported on gcp: {why}"))
}

/// Bucket fields Azure sets per storage account, not per container.
pub fn bucket(spec: &BucketSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud != Cloud::Azure {
        return errors;
    }
    if spec.versioning {
        errors.push(on_azure(
            "spec.versioning",
            "blob versioning is a setting of the whole storage account (its blob service), not of a \
             container; enable it on the account, and remove spec.versioning or set it to false",
        ));
    }
    if spec.encryption.key_id.is_some() {
        errors.push(on_azure(
            "spec.encryption.keyId",
            "customer-managed keys are a setting of the storage account (or of an encryption scope); \
             configure the key there and name the scope in spec.azure.defaultEncryptionScope instead",
        ));
    }
    let public = spec.azure.as_ref().is_some_and(|a| a.public_access.is_some());
    if !spec.block_public_access && !public {
        errors.push(on_azure(
            "spec.blockPublicAccess",
            "a container is either private or public, there is no 'unblocked but private': keep \
             blockPublicAccess true, or say which access to grant in spec.azure.publicAccess (Blob or Container)",
        ));
    }
    errors
}

/// Queue fields an Azure Storage queue does not have: Azure sets visibility and time to live
/// per message (by the sender and receiver), and has no FIFO, delay, size limit switch, long
/// polling or dead-letter queue.
pub fn queue(spec: &QueueSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud == Cloud::Gcp {
        return gcp_queue(spec);
    }
    if cloud != Cloud::Azure {
        return errors;
    }
    if spec.fifo {
        errors.push(on_azure(
            "spec.fifo",
            "Storage queues promise no order and no exactly-once delivery (Service Bus does)",
        ));
    }
    let per_queue = [
        (
            "spec.visibilityTimeoutSeconds",
            spec.visibility_timeout_seconds.is_some(),
            "the visibility timeout is given by each receive call, not set on the queue",
        ),
        (
            "spec.messageRetentionSeconds",
            spec.message_retention_seconds.is_some(),
            "the time to live is given by each send call (default 7 days), not set on the queue",
        ),
        (
            "spec.delaySeconds",
            spec.delay_seconds.is_some(),
            "the initial invisibility is given by each send call, not set on the queue",
        ),
        (
            "spec.maxMessageSizeBytes",
            spec.max_message_size_bytes.is_some(),
            "messages are at most 64 KiB, fixed by the service",
        ),
        (
            "spec.receiveWaitTimeSeconds",
            spec.receive_wait_time_seconds.is_some(),
            "Storage queues have no long polling",
        ),
        (
            "spec.deadLetter",
            spec.dead_letter.is_some(),
            "Storage queues have no dead-letter queue (the dequeue count is on each message for the reader to act on)",
        ),
    ];
    for (field, set, why) in per_queue {
        if set {
            errors.push(on_azure(field, &format!("{why}; remove it")));
        }
    }
    errors
}

/// Queue fields a Pub/Sub subscription does not have: Pub/Sub delivers at once, to
/// messages of its own size limit (10 MB), and has no long polling switch (a pull waits).
fn gcp_queue(spec: &QueueSpec) -> Vec<FieldError> {
    [
        (
            "spec.delaySeconds",
            spec.delay_seconds.is_some(),
            "Pub/Sub delivers each message as soon as it is published",
        ),
        (
            "spec.maxMessageSizeBytes",
            spec.max_message_size_bytes.is_some(),
            "messages are at most 10 MB, fixed by the service",
        ),
        (
            "spec.receiveWaitTimeSeconds",
            spec.receive_wait_time_seconds.is_some(),
            "a pull waits for messages by itself; there is no long polling setting",
        ),
    ]
    .into_iter()
    .filter(|(_, set, _)| *set)
    .map(|(field, _, why)| on_gcp(field, &format!("{why}; remove it")))
    .collect()
}

/// Table fields Azure Table storage does not have: it is schemaless (keys are always the
/// string properties PartitionKey and RowKey), billed per use, and has no indexes, expiry,
/// delete lock or tags on a table.
pub fn table(spec: &TableSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud == Cloud::Gcp {
        return gcp_table(spec);
    }
    if cloud != Cloud::Azure {
        return errors;
    }
    if spec.partition_key.type_ != AttributeType::String {
        errors.push(on_azure(
            "spec.partitionKey.type",
            "PartitionKey is always a string: use type String",
        ));
    }
    if let Some(sort) = &spec.sort_key
        && sort.type_ != AttributeType::String
    {
        errors.push(on_azure(
            "spec.sortKey.type",
            "RowKey is always a string: use type String",
        ));
    }
    if spec.billing.mode == BillingMode::Provisioned {
        errors.push(on_azure(
            "spec.billing.mode",
            "Table storage is billed per use, with no provisioned capacity: use OnDemand",
        ));
    }
    if spec.ttl_attribute.is_some() {
        errors.push(on_azure("spec.ttlAttribute", "Table storage does not expire entities"));
    }
    if !spec.global_secondary_indexes.is_empty() {
        errors.push(on_azure(
            "spec.globalSecondaryIndexes",
            "Table storage indexes PartitionKey and RowKey only",
        ));
    }
    if spec.deletion_protection {
        errors.push(on_azure(
            "spec.deletionProtection",
            "a table cannot be locked against deletion (a resource lock on the storage account can)",
        ));
    }
    if !spec.tags.is_empty() {
        errors.push(on_azure(
            "spec.tags",
            "a table has no metadata or tags (tag the storage account instead)",
        ));
    }
    errors
}

/// Topic fields a Pub/Sub topic does not have (on Azure, the whole kind is refused when its
/// backend is looked up). A Pub/Sub subscription belongs to one topic and is itself a
/// CloudKit Queue there, which names its topic: a Topic cannot also list it, as each would
/// then wait for the other.
pub fn topic(spec: &TopicSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud != Cloud::Gcp {
        return errors;
    }
    if spec.fifo {
        errors.push(on_gcp(
            "spec.fifo",
            "Pub/Sub orders messages per subscription: set fifo: true on the Queue (its subscription) and \
             publish with an ordering key; remove it here",
        ));
    }
    if spec.display_name.is_some() {
        errors.push(on_gcp(
            "spec.displayName",
            "Pub/Sub topics have no display name; remove it",
        ));
    }
    for (i, s) in spec.subscriptions.iter().enumerate() {
        let why = match (&s.protocol, &s.queue_ref) {
            (SubscriptionProtocol::Queue, Some(q)) => format!(
                "a Queue on GCP is itself a Pub/Sub subscription: remove this entry and set spec.gcp.topicRef: \
                 {{name: <this Topic>}} on Queue '{}'",
                q.name
            ),
            (protocol, _) => format!(
                "{protocol} subscriptions are not managed on GCP yet (Pub/Sub push subscriptions, Cloud Functions \
                 triggers); remove this entry"
            ),
        };
        errors.push(on_gcp(&format!("spec.subscriptions[{i}]"), &why));
    }
    errors
}

/// Table fields a Bigtable table does not have: capacity is the instance's (its nodes), and
/// there are no secondary indexes, expiry attribute or labels on a table (deletion
/// protection is Bigtable's own, managed by the backend).
fn gcp_table(spec: &TableSpec) -> Vec<FieldError> {
    [
        (
            "spec.billing.mode",
            spec.billing.mode == BillingMode::Provisioned,
            "capacity is the instance's (its nodes), not the table's: use OnDemand",
        ),
        (
            "spec.ttlAttribute",
            spec.ttl_attribute.is_some(),
            "cells expire by the garbage-collection policy of their column family, not by an attribute",
        ),
        (
            "spec.globalSecondaryIndexes",
            !spec.global_secondary_indexes.is_empty(),
            "Bigtable indexes the row key only",
        ),
        (
            "spec.tags",
            !spec.tags.is_empty(),
            "a Bigtable table has no labels (label the instance instead)",
        ),
    ]
    .into_iter()
    .filter(|(_, set, _)| *set)
    .map(|(field, _, why)| on_gcp(field, &format!("{why}; remove it")))
    .collect()
}

/// No Azure backend yet: the whole kind is refused when its backend is looked up.
pub fn function(_spec: &FunctionSpec, _cloud: Cloud) -> Vec<FieldError> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn account_level_bucket_settings_are_named() {
        let spec: BucketSpec = serde_json::from_value(serde_json::json!({
            "versioning": true, "encryption": {"keyId": "https://vault/keys/k"}
        }))
        .expect("spec");
        assert_eq!(
            fields(bucket(&spec, Cloud::Azure)),
            ["spec.versioning", "spec.encryption.keyId"]
        );
        assert!(bucket(&spec, Cloud::Aws).is_empty());
        let errors = bucket(&spec, Cloud::Azure);
        assert!(errors[0].message.contains("storage account"), "{}", errors[0].message);
    }

    #[test]
    fn unblocked_needs_a_public_access_level() {
        let spec: BucketSpec = serde_json::from_value(serde_json::json!({"blockPublicAccess": false})).expect("spec");
        assert_eq!(fields(bucket(&spec, Cloud::Azure)), ["spec.blockPublicAccess"]);
        let spec: BucketSpec = serde_json::from_value(serde_json::json!({
            "blockPublicAccess": false, "azure": {"publicAccess": "Blob"}
        }))
        .expect("spec");
        assert!(bucket(&spec, Cloud::Azure).is_empty());
    }

    #[test]
    fn queue_fields_azure_lacks() {
        let spec: QueueSpec = serde_json::from_value(serde_json::json!({
            "fifo": true, "delaySeconds": 5, "deadLetter": {"queueRef": {"name": "dlq"}, "maxReceiveCount": 3},
            "visibilityTimeoutSeconds": 30
        }))
        .expect("spec");
        assert_eq!(
            fields(queue(&spec, Cloud::Azure)),
            [
                "spec.fifo",
                "spec.visibilityTimeoutSeconds",
                "spec.delaySeconds",
                "spec.deadLetter"
            ]
        );
        let plain: QueueSpec = serde_json::from_value(serde_json::json!({"tags": {"team": "a"}})).expect("spec");
        assert!(queue(&plain, Cloud::Azure).is_empty());
    }

    #[test]
    fn fields_pubsub_lacks_are_named() {
        let q: QueueSpec = serde_json::from_value(serde_json::json!({
            "delaySeconds": 5, "receiveWaitTimeSeconds": 2, "gcp": {"topicRef": {"name": "t"}}
        }))
        .expect("spec");
        assert_eq!(
            fields(queue(&q, Cloud::Gcp)),
            ["spec.delaySeconds", "spec.receiveWaitTimeSeconds"]
        );
        let t: TopicSpec = serde_json::from_value(serde_json::json!({
            "fifo": true, "displayName": "x",
            "subscriptions": [{"protocol": "Queue", "queueRef": {"name": "orders"}}]
        }))
        .expect("spec");
        let errors = topic(&t, Cloud::Gcp);
        assert_eq!(
            fields(errors.clone()),
            ["spec.fifo", "spec.displayName", "spec.subscriptions[0]"]
        );
        assert!(errors[2].message.contains("spec.gcp.topicRef"), "{}", errors[2].message);
        assert!(topic(&t, Cloud::Aws).is_empty());
    }

    #[test]
    fn table_fields_bigtable_lacks() {
        let spec: TableSpec = serde_json::from_value(serde_json::json!({
            "partitionKey": {"name": "id", "type": "Number"},
            "ttlAttribute": "exp", "deletionProtection": true, "tags": {"a": "b"},
            "gcp": {"instance": "main-instance"}
        }))
        .expect("spec");
        assert_eq!(
            fields(table(&spec, Cloud::Gcp)),
            ["spec.ttlAttribute", "spec.tags"],
            "any key type is fine for a row key; Bigtable has deletion protection"
        );
    }

    #[test]
    fn table_fields_azure_lacks() {
        let spec: TableSpec = serde_json::from_value(serde_json::json!({
            "partitionKey": {"name": "id", "type": "Number"},
            "sortKey": {"name": "at", "type": "String"},
            "billing": {"mode": "Provisioned", "readCapacity": 1, "writeCapacity": 1},
            "ttlAttribute": "exp", "deletionProtection": true, "tags": {"a": "b"},
            "globalSecondaryIndexes": [{"name": "x", "partitionKey": {"name": "x", "type": "String"}}]
        }))
        .expect("spec");
        assert_eq!(
            fields(table(&spec, Cloud::Azure)),
            [
                "spec.partitionKey.type",
                "spec.billing.mode",
                "spec.ttlAttribute",
                "spec.globalSecondaryIndexes",
                "spec.deletionProtection",
                "spec.tags"
            ]
        );
    }
}
