//! Queue on SQS end to end: real kube-apiserver, real moto, the real controller binary.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use cloudkit_crds::Queue;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, is_true, ready_at_generation, ready_reason};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

async fn attributes(h: &Harness, name: &str) -> HashMap<Attr, String> {
    let url = queue_url(h, name)
        .await
        .unwrap_or_else(|| panic!("queue {name} exists"));
    h.sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Attr::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .cloned()
        .unwrap_or_default()
}

async fn queue_url(h: &Harness, name: &str) -> Option<String> {
    h.sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .ok()
        .and_then(|o| o.queue_url().map(str::to_owned))
}

async fn tags(h: &Harness, name: &str) -> Vec<(String, String)> {
    let url = queue_url(h, name).await.expect("queue exists");
    let out = h
        .sqs
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .expect("ListQueueTags");
    let mut t: Vec<_> = out
        .tags()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t.sort();
    t
}

async fn secret_data(h: &Harness, name: &str) -> Option<HashMap<String, String>> {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let s = secrets.get_opt(name).await.expect("get secret")?;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn create_update_drift_and_delete() {
    let h = Harness::new("q-lifecycle").await;
    let name = h.bucket_name("orders");
    h.apply::<Queue>(
        &name,
        json!({
            "visibilityTimeoutSeconds": 45, "messageRetentionSeconds": 86400, "delaySeconds": 5,
            "maxMessageSizeBytes": 131072, "receiveWaitTimeSeconds": 10,
            "tags": {"team": "orders"}, "writeConnectionSecretToRef": {"name": "orders-conn"}
        }),
    )
    .await;
    let q: Queue = h.wait(&name, "Ready", ready_at_generation).await;
    let status = q.status.clone().expect("status");
    let attrs = attributes(&h, &name).await;
    for (attr, want) in [
        (Attr::VisibilityTimeout, "45"),
        (Attr::MessageRetentionPeriod, "86400"),
        (Attr::DelaySeconds, "5"),
        (Attr::MaximumMessageSize, "131072"),
        (Attr::ReceiveMessageWaitTimeSeconds, "10"),
    ] {
        assert_eq!(attrs.get(&attr).map(String::as_str), Some(want), "{attr}");
    }
    assert_eq!(status.arn.as_ref(), attrs.get(&Attr::QueueArn));
    assert_eq!(status.url, queue_url(&h, &name).await);
    let owner = h.owner_tag("Queue", &name);
    assert_eq!(
        tags(&h, &name).await,
        [owner.clone(), ("team".to_owned(), "orders".to_owned())]
    );

    // Applications read the outputs from the connection Secret.
    let conn = secret_data(&h, "orders-conn").await.expect("connection Secret written");
    assert_eq!(conn.get("url"), status.url.as_ref());
    assert_eq!(conn.get("arn"), status.arn.as_ref());
    assert_eq!(conn.get("name"), Some(&name));
    assert_eq!(conn.get("region").map(String::as_str), Some("us-east-1"));

    // Every mutable field changes in place.
    h.apply::<Queue>(
        &name,
        json!({
            "visibilityTimeoutSeconds": 60, "messageRetentionSeconds": 3600, "delaySeconds": 0,
            "maxMessageSizeBytes": 2048, "receiveWaitTimeSeconds": 20,
            "tags": {"team": "billing", "env": "test"}, "writeConnectionSecretToRef": {"name": "orders-conn"}
        }),
    )
    .await;
    let q: Queue = h
        .wait(&name, "generation 2 Ready", |q: &Queue| {
            q.metadata.generation == Some(2) && ready_at_generation(q)
        })
        .await;
    assert_eq!(q.status.as_ref().and_then(|s| s.observed_generation), Some(2));
    let attrs = attributes(&h, &name).await;
    for (attr, want) in [
        (Attr::VisibilityTimeout, "60"),
        (Attr::MessageRetentionPeriod, "3600"),
        (Attr::DelaySeconds, "0"),
        (Attr::MaximumMessageSize, "2048"),
        (Attr::ReceiveMessageWaitTimeSeconds, "20"),
    ] {
        assert_eq!(attrs.get(&attr).map(String::as_str), Some(want), "{attr}");
    }
    assert_eq!(
        tags(&h, &name).await,
        [
            owner.clone(),
            ("env".to_owned(), "test".to_owned()),
            ("team".to_owned(), "billing".to_owned())
        ]
    );

    // A change made outside CloudKit is reported field by field and set back.
    let url = queue_url(&h, &name).await.expect("url");
    h.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(Attr::VisibilityTimeout, "999")
        .send()
        .await
        .expect("SetQueueAttributes");
    let q: Queue = h
        .wait(&name, "drift reported", |q: &Queue| {
            q.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &q.status.as_ref().expect("status").drift;
    assert_eq!(drift[0].field, "visibilityTimeoutSeconds");
    assert_eq!((drift[0].desired.as_str(), drift[0].observed.as_str()), ("60", "999"));
    eventually("visibility set back", || async {
        attributes(&h, &name)
            .await
            .get(&Attr::VisibilityTimeout)
            .map(String::as_str)
            == Some("60")
    })
    .await;

    // The same emulator under another host name is another endpoint: the queue stays where
    // it was made (ProviderChanged, no second queue there), and heals when put back.
    if h.endpoint.contains("127.0.0.1") {
        let renamed = h.endpoint.replace("127.0.0.1", "localhost");
        h.provider_config("default", &renamed).await;
        let (_, message) = h.wait_stalled_as::<Queue>(&name, "ProviderChanged").await;
        assert!(message.contains("localhost"), "{message}");
        h.provider_config("default", &h.endpoint).await;
        h.wait(&name, "Ready once the endpoint is put back", |q: &Queue| {
            ready_at_generation(q)
                && q.status
                    .as_ref()
                    .and_then(|s| s.url.as_deref())
                    .is_some_and(|u| u.contains("127.0.0.1"))
        })
        .await;
        let conn = secret_data(&h, "orders-conn").await.expect("connection Secret");
        assert!(conn.get("url").is_some_and(|u| u.contains("127.0.0.1")), "{conn:?}");
    }

    h.delete::<Queue>(&name).await;
    h.wait_deleted::<Queue>(&name).await;
    assert_eq!(queue_url(&h, &name).await, None, "Delete policy removes the queue");
    assert!(
        secret_data(&h, "orders-conn").await.is_none(),
        "the connection Secret goes with it"
    );
    let reasons = h.event_reasons(&name).await;
    for r in ["Created", "Updated", "DriftCorrected", "Deleted"] {
        assert!(reasons.contains(&r.to_owned()), "{r} missing from {reasons:?}");
    }
}

#[tokio::test]
async fn dead_letter_queue_is_waited_for_then_wired() {
    let h = Harness::new("q-dlq").await;
    let main = h.bucket_name("work");
    let dlq = h.bucket_name("work-dlq");
    // Applied before its dead-letter queue exists: waits, with no SQS call for it.
    h.apply::<Queue>(
        &main,
        json!({"deadLetter": {"queueRef": {"name": dlq}, "maxReceiveCount": 4}}),
    )
    .await;
    let q: Queue = h
        .wait(&main, "DependencyNotFound", |q: &Queue| {
            ready_reason(q).as_deref() == Some("DependencyNotFound")
        })
        .await;
    assert!(is_true(&q, "Reconciling") && !is_true(&q, "Stalled"), "{:?}", q.status);
    let message = cloudkit_e2e::condition(q.status.as_ref(), "Ready")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("Queue/{dlq} (spec.deadLetter.queueRef) does not exist")),
        "{message}"
    );
    assert_eq!(
        queue_url(&h, &main).await,
        None,
        "nothing is created while a dependency is missing"
    );

    h.apply::<Queue>(&dlq, json!({"messageRetentionSeconds": 1209600}))
        .await;
    let d: Queue = h.wait(&dlq, "Ready", ready_at_generation).await;
    h.wait(&main, "Ready", ready_at_generation::<Queue>).await;
    let policy: serde_json::Value = serde_json::from_str(
        attributes(&h, &main)
            .await
            .get(&Attr::RedrivePolicy)
            .expect("RedrivePolicy"),
    )
    .expect("policy is JSON");
    assert_eq!(
        policy["deadLetterTargetArn"].as_str(),
        d.status.and_then(|s| s.arn).as_deref()
    );
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "4");

    // Taking the dead-letter queue out of the spec removes the redrive policy.
    h.merge_spec::<Queue>(&main, json!({"deadLetter": null})).await;
    h.wait(&main, "generation 2 Ready", |q: &Queue| {
        q.metadata.generation == Some(2) && ready_at_generation(q)
    })
    .await;
    let redrive = attributes(&h, &main)
        .await
        .get(&Attr::RedrivePolicy)
        .cloned()
        .unwrap_or_default();
    assert!(redrive.is_empty(), "redrive policy left behind: {redrive}");
}

