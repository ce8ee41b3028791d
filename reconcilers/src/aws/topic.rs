//! SNS topics: attributes, tags, and subscriptions with the grants that let them deliver
//! (a statement in the SQS queue's access policy, a Lambda resource-policy permission).

use cloudkit_crds::reason::Reason;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::Tag;
use aws_sdk_sqs::types::QueueAttributeName;
use cloudkit_crds::topic::SubscriptionProtocol;
use cloudkit_drift::normalize;
use cloudkit_drift::{FieldDiff, touches};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Clients, classify, error_code};
use crate::topic::{SubscriptionState, TopicState, subscription_key};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

/// What SNS does not tell and the topic backend remembers between reconciles: one per
/// process, kept with the AWS clients.
#[derive(Default)]
pub struct SnsMemory {
    /// `arn:<partition>:sns:<region>:<account>:` per ProviderConfig.
    ///
    /// SNS addresses a topic by ARN only, and the ARN holds the account ID, which a
    /// ProviderConfig does not name. Searching ListTopics on every observe costs one call per
    /// 100 topics in the region; CreateTopic would return the ARN but observe must not create,
    /// and STS GetCallerIdentity would need another SDK. So the prefix is learned once, from
    /// the first ARN any SNS answer shows for that ProviderConfig (all topics of one account and
    /// region share it), and a topic is then one GetTopicAttributes on the ARN built from its
    /// name. If the credentials came to name another account, that lookup says NotFound, and
    /// the CreateTopic that follows (idempotent by name) returns the right ARN and relearns it.
    arn_prefixes: Mutex<BTreeMap<String, (ProviderContext, String)>>,

    /// Settings of subscriptions waiting for their recipient to confirm, by topic ARN and key.
    ///
    /// SNS lists an unconfirmed (email, https) subscription without an ARN, so its settings
    /// cannot be read nor changed, and it cannot be unsubscribed. Subscribing again would only
    /// send another confirmation request each resync. So observe reports a pending subscription
    /// with the settings it was subscribed with (SNS applies them on confirmation; after that
    /// the real ones are read), and leaves out pending subscriptions this process did not ask
    /// for. After a restart a wanted one thus shows as missing once: update finds it pending in
    /// the listing and takes the manifest's settings for it, without subscribing (and mailing)
    /// again. Unwanted ones cannot be unsubscribed: SNS deletes them when they expire
    /// unconfirmed, and a confirmed one is unsubscribed at the next resync.
    pending: Mutex<BTreeMap<(String, String), SubscriptionState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves only a cache behind; keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What SNS calls each protocol.
fn sns_protocol(p: SubscriptionProtocol) -> &'static str {
    match p {
        SubscriptionProtocol::Queue => "sqs",
        SubscriptionProtocol::Function => "lambda",
        SubscriptionProtocol::Https => "https",
        SubscriptionProtocol::Email => "email",
    }
}

fn portable_protocol(sns: &str) -> Option<SubscriptionProtocol> {
    [
        SubscriptionProtocol::Queue,
        SubscriptionProtocol::Function,
        SubscriptionProtocol::Https,
        SubscriptionProtocol::Email,
    ]
    .into_iter()
    .find(|p| sns_protocol(*p) == sns)
}

/// A subscription as ListSubscriptionsByTopic shows it.
struct Live {
    protocol: Option<SubscriptionProtocol>,
    endpoint: String,
    /// `None` while the recipient has not confirmed it.
    arn: Option<String>,
}

/// Sid of the queue-policy statement that lets one topic send: one per topic, so that
/// several topics feeding one queue each keep their own.
fn queue_sid(topic_arn: &str) -> String {
    format!("cloudkit-topic-{topic_arn}")
}

fn queue_statement(queue_arn: &str, topic_arn: &str) -> Value {
    json!({
        "Sid": queue_sid(topic_arn),
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    })
}

fn statements(policy: &Value) -> Vec<Value> {
    match policy.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    }
}

fn parse_policy(policy: Option<&str>) -> Result<Value, String> {
    match policy.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(json!({"Version": "2012-10-17", "Statement": []})),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("the policy is not a JSON object".into()),
            Err(e) => Err(format!("the policy is not JSON: {e}")),
        },
    }
}

