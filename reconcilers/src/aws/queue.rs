//! SQS queues: attributes, dead-letter redrive policy, encryption and tags.

use cloudkit_crds::reason::Reason;
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use cloudkit_drift::{FieldDiff, touches};

use super::{Clients, classify, error_code};
use crate::queue::{DeadLetterState, QueueState};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct SqsQueue {
    client: Client,
}

impl SqsQueue {
    pub async fn new(clients: &Clients, ctx: &ProviderContext) -> Self {
        Self {
            client: clients.sqs(ctx).await,
        }
    }

    /// The queue's URL, or `None` when no queue has that name.
    async fn url(&self, name: &str) -> Result<Option<String>, CloudError> {
        match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => Ok(out.queue_url().map(str::to_owned)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(classify("GetQueueUrl", name, e)),
        }
    }

    async fn existing_url(&self, name: &str) -> Result<String, CloudError> {
        self.url(name)
            .await?
            .ok_or_else(|| CloudError::transient(format!("queue '{name}' is not there (yet): looking again")))
    }
}

/// SQS names a missing queue differently in its JSON and query protocols.
fn is_missing<E: aws_sdk_sqs::error::ProvideErrorMetadata>(
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> bool {
    matches!(
        error_code(e),
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

fn number(attrs: &HashMap<Attr, String>, key: Attr, name: &str) -> Result<i32, CloudError> {
    let text = attrs.get(&key).map(String::as_str).unwrap_or_default();
    text.parse()
        .map_err(|_| CloudError::transient(format!("GetQueueAttributes {name}: {key} is '{text}', not a number")))
}

/// Reads a RedrivePolicy; SQS writes `maxReceiveCount` as a number or as a string.
fn redrive(text: &str) -> Option<DeadLetterState> {
    let policy: serde_json::Value = serde_json::from_str(text).ok()?;
    let target_arn = policy.get("deadLetterTargetArn")?.as_str()?.to_owned();
    let count = policy.get("maxReceiveCount")?;
    let max_receive_count = match count {
        serde_json::Value::String(s) => s.parse().ok()?,
        other => i32::try_from(other.as_i64()?).ok()?,
    };
    Some(DeadLetterState {
        target_arn,
        max_receive_count,
    })
}

#[async_trait]
impl ExternalResource for SqsQueue {
    type State = QueueState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<QueueState>>, CloudError> {
        let Some(url) = self.url(name).await? else {
            return Ok(None);
        };
        let (attrs, tags) = tokio::join!(
            self.client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(Attr::All)
                .send(),
            self.client.list_queue_tags().queue_url(&url).send(),
        );
        let attrs = match attrs {
            Ok(out) => out.attributes().cloned().unwrap_or_default(),
            // Deleted between the two calls: the next observe creates it again.
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(classify("GetQueueAttributes", name, e)),
        };
        let tags = tags
            .map_err(|e| classify("ListQueueTags", name, e))?
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let flag = |key: Attr| attrs.get(&key).is_some_and(|v| v == "true");
        let state = QueueState {
            fifo: flag(Attr::FifoQueue),
            visibility_timeout_seconds: number(&attrs, Attr::VisibilityTimeout, name)?,
            message_retention_seconds: number(&attrs, Attr::MessageRetentionPeriod, name)?,
            delay_seconds: number(&attrs, Attr::DelaySeconds, name)?,
            max_message_size_bytes: number(&attrs, Attr::MaximumMessageSize, name)?,
            receive_wait_time_seconds: number(&attrs, Attr::ReceiveMessageWaitTimeSeconds, name)?,
            dead_letter: attrs.get(&Attr::RedrivePolicy).and_then(|p| redrive(p)),
            content_based_deduplication: flag(Attr::ContentBasedDeduplication),
            kms_key_id: attrs.get(&Attr::KmsMasterKeyId).filter(|k| !k.is_empty()).cloned(),
            tags,
            topic: None,
        };
        let outputs = Outputs {
            arn: attrs.get(&Attr::QueueArn).cloned(),
            url: Some(url.clone()),
            id: Some(url),
            ..Default::default()
        };
        Ok(Some(Observed::ready(state, outputs)))
    }

    async fn create(&self, name: &str, desired: &QueueState) -> Result<(), CloudError> {
        let mut request = self.client.create_queue().queue_name(name);
        // The only attribute SQS fixes at creation; the rest converge through update.
        if desired.fifo {
            request = request.attributes(Attr::FifoQueue, "true");
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("QueueDeletedRecently") => Err(CloudError::Transient {
                reason: Reason::ProviderError,
                message: format!(
                    "queue '{name}' was deleted less than 60 seconds ago; SQS allows its name again after that"
                ),
                retry_after: Some(std::time::Duration::from_secs(60)),
            }),
            // Same name, other creation attributes: someone else's queue, appearing between observe and create.
            Err(e) if matches!(error_code(&e), Some("QueueNameExists" | "QueueAlreadyExists")) => {
                Err(CloudError::Rejected {
                    reason: Reason::AlreadyExists,
                    message: format!(
                        "a queue named '{name}' already exists with other settings: choose another name, or set spec.externalName: {name} to adopt it"
                    ),
                })
            }
            Err(e) => Err(classify("CreateQueue", name, e)),
        }
    }

    async fn update(&self, name: &str, desired: &QueueState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let url = self.existing_url(name).await?;
        let mut attrs: HashMap<Attr, String> = HashMap::new();
        let numbers = [
            (
                "visibilityTimeoutSeconds",
                Attr::VisibilityTimeout,
                desired.visibility_timeout_seconds,
            ),
            (
                "messageRetentionSeconds",
                Attr::MessageRetentionPeriod,
                desired.message_retention_seconds,
            ),
            ("delaySeconds", Attr::DelaySeconds, desired.delay_seconds),
            (
                "maxMessageSizeBytes",
                Attr::MaximumMessageSize,
                desired.max_message_size_bytes,
            ),
            (
                "receiveWaitTimeSeconds",
                Attr::ReceiveMessageWaitTimeSeconds,
                desired.receive_wait_time_seconds,
            ),
        ];
        for (field, attr, value) in numbers {
            if touches(diffs, field) {
                attrs.insert(attr, value.to_string());
            }
        }
        if touches(diffs, "deadLetter") {
            // An empty policy removes the dead-letter queue.
            let policy = match &desired.dead_letter {
                Some(dl) => serde_json::json!({
                    "deadLetterTargetArn": dl.target_arn,
                    "maxReceiveCount": dl.max_receive_count,
                })
                .to_string(),
                None => String::new(),
            };
            attrs.insert(Attr::RedrivePolicy, policy);
        }
        if touches(diffs, "contentBasedDeduplication") {
            attrs.insert(
                Attr::ContentBasedDeduplication,
                desired.content_based_deduplication.to_string(),
            );
        }
        if touches(diffs, "kmsKeyId") {
            attrs.insert(Attr::KmsMasterKeyId, desired.kms_key_id.clone().unwrap_or_default());
        }
        if !attrs.is_empty() {
            let out = self
                .client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attrs))
                .send()
                .await;
            out.map_err(|e| classify("SetQueueAttributes", name, e))?;
        }
        if touches(diffs, "tags") {
            let (set, removed) = super::tag_changes(&desired.tags, diffs);
            if !removed.is_empty() {
                let out = self
                    .client
                    .untag_queue()
                    .queue_url(&url)
                    .set_tag_keys(Some(removed))
                    .send()
                    .await;
                out.map_err(|e| classify("UntagQueue", name, e))?;
            }
            if !set.is_empty() {
                let out = self
                    .client
                    .tag_queue()
                    .queue_url(&url)
                    .set_tags(Some(set.into_iter().collect()))
                    .send()
                    .await;
                out.map_err(|e| classify("TagQueue", name, e))?;
            }
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let Some(url) = self.url(name).await? else {
            return Ok(());
        };
        match self.client.delete_queue().queue_url(&url).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(classify("DeleteQueue", name, e)),
        }
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["fifo"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_in_either_number_form() {
        let want = Some(DeadLetterState {
            target_arn: "arn:aws:sqs:us-east-1:1:dlq".into(),
            max_receive_count: 5,
        });
        assert_eq!(
            redrive(r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":5}"#),
            want
        );
        assert_eq!(
            redrive(r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"5"}"#),
            want
        );
        assert_eq!(redrive(""), None);
    }
}
