//! Topic on SNS end to end: real kube-apiserver, real moto, the real controller binary.

use std::collections::HashMap;

use aws_sdk_sns::types::Tag;
use aws_sdk_sqs::types::QueueAttributeName as QueueAttr;
use cloudkit_crds::{Function, Queue, Topic};
use cloudkit_e2e::{CountingEndpoint, Harness, condition, eventually, is_true, ready_at_generation, ready_reason};
use serde_json::{Value, json};

/// The topic's ARN, found the way a user would: by its name in ListTopics.
async fn topic_arn(h: &Harness, name: &str) -> Option<String> {
    let mut token = None;
    loop {
        let page = h
            .sns
            .list_topics()
            .set_next_token(token)
            .send()
            .await
            .expect("ListTopics");
        if let Some(arn) = page
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.rsplit(':').next() == Some(name))
        {
            return Some(arn.to_owned());
        }
        token = page.next_token().map(str::to_owned);
        token.as_ref()?;
    }
}

async fn attributes(h: &Harness, arn: &str) -> HashMap<String, String> {
    h.sns
        .get_topic_attributes()
        .topic_arn(arn)
        .send()
        .await
        .expect("GetTopicAttributes")
        .attributes()
        .cloned()
        .unwrap_or_default()
}

async fn tags(h: &Harness, arn: &str) -> Vec<(String, String)> {
    let out = h
        .sns
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("ListTagsForResource");
    let mut t: Vec<_> = out
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    t.sort();
    t
}

/// (protocol, endpoint) → subscription attributes, for every subscription of the topic.
async fn subscriptions(h: &Harness, arn: &str) -> HashMap<(String, String), HashMap<String, String>> {
    let out = h
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(arn)
        .send()
        .await
        .expect("ListSubscriptionsByTopic");
    let mut subs = HashMap::new();
    for s in out.subscriptions() {
        let attrs = h
            .sns
            .get_subscription_attributes()
            .subscription_arn(s.subscription_arn().expect("ARN"))
            .send()
            .await
            .expect("GetSubscriptionAttributes")
            .attributes()
            .cloned()
            .unwrap_or_default();
        subs.insert(
            (
                s.protocol().unwrap_or_default().to_owned(),
                s.endpoint().unwrap_or_default().to_owned(),
            ),
            attrs,
        );
    }
    subs
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn queue_url(h: &Harness, name: &str) -> String {
    h.sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url()
        .expect("URL")
        .to_owned()
}

async fn queue_policy(h: &Harness, name: &str) -> Option<Value> {
    let url = queue_url(h, name).await;
    let out = h
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttr::Policy)
        .send()
        .await
        .expect("GetQueueAttributes");
    out.attributes()
        .and_then(|a| a.get(&QueueAttr::Policy))
        .filter(|p| !p.is_empty())
        .map(|p| json_of(p))
}

/// The Sids of the queue policy's statements.
async fn policy_sids(h: &Harness, name: &str) -> Vec<String> {
    let Some(policy) = queue_policy(h, name).await else {
        return Vec::new();
    };
    let mut sids: Vec<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["Sid"].as_str().map(str::to_owned))
        .collect();
    sids.sort();
    sids
}

/// Quiet resyncs (every 2s here) find nothing to change: no drift, and the status is not rewritten.
async fn assert_quiet(h: &Harness, name: &str) {
    let before = h.api::<Topic>().get(name).await.expect("get topic").status;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let after = h.api::<Topic>().get(name).await.expect("get topic").status;
    assert!(after.as_ref().is_some_and(|s| s.drift.is_empty()), "{after:#?}");
    assert_eq!(before, after, "a quiet resync rewrote the status");
}

fn generation_ready(generation: i64) -> impl Fn(&Topic) -> bool {
    move |t: &Topic| t.metadata.generation == Some(generation) && ready_at_generation(t)
}