/// `policy` with `statement` in place of any statement with its Sid; every other statement
/// (other topics', the user's own) is kept.
pub(crate) fn merge_statement(policy: Option<&str>, statement: Value) -> Result<String, String> {
    let mut doc = parse_policy(policy)?;
    let sid = statement.get("Sid").cloned();
    let mut list = statements(&doc);
    list.retain(|s| s.get("Sid") != sid.as_ref());
    list.push(statement);
    doc["Statement"] = Value::Array(list);
    Ok(doc.to_string())
}

/// `policy` without the statement `sid`, `Some("")` when nothing else is left (SQS removes
/// an empty policy), or `None` when there was nothing to remove.
pub(crate) fn remove_statement(policy: Option<&str>, sid: &str) -> Result<Option<String>, String> {
    let mut doc = parse_policy(policy)?;
    let mut list = statements(&doc);
    let before = list.len();
    list.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(sid));
    if list.len() == before {
        return Ok(None);
    }
    if list.is_empty() {
        return Ok(Some(String::new()));
    }
    doc["Statement"] = Value::Array(list);
    Ok(Some(doc.to_string()))
}

/// Whether the policy holds exactly the statement `want` (by Sid; JSON equality ignores key order).
pub(crate) fn has_statement(policy: Option<&str>, want: &Value) -> bool {
    let Ok(doc) = parse_policy(policy) else {
        return false;
    };
    statements(&doc)
        .iter()
        .any(|s| s.get("Sid") == want.get("Sid") && s == want)
}