#[tokio::test]
async fn fifo_is_fixed_at_creation() {
    let h = Harness::new("q-fifo").await;
    let name = format!("{}-jobs.fifo", h.ns);
    h.apply::<Queue>(
        "jobs",
        json!({"externalName": name, "fifo": true, "aws": {"contentBasedDeduplication": true}}),
    )
    .await;
    h.wait("jobs", "Ready", ready_at_generation::<Queue>).await;
    let attrs = attributes(&h, &name).await;
    assert_eq!(attrs.get(&Attr::FifoQueue).map(String::as_str), Some("true"));
    assert_eq!(
        attrs.get(&Attr::ContentBasedDeduplication).map(String::as_str),
        Some("true")
    );

    // Turning FIFO off would need another queue: the spec is refused, the queue untouched.
    h.apply::<Queue>("jobs", json!({"externalName": name, "fifo": false}))
        .await;
    let (_, message) = h.wait_stalled_as::<Queue>("jobs", "InvalidSpec").await;
    assert!(message.contains("only FIFO queues may end in '.fifo'"), "{message}");
    let attrs = attributes(&h, &name).await;
    assert_eq!(attrs.get(&Attr::FifoQueue).map(String::as_str), Some("true"));
    assert_eq!(
        attrs.get(&Attr::ContentBasedDeduplication).map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn adopts_by_external_name_and_retains() {
    let h = Harness::new("q-adopt").await;
    let existing = h.bucket_name("legacy");
    h.sqs
        .create_queue()
        .queue_name(&existing)
        .attributes(Attr::VisibilityTimeout, "100")
        .send()
        .await
        .expect("CreateQueue");
    h.apply::<Queue>("legacy", json!({"externalName": existing, "deletionPolicy": "Retain"}))
        .await;
    h.wait("legacy", "Ready", ready_at_generation::<Queue>).await;
    assert!(h.event_reasons("legacy").await.contains(&"Adopted".to_owned()));
    assert_eq!(
        attributes(&h, &existing)
            .await
            .get(&Attr::VisibilityTimeout)
            .map(String::as_str),
        Some("30"),
        "an adopted queue converges to the manifest (and its defaults)"
    );

    // Same name without asking for adoption: hands off.
    let unowned = h.bucket_name("unowned");
    h.sqs
        .create_queue()
        .queue_name(&unowned)
        .send()
        .await
        .expect("CreateQueue");
    h.apply::<Queue>(&unowned, json!({"delaySeconds": 9})).await;
    let (_, message) = h.wait_stalled_as::<Queue>(&unowned, "AlreadyExists").await;
    assert!(message.contains("set spec.externalName"), "{message}");
    assert_eq!(
        attributes(&h, &unowned)
            .await
            .get(&Attr::DelaySeconds)
            .map(String::as_str),
        Some("0")
    );

    h.delete::<Queue>("legacy").await;
    h.wait_deleted::<Queue>("legacy").await;
    assert!(
        queue_url(&h, &existing).await.is_some(),
        "Retain leaves the queue in the cloud"
    );
}

#[tokio::test]
async fn invalid_spec_stalls_with_every_problem_and_no_cloud_call() {
    let h = Harness::new("q-invalid").await;
    let cloud = CountingEndpoint::start().await;
    h.provider_config("watched", &cloud.url).await;
    h.apply::<Queue>(
        "bad",
        json!({
            "providerConfigRef": {"name": "watched"},
            "externalName": "has spaces",
            "visibilityTimeoutSeconds": 50000,
            "deadLetter": {"queueRef": {"name": "bad"}, "maxReceiveCount": 0},
            "aws": {"contentBasedDeduplication": true}
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Queue>("bad", "InvalidSpec").await;
    for field in [
        "spec.externalName",
        "spec.aws.contentBasedDeduplication",
        "spec.visibilityTimeoutSeconds: 50000 is out of range: use 0 to 43200",
        "spec.deadLetter.maxReceiveCount",
        "spec.deadLetter.queueRef: refers to this Queue itself",
    ] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }
    assert!(h.event_reasons("bad").await.contains(&"InvalidSpec".to_owned()));
    h.delete::<Queue>("bad").await;
    h.wait_deleted::<Queue>("bad").await;
    assert_eq!(cloud.connections(), 0, "an invalid spec must not reach the cloud");
}