#[tokio::test]
async fn create_update_drift_and_delete() {
    let h = Harness::new("t-lifecycle").await;
    let name = h.bucket_name("events");
    let hook = "https://hooks.example.com/orders";
    h.apply::<Topic>(
        &name,
        json!({
            "displayName": "Orders", "tags": {"team": "orders"},
            "subscriptions": [
                {"protocol": "Https", "endpoint": hook, "rawMessageDelivery": true,
                 "filterPolicy": "{ \"store\": [\"north\"],\n  \"event\": [\"created\", \"paid\"] }"},
                {"protocol": "Email", "endpoint": "ops@example.com"}
            ]
        }),
    )
    .await;
    let t: Topic = h.wait(&name, "Ready", ready_at_generation).await;
    let status = t.status.clone().expect("status");
    let arn = topic_arn(&h, &name).await.expect("topic created");
    assert_eq!(status.arn.as_ref(), Some(&arn));
    assert_eq!(status.id.as_ref(), Some(&arn));
    let attrs = attributes(&h, &arn).await;
    assert_eq!(attrs.get("DisplayName").map(String::as_str), Some("Orders"));
    let owner = h.owner_tag("Topic", &name);
    assert_eq!(
        tags(&h, &arn).await,
        [owner.clone(), ("team".to_owned(), "orders".to_owned())]
    );
    let subs = subscriptions(&h, &arn).await;
    assert_eq!(subs.len(), 2, "{subs:?}");
    let https = &subs[&("https".to_owned(), hook.to_owned())];
    assert_eq!(
        https.get("RawMessageDelivery").map(|v| v.to_lowercase()),
        Some("true".into())
    );
    assert_eq!(
        json_of(https.get("FilterPolicy").expect("FilterPolicy")),
        json!({"event": ["created", "paid"], "store": ["north"]})
    );
    let email = &subs[&("email".to_owned(), "ops@example.com".to_owned())];
    assert!(email.get("FilterPolicy").is_none_or(|p| p.is_empty()), "{email:?}");

    // Every mutable setting changes in place; a removed subscription is unsubscribed.
    h.apply::<Topic>(
        &name,
        json!({
            "displayName": "Orders v2", "tags": {"team": "billing", "env": "test"},
            "subscriptions": [
                {"protocol": "Https", "endpoint": hook, "filterPolicy": "{\"event\": [\"refunded\"]}"},
                {"protocol": "Email", "endpoint": "billing@example.com"}
            ]
        }),
    )
    .await;
    let t: Topic = h.wait(&name, "generation 2 Ready", generation_ready(2)).await;
    assert_eq!(t.status.as_ref().and_then(|s| s.observed_generation), Some(2));
    assert_eq!(
        attributes(&h, &arn).await.get("DisplayName").map(String::as_str),
        Some("Orders v2")
    );
    assert_eq!(
        tags(&h, &arn).await,
        [
            owner.clone(),
            ("env".to_owned(), "test".to_owned()),
            ("team".to_owned(), "billing".to_owned())
        ]
    );
    let subs = subscriptions(&h, &arn).await;
    let mut keys: Vec<_> = subs.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("email".to_owned(), "billing@example.com".to_owned()),
            ("https".to_owned(), hook.to_owned())
        ]
    );
    let https = &subs[&("https".to_owned(), hook.to_owned())];
    assert_eq!(
        https.get("RawMessageDelivery").map(|v| v.to_lowercase()),
        Some("false".into())
    );
    assert_eq!(json_of(&https["FilterPolicy"]), json!({"event": ["refunded"]}));
    assert_quiet(&h, &name).await;

    // Changes made outside CloudKit are reported field by field and set back.
    h.sns
        .set_topic_attributes()
        .topic_arn(&arn)
        .attribute_name("DisplayName")
        .attribute_value("hacked")
        .send()
        .await
        .expect("SetTopicAttributes");
    h.sns
        .tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("team").value("intruder").build().expect("tag"))
        .send()
        .await
        .expect("TagResource");
    let t: Topic = h
        .wait(&name, "drift reported", |t: &Topic| {
            t.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    let fields: Vec<&str> = drift.iter().map(|d| d.field.as_str()).collect();
    assert!(
        fields.contains(&"displayName") || fields.contains(&"tags.team"),
        "{drift:?}"
    );
    eventually("display name and tag set back", || async {
        attributes(&h, &arn).await.get("DisplayName").map(String::as_str) == Some("Orders v2")
            && tags(&h, &arn)
                .await
                .contains(&("team".to_owned(), "billing".to_owned()))
    })
    .await;

    h.delete::<Topic>(&name).await;
    h.wait_deleted::<Topic>(&name).await;
    assert_eq!(topic_arn(&h, &name).await, None, "Delete policy removes the topic");
    let reasons = h.event_reasons(&name).await;
    for r in ["Created", "Updated", "DriftCorrected", "Deleted"] {
        assert!(reasons.contains(&r.to_owned()), "{r} missing from {reasons:?}");
    }
}

#[tokio::test]
async fn queue_subscription_waits_for_the_queue_then_delivers() {
    let h = Harness::new("t-queue").await;
    let topic = h.bucket_name("orders");
    let queue = h.bucket_name("orders-worker");
    let filter = "{\"event\": [\"created\"]}";
    // Applied before its queue exists: waits, with no SNS call for it.
    h.apply::<Topic>(
        &topic,
        json!({"subscriptions": [
            {"protocol": "Queue", "queueRef": {"name": queue}, "rawMessageDelivery": true, "filterPolicy": filter}
        ]}),
    )
    .await;
    let t: Topic = h
        .wait(&topic, "DependencyNotFound", |t: &Topic| {
            ready_reason(t).as_deref() == Some("DependencyNotFound")
        })
        .await;
    assert!(is_true(&t, "Reconciling") && !is_true(&t, "Stalled"), "{:?}", t.status);
    let message = condition(t.status.as_ref(), "Ready")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "Queue/{queue} (spec.subscriptions[0].queueRef) does not exist"
        )),
        "{message}"
    );
    assert_eq!(
        topic_arn(&h, &topic).await,
        None,
        "nothing is created while a dependency is missing"
    );

    h.apply::<Queue>(&queue, json!({})).await;
    let q: Queue = h.wait(&queue, "Ready", ready_at_generation).await;
    let queue_arn = q.status.as_ref().and_then(|s| s.arn.clone()).expect("queue ARN");
    let t: Topic = h.wait(&topic, "Ready", ready_at_generation).await;
    let arn = t.status.as_ref().and_then(|s| s.arn.clone()).expect("topic ARN");
    let subs = subscriptions(&h, &arn).await;
    let sub = subs
        .get(&("sqs".to_owned(), queue_arn.clone()))
        .unwrap_or_else(|| panic!("{subs:?}"));
    assert_eq!(
        sub.get("RawMessageDelivery").map(|v| v.to_lowercase()),
        Some("true".into())
    );
    assert_eq!(json_of(&sub["FilterPolicy"]), json_of(filter));

    // The queue's policy lets this topic, and only this topic, send to it.
    let policy = queue_policy(&h, &queue).await.expect("queue policy");
    let statements = policy["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{policy}");
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(s["Principal"], json!({"Service": "sns.amazonaws.com"}));
    assert_eq!(s["Action"], "sqs:SendMessage");
    assert_eq!(s["Resource"].as_str(), Some(queue_arn.as_str()));
    assert_eq!(
        s["Condition"]["ArnEquals"]["aws:SourceArn"].as_str(),
        Some(arn.as_str())
    );
    let ours = s["Sid"].as_str().expect("Sid").to_owned();
    assert_quiet(&h, &topic).await;

    // Messages that pass the filter arrive raw.
    h.sns
        .publish()
        .topic_arn(&arn)
        .message("hello")
        .message_attributes(
            "event",
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("created")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("Publish");
    let url = queue_url(&h, &queue).await;
    let received = h
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("ReceiveMessage");
    let bodies: Vec<&str> = received.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["hello"]);

    // Someone replaces the queue policy: the topic's statement comes back, theirs stays.
    let theirs = json!({"Sid": "theirs", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sqs:GetQueueAttributes",
        "Resource": queue_arn});
    h.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttr::Policy,
            json!({"Version": "2012-10-17", "Statement": [theirs]}).to_string(),
        )
        .send()
        .await
        .expect("SetQueueAttributes");
    let t: Topic = h
        .wait(&topic, "drift reported", |t: &Topic| {
            t.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    assert_eq!(
        drift[0].field,
        format!("subscriptions.Queue:{queue_arn}.deliveryAllowed"),
        "{drift:?}"
    );
    let mut want = vec![ours.clone(), "theirs".to_owned()];
    want.sort();
    eventually("the topic's statement restored next to theirs", || async {
        policy_sids(&h, &queue).await == want
    })
    .await;

    // Taking the subscription out of the spec unsubscribes it and takes back only our grant.
    h.apply::<Topic>(&topic, json!({})).await;
    h.wait(&topic, "generation 2 Ready", generation_ready(2)).await;
    assert!(subscriptions(&h, &arn).await.is_empty(), "subscription left behind");
    assert_eq!(policy_sids(&h, &queue).await, ["theirs"]);
}

#[tokio::test]
async fn fifo_is_fixed_at_creation() {
    let h = Harness::new("t-fifo").await;
    let name = format!("{}-jobs.fifo", h.ns);
    h.apply::<Topic>(
        "jobs",
        json!({"externalName": name, "fifo": true, "aws": {"contentBasedDeduplication": true}}),
    )
    .await;
    let t: Topic = h.wait("jobs", "Ready", ready_at_generation::<Topic>).await;
    let arn = t.status.as_ref().and_then(|s| s.arn.clone()).expect("ARN");
    let attrs = attributes(&h, &arn).await;
    assert_eq!(attrs.get("FifoTopic").map(|v| v.to_lowercase()), Some("true".into()));
    assert_eq!(
        attrs.get("ContentBasedDeduplication").map(|v| v.to_lowercase()),
        Some("true".into())
    );

    // Turning FIFO off would need another topic: the spec is refused, the topic untouched.
    h.apply::<Topic>("jobs", json!({"externalName": name, "fifo": false}))
        .await;
    let (_, message) = h.wait_stalled_as::<Topic>("jobs", "InvalidSpec").await;
    assert!(message.contains("only FIFO topics may end in '.fifo'"), "{message}");
    assert!(topic_arn(&h, &name).await.is_some());

    // The live topic no longer FIFO (only the emulator allows this): the loop refuses to
    // touch a field SNS fixes at creation instead of trying to change it.
    h.apply::<Topic>(
        "jobs",
        json!({"externalName": name, "fifo": true, "aws": {"contentBasedDeduplication": true}}),
    )
    .await;
    h.wait("jobs", "generation 3 Ready", generation_ready(3)).await;
    h.sns
        .set_topic_attributes()
        .topic_arn(&arn)
        .attribute_name("FifoTopic")
        .attribute_value("false")
        .send()
        .await
        .expect("SetTopicAttributes");
    let (_, message) = h.wait_stalled_as::<Topic>("jobs", "ImmutableFieldChanged").await;
    assert!(message.contains("spec.fifo"), "{message}");
    assert!(topic_arn(&h, &name).await.is_some(), "the topic is left in place");
}

#[tokio::test]
async fn adopts_by_external_name_and_retains() {
    let h = Harness::new("t-adopt").await;
    let existing = h.bucket_name("legacy");
    let arn = h
        .sns
        .create_topic()
        .name(&existing)
        .attributes("DisplayName", "Legacy")
        .tags(Tag::builder().key("old").value("yes").build().expect("tag"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("ARN")
        .to_owned();
    h.apply::<Topic>(
        "legacy",
        json!({"externalName": existing, "deletionPolicy": "Retain", "displayName": "Adopted", "tags": {"new": "yes"}}),
    )
    .await;
    let t: Topic = h.wait("legacy", "Ready", ready_at_generation::<Topic>).await;
    assert_eq!(t.status.and_then(|s| s.arn), Some(arn.clone()));
    assert!(h.event_reasons("legacy").await.contains(&"Adopted".to_owned()));
    assert_eq!(
        attributes(&h, &arn).await.get("DisplayName").map(String::as_str),
        Some("Adopted")
    );
    assert_eq!(
        tags(&h, &arn).await,
        [
            h.owner_tag("Topic", "legacy"),
            ("new".to_owned(), "yes".to_owned()),
            // Its own tag from before: not CloudKit's to remove.
            ("old".to_owned(), "yes".to_owned())
        ]
    );

    // Same name without asking for adoption: hands off.
    let unowned = h.bucket_name("unowned");
    let unowned_arn = h
        .sns
        .create_topic()
        .name(&unowned)
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("ARN")
        .to_owned();
    h.apply::<Topic>(&unowned, json!({"displayName": "Mine"})).await;
    let (_, message) = h.wait_stalled_as::<Topic>(&unowned, "AlreadyExists").await;
    assert!(message.contains("set spec.externalName"), "{message}");
    assert_eq!(
        attributes(&h, &unowned_arn)
            .await
            .get("DisplayName")
            .map(String::as_str),
        Some("")
    );

    h.delete::<Topic>("legacy").await;
    h.wait_deleted::<Topic>("legacy").await;
    assert!(
        topic_arn(&h, &existing).await.is_some(),
        "Retain leaves the topic in the cloud"
    );
}

#[tokio::test]
async fn invalid_spec_stalls_with_every_problem_and_no_cloud_call() {
    let h = Harness::new("t-invalid").await;
    let cloud = CountingEndpoint::start().await;
    h.provider_config("watched", &cloud.url).await;
    h.apply::<Topic>(
        "bad",
        json!({
            "providerConfigRef": {"name": "watched"},
            "externalName": "has spaces",
            "aws": {"contentBasedDeduplication": true},
            "subscriptions": [
                {"protocol": "Queue", "endpoint": "https://example.com"},
                {"protocol": "Email", "endpoint": "nobody"},
                {"protocol": "Https", "endpoint": "https://example.com", "filterPolicy": "[1]"},
                {"protocol": "Https", "endpoint": "https://example.com"}
            ]
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Topic>("bad", "InvalidSpec").await;
    for field in [
        "spec.externalName: 'has spaces' is not a valid SNS topic name",
        "spec.aws.contentBasedDeduplication",
        "spec.subscriptions[0].queueRef: is required for protocol Queue",
        "spec.subscriptions[0].endpoint: does not apply to protocol Queue",
        "spec.subscriptions[1].endpoint: must be an email address",
        "spec.subscriptions[2].filterPolicy: must be a JSON object",
        "spec.subscriptions[3]: duplicates spec.subscriptions[2]",
    ] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }
    assert!(h.event_reasons("bad").await.contains(&"InvalidSpec".to_owned()));
    h.delete::<Topic>("bad").await;
    h.wait_deleted::<Topic>("bad").await;
    assert_eq!(cloud.connections(), 0, "an invalid spec must not reach the cloud");
}

/// The statements of a function's resource policy that name `topic_arn` as their source.
async fn invoke_grants(h: &Harness, function: &str, topic_arn: &str) -> Vec<Value> {
    let policy = match h.lambda.get_policy().function_name(function).send().await {
        Ok(out) => json_of(out.policy().unwrap_or("{}")),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            json!({})
        }
        Err(e) => panic!("GetPolicy {function}: {e:?}"),
    };
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Condition"].to_string().contains(topic_arn))
        .cloned()
        .collect()
}

#[tokio::test]
async fn function_subscription_grants_invoke() {
    let h = Harness::new("t-function").await;
    let topic = h.bucket_name("jobs");
    let function = h.bucket_name("jobs-handler");
    let role = h.iam_role().await;
    // moto runs no code without Docker, and does not check that the archive is a zip.
    h.apply::<Function>(
        &function,
        json!({
            "runtime": "python3.12", "handler": "app.handler",
            "code": {"zipBase64": "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMQo="}, "aws": {"roleArn": role}
        }),
    )
    .await;
    h.apply::<Topic>(
        &topic,
        json!({"subscriptions": [{"protocol": "Function", "functionRef": {"name": function}}]}),
    )
    .await;
    let f: Function = h.wait(&function, "Ready", ready_at_generation).await;
    let function_arn = f.status.as_ref().and_then(|s| s.arn.clone()).expect("function ARN");
    let t: Topic = h.wait(&topic, "Ready", ready_at_generation).await;
    let arn = t.status.as_ref().and_then(|s| s.arn.clone()).expect("topic ARN");
    let subs = subscriptions(&h, &arn).await;
    assert!(
        subs.contains_key(&("lambda".to_owned(), function_arn.clone())),
        "{subs:?}"
    );
    let grants = invoke_grants(&h, &function, &arn).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["Action"], "lambda:InvokeFunction");
    assert_eq!(grants[0]["Principal"], json!({"Service": "sns.amazonaws.com"}));
    assert_quiet(&h, &topic).await;

    // Taking the subscription out unsubscribes it and takes the permission back.
    h.apply::<Topic>(&topic, json!({})).await;
    h.wait(&topic, "generation 2 Ready", generation_ready(2)).await;
    assert!(subscriptions(&h, &arn).await.is_empty(), "subscription left behind");
    assert!(
        invoke_grants(&h, &function, &arn).await.is_empty(),
        "permission left behind"
    );

    // The edge belongs to the Topic: a Function asking for a topic trigger is told where to put it.
    h.apply::<Function>(
        &function,
        json!({
            "runtime": "python3.12", "handler": "app.handler",
            "code": {"zipBase64": "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMQo="}, "aws": {"roleArn": role},
            "triggers": [{"topicRef": {"name": topic}}]
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Function>(&function, "InvalidSpec").await;
    assert!(
        message.contains(&format!("to Topic/{topic}'s spec.subscriptions")),
        "{message}"
    );
    assert!(
        subscriptions(&h, &arn).await.is_empty(),
        "nothing subscribed behind the Topic's back"
    );
}