/// Lambda statement IDs allow 1 to 100 of `[A-Za-z0-9_-]`; a topic ARN has ':' and may be long.
/// The prefix differs from the Function kind's (`cloudkit-sns-`), which removes statements of
/// its own prefix for topics its triggers do not name.
fn lambda_statement_id(topic_arn: &str) -> String {
    let digest = Sha256::digest(topic_arn.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name: String = topic_arn
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    format!("cloudkit-topic-{name}-{hex}")
}

/// Who lets one topic invoke a function, from the function's resource policy.
#[derive(Debug, Default, PartialEq, Eq)]
struct InvokeGrants {
    /// This topic's own statement (`lambda_statement_id`).
    ours: bool,
    /// A statement of someone else for the same topic: a Function's `topicRef` trigger, or
    /// the user's own tooling. Such a subscription is theirs, and the Topic leaves it alone
    /// unless it lists it too; otherwise both would undo each other at every resync.
    others: bool,
}

/// Lambda rewrites the statements it is given, so only the Sid and the source ARN are compared.
fn invoke_grants(policy: &str, sid: &str, topic_arn: &str) -> InvokeGrants {
    let Ok(doc) = parse_policy(Some(policy)) else {
        return InvokeGrants::default();
    };
    let mut grants = InvokeGrants::default();
    for s in statements(&doc) {
        let allows = s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && s.get("Condition")
                .is_some_and(|c| c.to_string().contains(&format!("\"{topic_arn}\"")));
        if allows && s.get("Sid").and_then(Value::as_str) == Some(sid) {
            grants.ours = true;
        } else if allows {
            grants.others = true;
        }
    }
    grants
}

/// An SQS queue ARN's name and owner account: `arn:aws:sqs:<region>:<account>:<name>`.
fn queue_name_and_owner(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.rsplitn(3, ':');
    let name = parts.next()?;
    let account = parts.next()?;
    Some((name, account))
}

fn is_not_found<E: aws_sdk_sns::error::ProvideErrorMetadata>(
    e: &aws_sdk_sns::error::SdkError<E, aws_sdk_sns::config::http::HttpResponse>,
) -> bool {
    matches!(error_code(e), Some("NotFound" | "ResourceNotFound"))
}

fn is_queue_missing<E: aws_sdk_sqs::error::ProvideErrorMetadata>(
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> bool {
    matches!(
        error_code(e),
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

fn flag(attrs: &std::collections::HashMap<String, String>, key: &str) -> bool {
    normalize::flag(attrs.get(key).map(String::as_str))
}

/// A filter policy as SNS returns it, in the canonical form the desired state uses.
fn filter_policy(attrs: &std::collections::HashMap<String, String>) -> Option<String> {
    normalize::json_document(attrs.get("FilterPolicy").map(String::as_str))
}

pub struct SnsTopic {
    sns: Client,
    sqs: aws_sdk_sqs::Client,
    lambda: aws_sdk_lambda::Client,
    ctx: ProviderContext,
    memory: Arc<SnsMemory>,
}

impl SnsTopic {
    pub async fn new(clients: &Clients, ctx: &ProviderContext) -> Self {
        Self {
            sns: clients.sns(ctx).await,
            sqs: clients.sqs(ctx).await,
            lambda: clients.lambda(ctx).await,
            ctx: ctx.clone(),
            memory: clients.sns_memory.clone(),
        }
    }

    fn cached_prefix(&self) -> Option<String> {
        lock(&self.memory.arn_prefixes)
            .get(&self.ctx.key)
            .filter(|(seen, _)| *seen == self.ctx)
            .map(|(_, prefix)| prefix.clone())
    }

    fn learn_prefix(&self, arn: &str) {
        if let Some((prefix, _)) = arn.rsplit_once(':') {
            lock(&self.memory.arn_prefixes).insert(self.ctx.key.clone(), (self.ctx.clone(), format!("{prefix}:")));
        }
    }

    /// The ARN the topic has if it exists: built from the learned prefix, or found by
    /// paging ListTopics (see `SnsMemory::arn_prefixes`). `None` when no page shows it.
    async fn arn(&self, name: &str) -> Result<Option<String>, CloudError> {
        if let Some(prefix) = self.cached_prefix() {
            return Ok(Some(format!("{prefix}{name}")));
        }
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sns
                .list_topics()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("ListTopics", name, e))?;
            let mut found = None;
            for arn in page.topics().iter().filter_map(|t| t.topic_arn()) {
                self.learn_prefix(arn);
                if arn.rsplit(':').next() == Some(name) {
                    found = Some(arn.to_owned());
                }
            }
            if found.is_some() {
                return Ok(found);
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    async fn existing_arn(&self, name: &str) -> Result<String, CloudError> {
        self.arn(name)
            .await?
            .ok_or_else(|| CloudError::transient(format!("topic '{name}' is not there (yet): looking again")))
    }

    /// The topic's subscriptions by key, or `None` when the topic is not there.
    async fn subscriptions(&self, topic_arn: &str, name: &str) -> Result<Option<BTreeMap<String, Live>>, CloudError> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(token.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(classify("ListSubscriptionsByTopic", name, e)),
            };
            for s in page.subscriptions() {
                let (Some(sns), Some(endpoint)) = (s.protocol(), s.endpoint()) else {
                    continue;
                };
                let arn = match s.subscription_arn() {
                    Some(a) if a.starts_with("arn:") => Some(a.to_owned()),
                    Some("PendingConfirmation") => None,
                    // "Deleted": on its way out.
                    _ => continue,
                };
                let protocol = portable_protocol(sns);
                let key = subscription_key(protocol.map_or(sns, |p| p.as_str()), endpoint);
                out.insert(
                    key,
                    Live {
                        protocol,
                        endpoint: endpoint.to_owned(),
                        arn,
                    },
                );
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(Some(out)),
            }
        }
    }

    /// One confirmed subscription's settings, or `None` if it vanished meanwhile.
    async fn observe_subscription(
        &self,
        topic_arn: &str,
        name: &str,
        live: &Live,
        arn: &str,
    ) -> Result<Option<SubscriptionState>, CloudError> {
        let attrs = match self
            .sns
            .get_subscription_attributes()
            .subscription_arn(arn)
            .send()
            .await
        {
            Ok(out) => out.attributes().cloned().unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("GetSubscriptionAttributes", name, e)),
        };
        let delivery_allowed = match live.protocol {
            Some(SubscriptionProtocol::Queue) => self.queue_allows(&live.endpoint, topic_arn, name).await?,
            Some(SubscriptionProtocol::Function) => {
                let grants = self.function_grants(&live.endpoint, topic_arn, name).await?;
                if grants.others && !grants.ours {
                    return Ok(None);
                }
                grants.ours
            }
            _ => true,
        };
        Ok(Some(SubscriptionState {
            // Only desired states' protocols are read; a protocol CloudKit does not manage
            // (sms, http…) is already told apart by its key, and kept as a foreign entry
            // unless CloudKit made it.
            protocol: live.protocol.unwrap_or(SubscriptionProtocol::Https),
            endpoint: live.endpoint.clone(),
            queue_url: None,
            raw_message_delivery: flag(&attrs, "RawMessageDelivery"),
            filter_policy: filter_policy(&attrs),
            delivery_allowed,
        }))
    }

    async fn queue_url_of(&self, queue_arn: &str, name: &str) -> Result<Option<String>, CloudError> {
        let Some((queue, owner)) = queue_name_and_owner(queue_arn) else {
            return Ok(None);
        };
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(queue)
            .queue_owner_aws_account_id(owner)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.queue_url().map(str::to_owned)),
            Err(e) if is_queue_missing(&e) => Ok(None),
            Err(e) => Err(classify("GetQueueUrl", name, e)),
        }
    }

    /// The queue's access policy, `None` when it has none, or `Err` naming a missing queue.
    async fn queue_policy(&self, url: &str, name: &str) -> Result<Option<String>, CloudError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::Policy)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::Policy))
                .cloned()),
            Err(e) if is_queue_missing(&e) => Err(CloudError::transient(format!(
                "topic '{name}' delivers to queue {url}, which is not there (yet): looking again"
            ))),
            Err(e) => Err(classify("GetQueueAttributes", name, e)),
        }
    }

    async fn queue_allows(&self, queue_arn: &str, topic_arn: &str, name: &str) -> Result<bool, CloudError> {
        let Some(url) = self.queue_url_of(queue_arn, name).await? else {
            // A subscription to a queue that is gone delivers nowhere.
            return Ok(false);
        };
        let policy = self.queue_policy(&url, name).await?;
        Ok(has_statement(policy.as_deref(), &queue_statement(queue_arn, topic_arn)))
    }

    async fn set_queue_policy(&self, url: &str, policy: String, name: &str) -> Result<(), CloudError> {
        self.sqs
            .set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::Policy, policy)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("SetQueueAttributes", name, e))
    }

    async fn function_grants(
        &self,
        function_arn: &str,
        topic_arn: &str,
        name: &str,
    ) -> Result<InvokeGrants, CloudError> {
        match self.lambda.get_policy().function_name(function_arn).send().await {
            Ok(out) => Ok(out
                .policy()
                .map(|p| invoke_grants(p, &lambda_statement_id(topic_arn), topic_arn))
                .unwrap_or_default()),
            // No policy yet, or no function: either way SNS cannot invoke it.
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(InvokeGrants::default()),
            Err(e) => Err(classify("GetPolicy", name, e)),
        }
    }

    /// Lets the topic deliver to the subscription's target, before subscribing it.
    async fn grant(&self, topic_arn: &str, name: &str, want: &SubscriptionState) -> Result<(), CloudError> {
        match want.protocol {
            SubscriptionProtocol::Queue => {
                let url = match &want.queue_url {
                    Some(url) => url.clone(),
                    None => self.queue_url_of(&want.endpoint, name).await?.ok_or_else(|| {
                        CloudError::transient(format!("queue {} is not there (yet): looking again", want.endpoint))
                    })?,
                };
                let current = self.queue_policy(&url, name).await?;
                let statement = queue_statement(&want.endpoint, topic_arn);
                if has_statement(current.as_deref(), &statement) {
                    return Ok(());
                }
                let merged = merge_statement(current.as_deref(), statement).map_err(|m| CloudError::Rejected {
                    reason: Reason::CloudRejected,
                    message: format!("cannot add to the access policy of queue {url}: {m}; fix or remove that policy"),
                })?;
                self.set_queue_policy(&url, merged, name).await
            }
            SubscriptionProtocol::Function => {
                let sid = lambda_statement_id(topic_arn);
                let add = || {
                    self.lambda
                        .add_permission()
                        .function_name(&want.endpoint)
                        .statement_id(&sid)
                        .action("lambda:InvokeFunction")
                        .principal("sns.amazonaws.com")
                        .source_arn(topic_arn)
                        .send()
                };
                match add().await {
                    Ok(_) => Ok(()),
                    // A statement of that ID exists but says something else: replace it.
                    Err(e) if error_code(&e) == Some("ResourceConflictException") => {
                        self.revoke_function(&want.endpoint, topic_arn, name).await?;
                        add().await.map(|_| ()).map_err(|e| classify("AddPermission", name, e))
                    }
                    Err(e) => Err(classify("AddPermission", name, e)),
                }
            }
            SubscriptionProtocol::Https | SubscriptionProtocol::Email => Ok(()),
        }
    }

    async fn revoke_function(&self, function_arn: &str, topic_arn: &str, name: &str) -> Result<(), CloudError> {
        let out = self
            .lambda
            .remove_permission()
            .function_name(function_arn)
            .statement_id(lambda_statement_id(topic_arn))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify("RemovePermission", name, e)),
        }
    }

    /// Takes back what `grant` gave, once the subscription is gone; a target that is gone
    /// itself needs nothing.
    async fn revoke(&self, topic_arn: &str, name: &str, live: &Live) -> Result<(), CloudError> {
        match live.protocol {
            Some(SubscriptionProtocol::Queue) => {
                let Some(url) = self.queue_url_of(&live.endpoint, name).await? else {
                    return Ok(());
                };
                let current = match self.queue_policy(&url, name).await {
                    Ok(p) => p,
                    Err(CloudError::Transient { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                };
                match remove_statement(current.as_deref(), &queue_sid(topic_arn)) {
                    Ok(Some(policy)) => self.set_queue_policy(&url, policy, name).await,
                    // Nothing of ours, or a policy we cannot read: leave it as it is.
                    Ok(None) | Err(_) => Ok(()),
                }
            }
            Some(SubscriptionProtocol::Function) => self.revoke_function(&live.endpoint, topic_arn, name).await,
            _ => Ok(()),
        }
    }

    async fn set_subscription_attribute(
        &self,
        arn: &str,
        key: &str,
        value: String,
        name: &str,
    ) -> Result<(), CloudError> {
        self.sns
            .set_subscription_attributes()
            .subscription_arn(arn)
            .attribute_name(key)
            .attribute_value(value)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("SetSubscriptionAttributes", name, e))
    }

    async fn subscribe(
        &self,
        topic_arn: &str,
        name: &str,
        key: &str,
        want: &SubscriptionState,
    ) -> Result<(), CloudError> {
        let mut request = self
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol(sns_protocol(want.protocol))
            .endpoint(&want.endpoint);
        // Given with the subscription, so they also hold for one that still awaits confirmation.
        if want.raw_message_delivery {
            request = request.attributes("RawMessageDelivery", "true");
        }
        if let Some(policy) = &want.filter_policy {
            request = request.attributes("FilterPolicy", policy);
        }
        let out = request.send().await.map_err(|e| classify("Subscribe", name, e))?;
        if !out.subscription_arn().is_some_and(|a| a.starts_with("arn:")) {
            lock(&self.memory.pending).insert((topic_arn.to_owned(), key.to_owned()), want.clone());
        }
        Ok(())
    }

    async fn converge_subscriptions(
        &self,
        topic_arn: &str,
        name: &str,
        desired: &TopicState,
        diffs: &[FieldDiff],
    ) -> Result<(), CloudError> {
        let live = self
            .subscriptions(topic_arn, name)
            .await?
            .ok_or_else(|| CloudError::transient(format!("topic '{name}' is not there (yet): looking again")))?;
        let pending_key = |key: &str| (topic_arn.to_owned(), key.to_owned());
        for (key, want) in &desired.subscriptions {
            let base = format!("subscriptions.{key}");
            let missing = diffs.iter().any(|d| d.path == base);
            let changed = |field: &str| diffs.iter().any(|d| d.path == format!("{base}.{field}"));
            if !missing && !changed("deliveryAllowed") && !changed("rawMessageDelivery") && !changed("filterPolicy") {
                continue;
            }
            if missing || changed("deliveryAllowed") {
                self.grant(topic_arn, name, want).await?;
            }
            let arn = match live.get(key) {
                None if missing => {
                    self.subscribe(topic_arn, name, key, want).await?;
                    continue;
                }
                None => {
                    return Err(CloudError::transient(format!(
                        "subscription {key} of topic '{name}' is gone: looking again"
                    )));
                }
                // Asked for already; a new Subscribe would only mail another confirmation.
                Some(Live { arn: None, .. }) => {
                    lock(&self.memory.pending).insert(pending_key(key), want.clone());
                    continue;
                }
                Some(Live { arn: Some(arn), .. }) => arn,
            };
            if missing || changed("rawMessageDelivery") {
                let value = want.raw_message_delivery.to_string();
                self.set_subscription_attribute(arn, "RawMessageDelivery", value, name)
                    .await?;
            }
            if missing || changed("filterPolicy") {
                // An empty value removes the policy.
                let value = want.filter_policy.clone().unwrap_or_default();
                self.set_subscription_attribute(arn, "FilterPolicy", value, name)
                    .await?;
            }
        }
        // Observed but not desired: `subscriptions.<key>` with nothing wanted there.
        let unwanted = diffs
            .iter()
            .filter(|d| d.desired.is_null())
            .filter_map(|d| d.path.strip_prefix("subscriptions."))
            .filter(|key| !desired.subscriptions.contains_key(*key));
        for key in unwanted {
            lock(&self.memory.pending).remove(&pending_key(key));
            let Some(found) = live.get(key) else {
                continue;
            };
            let Some(arn) = &found.arn else {
                // Unconfirmed: SNS allows no unsubscribe; it expires unless confirmed, and
                // is removed here once confirmed.
                continue;
            };
            match self.sns.unsubscribe().subscription_arn(arn).send().await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(classify("Unsubscribe", name, e)),
            }
            self.revoke(topic_arn, name, found).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ExternalResource for SnsTopic {
    type State = TopicState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<TopicState>>, CloudError> {
        let Some(arn) = self.arn(name).await? else {
            return Ok(None);
        };
        let attrs = match self.sns.get_topic_attributes().topic_arn(&arn).send().await {
            Ok(out) => out.attributes().cloned().unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("GetTopicAttributes", name, e)),
        };
        let (tags, live) = tokio::join!(
            self.sns.list_tags_for_resource().resource_arn(&arn).send(),
            self.subscriptions(&arn, name),
        );
        let tags = match tags {
            Ok(out) => out
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
            // Deleted between the calls: the next observe sorts it out.
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("ListTagsForResource", name, e)),
        };
        let mut subscriptions = BTreeMap::new();
        let Some(live) = live? else {
            return Ok(None);
        };
        for (key, live) in live {
            let state = match &live.arn {
                Some(sub_arn) => {
                    // Confirmed: its own settings are readable from now on.
                    lock(&self.memory.pending).remove(&(arn.clone(), key.clone()));
                    self.observe_subscription(&arn, name, &live, sub_arn).await?
                }
                None => lock(&self.memory.pending).get(&(arn.clone(), key.clone())).cloned(),
            };
            if let Some(state) = state {
                subscriptions.insert(key, state);
            }
        }
        let state = TopicState {
            fifo: flag(&attrs, "FifoTopic"),
            display_name: normalize::text_or_empty(attrs.get("DisplayName").map(String::as_str)),
            content_based_deduplication: flag(&attrs, "ContentBasedDeduplication"),
            tags,
            subscriptions,
            message_retention_seconds: None,
        };
        let outputs = Outputs {
            arn: Some(arn.clone()),
            url: None,
            id: Some(arn),
            ..Default::default()
        };
        Ok(Some(Observed::ready(state, outputs)))
    }

    async fn create(&self, name: &str, desired: &TopicState) -> Result<(), CloudError> {
        let mut request = self.sns.create_topic().name(name);
        // The only attribute SNS fixes at creation; the rest converge through update.
        if desired.fifo {
            request = request.attributes("FifoTopic", "true");
        }
        let out = request.send().await.map_err(|e| classify("CreateTopic", name, e))?;
        if let Some(arn) = out.topic_arn() {
            self.learn_prefix(arn);
        }
        Ok(())
    }

    async fn update(&self, name: &str, desired: &TopicState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let arn = self.existing_arn(name).await?;
        let attributes = [
            ("displayName", "DisplayName", desired.display_name.clone()),
            (
                "contentBasedDeduplication",
                "ContentBasedDeduplication",
                desired.content_based_deduplication.to_string(),
            ),
        ];
        for (field, attribute, value) in attributes {
            if touches(diffs, field) {
                self.sns
                    .set_topic_attributes()
                    .topic_arn(&arn)
                    .attribute_name(attribute)
                    .attribute_value(value)
                    .send()
                    .await
                    .map_err(|e| classify("SetTopicAttributes", name, e))?;
            }
        }
        if touches(diffs, "tags") {
            let (set, removed) = super::tag_changes(&desired.tags, diffs);
            if !removed.is_empty() {
                self.sns
                    .untag_resource()
                    .resource_arn(&arn)
                    .set_tag_keys(Some(removed))
                    .send()
                    .await
                    .map_err(|e| classify("UntagResource", name, e))?;
            }
            if !set.is_empty() {
                let tags = set
                    .into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CloudError::Rejected {
                        reason: Reason::InvalidRequest,
                        message: format!("TagResource {name}: {e}"),
                    })?;
                self.sns
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| classify("TagResource", name, e))?;
            }
        }
        if touches(diffs, "subscriptions") {
            self.converge_subscriptions(&arn, name, desired, diffs).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let Some(arn) = self.arn(name).await? else {
            return Ok(());
        };
        // SNS deletes the subscriptions with the topic; the grants on the targets are ours to take back.
        // The ARN may be built from the learned prefix: the listing is what says it is gone.
        let Some(live) = self.subscriptions(&arn, name).await? else {
            lock(&self.memory.pending).retain(|(topic, _), _| *topic != arn);
            return Ok(());
        };
        for found in live.values().filter(|l| l.arn.is_some()) {
            self.revoke(&arn, name, found).await?;
        }
        match self.sns.delete_topic().topic_arn(&arn).send().await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(classify("DeleteTopic", name, e)),
        }
        lock(&self.memory.pending).retain(|(topic, _), _| *topic != arn);
        Ok(())
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["fifo"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";
    const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:work";

    #[test]
    fn merging_keeps_other_statements_and_replaces_our_own() {
        let other = json!({"Sid": "someone-else", "Effect": "Allow", "Principal": "*", "Action": "sqs:*"});
        let mut stale = queue_statement(QUEUE, TOPIC);
        stale["Effect"] = json!("Deny");
        let existing = json!({"Version": "2012-10-17", "Id": "p", "Statement": [other, stale]}).to_string();
        let merged = merge_statement(Some(&existing), queue_statement(QUEUE, TOPIC)).expect("merges");
        let doc: Value = serde_json::from_str(&merged).expect("JSON");
        assert_eq!(doc["Id"], "p");
        assert_eq!(doc["Statement"], json!([other, queue_statement(QUEUE, TOPIC)]));
        assert!(has_statement(Some(&merged), &queue_statement(QUEUE, TOPIC)));
        assert!(!has_statement(Some(&existing), &queue_statement(QUEUE, TOPIC)));
    }

    #[test]
    fn merging_into_no_policy_or_a_single_statement() {
        for empty in [None, Some(""), Some("  ")] {
            let merged = merge_statement(empty, queue_statement(QUEUE, TOPIC)).expect("merges");
            let doc: Value = serde_json::from_str(&merged).expect("JSON");
            assert_eq!(doc["Statement"], json!([queue_statement(QUEUE, TOPIC)]));
            assert_eq!(doc["Version"], "2012-10-17");
        }
        let single = json!({"Statement": {"Sid": "x", "Effect": "Allow"}}).to_string();
        let merged = merge_statement(Some(&single), queue_statement(QUEUE, TOPIC)).expect("merges");
        let doc: Value = serde_json::from_str(&merged).expect("JSON");
        assert_eq!(doc["Statement"].as_array().map(Vec::len), Some(2));
        assert!(merge_statement(Some("not json"), queue_statement(QUEUE, TOPIC)).is_err());
    }

    #[test]
    fn statements_are_compared_ignoring_key_order() {
        let reordered = r#"{"Statement":[{"Condition":{"ArnEquals":{"aws:SourceArn":"arn:aws:sns:us-east-1:123456789012:orders"}},
            "Resource":"arn:aws:sqs:us-east-1:123456789012:work","Action":"sqs:SendMessage",
            "Principal":{"Service":"sns.amazonaws.com"},"Effect":"Allow",
            "Sid":"cloudkit-topic-arn:aws:sns:us-east-1:123456789012:orders"}]}"#;
        assert!(has_statement(Some(reordered), &queue_statement(QUEUE, TOPIC)));
        let other_topic = queue_statement(QUEUE, "arn:aws:sns:us-east-1:123456789012:other");
        assert!(!has_statement(Some(reordered), &other_topic));
    }

    #[test]
    fn removing_takes_only_our_statement() {
        let other = json!({"Sid": "keep", "Effect": "Allow"});
        let both = json!({"Statement": [other, queue_statement(QUEUE, TOPIC)]}).to_string();
        let left = remove_statement(Some(&both), &queue_sid(TOPIC))
            .expect("parses")
            .expect("removed");
        let doc: Value = serde_json::from_str(&left).expect("JSON");
        assert_eq!(doc["Statement"], json!([other]));
        assert_eq!(remove_statement(Some(&left), &queue_sid(TOPIC)).expect("parses"), None);
        let ours = json!({"Statement": [queue_statement(QUEUE, TOPIC)]}).to_string();
        assert_eq!(
            remove_statement(Some(&ours), &queue_sid(TOPIC)).expect("parses"),
            Some(String::new())
        );
    }

    #[test]
    fn lambda_statement_ids_are_valid_and_distinct() {
        let a = lambda_statement_id(TOPIC);
        let b = lambda_statement_id("arn:aws:sns:eu-west-1:123456789012:orders");
        assert_ne!(a, b);
        let long = lambda_statement_id(&format!("arn:aws:sns:us-east-1:1:{}", "x".repeat(256)));
        for id in [&a, &b, &long] {
            assert!(id.len() <= 100, "{id}");
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
        let policy = json!({"Statement": [{"Sid": a, "Effect": "Allow",
            "Condition": {"ArnLike": {"AWS:SourceArn": TOPIC}}}]})
        .to_string();
        let grants = |ours, others| InvokeGrants { ours, others };
        assert_eq!(invoke_grants(&policy, &a, TOPIC), grants(true, false));
        assert_eq!(invoke_grants(&policy, &b, TOPIC), grants(false, true));
        assert_eq!(
            invoke_grants(&policy, &a, "arn:aws:sns:us-east-1:123456789012:orders2"),
            grants(false, false)
        );
    }

    #[test]
    fn filter_policies_read_back_in_canonical_form() {
        let attrs = |p: &str| std::collections::HashMap::from([("FilterPolicy".to_owned(), p.to_owned())]);
        assert_eq!(
            filter_policy(&attrs("{ \"b\": [1], \"a\": [\"x\"] }")).as_deref(),
            Some(r#"{"a":["x"],"b":[1]}"#)
        );
        assert_eq!(filter_policy(&attrs("")), None);
        assert_eq!(filter_policy(&attrs("{}")), None);
        assert_eq!(filter_policy(&std::collections::HashMap::new()), None);
    }

    #[test]
    fn queue_arns_name_the_queue_and_its_owner() {
        assert_eq!(queue_name_and_owner(QUEUE), Some(("work", "123456789012")));
        assert_eq!(queue_name_and_owner("nonsense"), None);
    }

    #[test]
    fn protocols_map_both_ways() {
        for p in [
            SubscriptionProtocol::Queue,
            SubscriptionProtocol::Function,
            SubscriptionProtocol::Https,
            SubscriptionProtocol::Email,
        ] {
            assert_eq!(portable_protocol(sns_protocol(p)), Some(p));
        }
        assert_eq!(portable_protocol("sms"), None);
    }
}
