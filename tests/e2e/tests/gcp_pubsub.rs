//! Topic and Queue on GCP end to end: a Pub/Sub topic, and a Pub/Sub subscription as a Queue,
//! against the Pub/Sub emulator, with the real controller binary and a real kube-apiserver.
//! Every check of what is in the emulator goes through its REST face, apart from the
//! controller's gRPC client. Skipped, loudly, when the emulator is not installed.

use cloudkit_crds::{Queue, Topic};
use cloudkit_e2e::gcp::Gcp;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, is_true, ready_at_generation};
use serde_json::json;

fn labels(resource: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    resource["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pubsub_topic_and_subscription_queue_create_update_drift_and_delete() {
    if Gcp::pubsub_or_skip("pubsub_topic_and_subscription_queue").is_none() {
        return;
    }
    let h = Harness::new("pubsub").await;
    let gcp = h.gcp_provider_config("gcp", None).await;
    let (topic, dlq_topic) = (h.gcp_name("events"), h.gcp_name("events-dead"));
    let (queue, dlq) = (h.gcp_name("orders"), h.gcp_name("orders-dead"));
    h.apply::<Topic>(
        &topic,
        json!({"providerConfigRef": {"name": "gcp"}, "tags": {"team": "data"}, "gcp": {"messageRetentionSeconds": 3600}}),
    )
    .await;
    h.apply::<Topic>(&dlq_topic, json!({"providerConfigRef": {"name": "gcp"}}))
        .await;
    h.apply::<Queue>(
        &dlq,
        json!({"providerConfigRef": {"name": "gcp"}, "gcp": {"topicRef": {"name": dlq_topic}}}),
    )
    .await;
    h.apply::<Queue>(
        &queue,
        json!({
            "providerConfigRef": {"name": "gcp"}, "tags": {"team": "data"}, "fifo": true,
            "visibilityTimeoutSeconds": 45, "messageRetentionSeconds": 7200,
            "deadLetter": {"queueRef": {"name": dlq}, "maxReceiveCount": 5},
            "gcp": {"topicRef": {"name": topic}}
        }),
    )
    .await;
    let t: Topic = h.wait(&topic, "Ready", ready_at_generation).await;
    let q: Queue = h.wait(&queue, "Ready", ready_at_generation).await;
    let t_status = t.status.expect("status");
    assert_eq!(t_status.arn, Some(gcp.path("topics", &topic)));
    let q_status = q.status.expect("status");
    assert_eq!(q_status.arn, Some(gcp.path("subscriptions", &queue)));
    assert_eq!(
        q_status.outputs.as_ref().and_then(|o| o.get("topic")),
        Some(&gcp.path("topics", &topic))
    );

    // Every mapped field, read back from the emulator.
    let found = gcp.pubsub_get("topics", &topic).await.expect("topic");
    assert_eq!(found["messageRetentionDuration"], "3600s", "{found}");
    let l = labels(&found);
    assert_eq!(l.get("team").map(String::as_str), Some("data"), "{found}");
    assert!(
        l.get("cloudkit-owner")
            .is_some_and(|o| o.starts_with(&format!("{}-topic-{topic}-", h.ns))),
        "{found}"
    );
    let sub = gcp.pubsub_get("subscriptions", &queue).await.expect("subscription");
    assert_eq!(sub["topic"], gcp.path("topics", &topic), "{sub}");
    assert_eq!(sub["ackDeadlineSeconds"], 45, "{sub}");
    assert_eq!(sub["messageRetentionDuration"], "7200s", "{sub}");
    assert_eq!(sub["enableMessageOrdering"], true, "{sub}");
    assert_eq!(
        sub["deadLetterPolicy"],
        json!({"deadLetterTopic": gcp.path("topics", &dlq_topic), "maxDeliveryAttempts": 5}),
        "the dead-letter queue's topic: {sub}"
    );
    assert!(labels(&sub).contains_key("cloudkit-owner"), "{sub}");

    // Update in place. (Labels are not changed here: the emulator refuses a `labels` update
    // mask, which Pub/Sub accepts; see docs/gcp.md.)
    h.apply::<Queue>(
        &queue,
        json!({
            "providerConfigRef": {"name": "gcp"}, "tags": {"team": "data"}, "fifo": true,
            "visibilityTimeoutSeconds": 60, "messageRetentionSeconds": 3600,
            "deadLetter": {"queueRef": {"name": dlq}, "maxReceiveCount": 10},
            "gcp": {"topicRef": {"name": topic}}
        }),
    )
    .await;
    h.apply::<Topic>(
        &topic,
        json!({"providerConfigRef": {"name": "gcp"}, "tags": {"team": "data"}, "gcp": {"messageRetentionSeconds": 7200}}),
    )
    .await;
    h.wait::<Queue>(&queue, "Ready at the new generation", ready_at_generation)
        .await;
    h.wait::<Topic>(&topic, "Ready at the new generation", ready_at_generation)
        .await;
    let sub = gcp.pubsub_get("subscriptions", &queue).await.expect("subscription");
    assert_eq!(sub["ackDeadlineSeconds"], 60, "{sub}");
    assert_eq!(sub["messageRetentionDuration"], "3600s", "{sub}");
    assert_eq!(sub["deadLetterPolicy"]["maxDeliveryAttempts"], 10, "{sub}");
    let found = gcp.pubsub_get("topics", &topic).await.expect("topic");
    assert_eq!(found["messageRetentionDuration"], "7200s", "{found}");

    // Ordering is fixed when the subscription is made: refused, nothing changed.
    h.merge_spec::<Queue>(&queue, json!({"fifo": false})).await;
    let (_, message) = h.wait_stalled_as::<Queue>(&queue, "ImmutableFieldChanged").await;
    assert!(message.contains("fifo"), "{message}");
    h.merge_spec::<Queue>(&queue, json!({"fifo": true})).await;
    h.wait::<Queue>(&queue, "Ready again", ready_at_generation).await;

    // Drift: the ack deadline and the topic's retention changed in Pub/Sub directly are
    // reported and set back.
    gcp.pubsub_patch(
        "subscriptions",
        &queue,
        "ack_deadline_seconds",
        json!({"ackDeadlineSeconds": 99}),
    )
    .await;
    gcp.pubsub_patch(
        "topics",
        &topic,
        "message_retention_duration",
        json!({"messageRetentionDuration": "900s"}),
    )
    .await;
    let q: Queue = h
        .wait(&queue, "drift reported", |q: &Queue| {
            q.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "visibilityTimeoutSeconds"))
        })
        .await;
    let drift = &q.status.as_ref().expect("status").drift;
    assert!(
        drift
            .iter()
            .any(|d| d.field == "visibilityTimeoutSeconds" && d.observed.contains("99")),
        "{drift:?}"
    );
    let t: Topic = h
        .wait(&topic, "topic drift reported", |t: &Topic| {
            t.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "messageRetentionSeconds"))
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    assert!(
        drift
            .iter()
            .any(|d| d.field == "messageRetentionSeconds" && d.desired == "7200" && d.observed == "900"),
        "{drift:?}"
    );
    eventually("ack deadline and retention set back", || async {
        let sub = gcp.pubsub_get("subscriptions", &queue).await.expect("subscription");
        let found = gcp.pubsub_get("topics", &topic).await.expect("topic");
        sub["ackDeadlineSeconds"] == 60 && found["messageRetentionDuration"] == "7200s"
    })
    .await;
    assert!(h.event_reasons(&queue).await.iter().any(|r| r == "DriftCorrected"));

    // Delete (the default for what CloudKit made): subscriptions first, then their topics.
    for q in [&queue, &dlq] {
        h.delete::<Queue>(q).await;
    }
    for t in [&topic, &dlq_topic] {
        h.delete::<Topic>(t).await;
    }
    for q in [&queue, &dlq] {
        h.wait_deleted::<Queue>(q).await;
    }
    for t in [&topic, &dlq_topic] {
        h.wait_deleted::<Topic>(t).await;
    }
    assert!(gcp.pubsub_get("subscriptions", &queue).await.is_none());
    assert!(gcp.pubsub_get("topics", &topic).await.is_none());
}

#[tokio::test]
async fn pubsub_retain_keeps_the_topic_and_the_owner_label_takes_it_back() {
    if Gcp::pubsub_or_skip("pubsub_retain").is_none() {
        return;
    }
    let h = Harness::new("pubsubretain").await;
    let gcp = h.gcp_provider_config("gcp", None).await;
    let topic = h.gcp_name("kept");
    let spec = json!({"providerConfigRef": {"name": "gcp"}, "deletionPolicy": "Retain", "tags": {"team": "a"}});
    h.apply::<Topic>(&topic, spec.clone()).await;
    h.wait::<Topic>(&topic, "Ready", ready_at_generation).await;
    h.delete::<Topic>(&topic).await;
    h.wait_deleted::<Topic>(&topic).await;
    assert!(
        gcp.pubsub_get("topics", &topic).await.is_some(),
        "Retain leaves the topic"
    );
    // The same object again: its owner label proves the topic is its own.
    h.apply::<Topic>(&topic, spec).await;
    h.wait::<Topic>(&topic, "Ready again", ready_at_generation).await;
    // A Queue with Retain leaves its subscription, and takes it back by its owner label.
    let queue = h.gcp_name("kept-sub");
    let queue_spec = json!({
        "providerConfigRef": {"name": "gcp"}, "deletionPolicy": "Retain", "visibilityTimeoutSeconds": 40,
        "gcp": {"topicRef": {"name": topic}}
    });
    h.apply::<Queue>(&queue, queue_spec.clone()).await;
    h.wait::<Queue>(&queue, "Ready", ready_at_generation).await;
    h.delete::<Queue>(&queue).await;
    h.wait_deleted::<Queue>(&queue).await;
    let sub = gcp.pubsub_get("subscriptions", &queue).await;
    assert!(
        sub.as_ref().is_some_and(|s| s["ackDeadlineSeconds"] == 40),
        "Retain leaves the subscription: {sub:?}"
    );
    h.apply::<Queue>(&queue, queue_spec).await;
    h.wait::<Queue>(&queue, "Ready again", ready_at_generation).await;
    // Another object naming it is refused: it is managed by the first.
    h.apply::<Topic>(
        "thief",
        json!({"providerConfigRef": {"name": "gcp"}, "externalName": topic, "tags": {"team": "a"}}),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Topic>("thief", "OwnedByAnother").await;
    assert!(message.contains("cloudkit-owner"), "{message}");
    // A topic made outside CloudKit is not taken by name alone.
    let outside = h.gcp_name("outside");
    gcp.pubsub_create("topics", &outside, json!({"labels": {"team": "old"}}))
        .await;
    h.apply::<Topic>(&outside, json!({"providerConfigRef": {"name": "gcp"}}))
        .await;
    h.wait_stalled_as::<Topic>(&outside, "AlreadyExists").await;
}

#[tokio::test]
async fn pubsub_adoption_by_external_name_manages_without_a_label_write() {
    if Gcp::pubsub_or_skip("pubsub_adoption_by_external_name").is_none() {
        return;
    }
    let h = Harness::new("pubsubadopt").await;
    let gcp = h.gcp_provider_config("gcp", None).await;
    // A topic and a subscription made outside CloudKit, with another tool's label.
    let (topic, sub) = (h.gcp_name("legacy"), h.gcp_name("legacy-sub"));
    gcp.pubsub_create("topics", &topic, json!({"labels": {"team": "old"}}))
        .await;
    gcp.pubsub_create(
        "subscriptions",
        &sub,
        json!({"topic": gcp.path("topics", &topic), "ackDeadlineSeconds": 20, "labels": {"team": "old"}}),
    )
    .await;
    // Adopted by externalName: the manifest's settings applied, their labels kept, and no
    // label written (the emulator would refuse one; see docs/gcp.md).
    h.apply::<Topic>(
        "adopted-topic",
        json!({"providerConfigRef": {"name": "gcp"}, "externalName": topic, "gcp": {"messageRetentionSeconds": 3600}}),
    )
    .await;
    h.apply::<Queue>(
        "adopted-queue",
        json!({
            "providerConfigRef": {"name": "gcp"}, "externalName": sub, "deletionPolicy": "Delete",
            "visibilityTimeoutSeconds": 30, "gcp": {"topicRef": {"name": "adopted-topic"}}
        }),
    )
    .await;
    let t: Topic = h.wait("adopted-topic", "Ready", ready_at_generation).await;
    let q: Queue = h.wait("adopted-queue", "Ready", ready_at_generation).await;
    assert_eq!(t.status.and_then(|s| s.arn), Some(gcp.path("topics", &topic)));
    assert_eq!(q.status.and_then(|s| s.arn), Some(gcp.path("subscriptions", &sub)));
    for name in ["adopted-topic", "adopted-queue"] {
        eventually(&format!("an Adopted event for {name}"), || async {
            h.event_reasons(name).await.iter().any(|r| r == "Adopted")
        })
        .await;
    }
    let found = gcp.pubsub_get("topics", &topic).await.expect("topic");
    assert_eq!(found["messageRetentionDuration"], "3600s", "{found}");
    let found_sub = gcp.pubsub_get("subscriptions", &sub).await.expect("subscription");
    assert_eq!(found_sub["ackDeadlineSeconds"], 30, "{found_sub}");
    let expected = std::collections::BTreeMap::from([("team".to_owned(), "old".to_owned())]);
    assert_eq!(labels(&found), expected, "labels as they were: {found}");
    assert_eq!(labels(&found_sub), expected, "labels as they were: {found_sub}");

    // Managed from then on: a change in Pub/Sub directly is set back, with no label write
    // on the way (that would stall with CloudRejected on the emulator).
    gcp.pubsub_patch(
        "subscriptions",
        &sub,
        "ack_deadline_seconds",
        json!({"ackDeadlineSeconds": 77}),
    )
    .await;
    let q: Queue = h
        .wait("adopted-queue", "drift reported", |q: &Queue| {
            q.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "visibilityTimeoutSeconds"))
        })
        .await;
    let drift = &q.status.as_ref().expect("status").drift;
    assert!(
        drift.iter().all(|d| !d.field.starts_with("tags")),
        "the missing owner label is no drift: {drift:?}"
    );
    eventually("the ack deadline set back", || async {
        gcp.pubsub_get("subscriptions", &sub).await.expect("subscription")["ackDeadlineSeconds"] == 30
    })
    .await;

    // Delete: the Queue says Delete, so the subscription goes; the Topic, adopted, keeps
    // the default for what was adopted (Retain), so the topic stays.
    h.delete::<Queue>("adopted-queue").await;
    h.wait_deleted::<Queue>("adopted-queue").await;
    assert!(
        gcp.pubsub_get("subscriptions", &sub).await.is_none(),
        "deletionPolicy: Delete deletes what was adopted"
    );
    h.delete::<Topic>("adopted-topic").await;
    h.wait_deleted::<Topic>("adopted-topic").await;
    assert!(
        gcp.pubsub_get("topics", &topic).await.is_some(),
        "an adopted topic is retained by default"
    );
    eventually("a Retained event", || async {
        h.event_reasons("adopted-topic").await.iter().any(|r| r == "Retained")
    })
    .await;
}

#[tokio::test]
async fn pubsub_invalid_and_unsupported_specs_stall_without_a_call() {
    if Gcp::pubsub_or_skip("pubsub_invalid_and_unsupported").is_none() {
        return;
    }
    let h = Harness::new("pubsubbad").await;
    let cloud = CountingEndpoint::start().await;
    h.gcp_provider_config("nowhere", Some(&cloud.url)).await;
    let pc = json!({"name": "nowhere"});
    // A Queue on GCP without a topic: says what to add.
    h.apply::<Queue>("orphan", json!({"providerConfigRef": pc})).await;
    let (_, message) = h.wait_stalled_as::<Queue>("orphan", "InvalidSpec").await;
    assert!(
        message.contains("spec.gcp.topicRef") && message.contains("add"),
        "{message}"
    );
    // Names and labels Pub/Sub refuses.
    h.apply::<Topic>(
        "badname",
        json!({"providerConfigRef": pc, "externalName": "goog-events", "tags": {"Team": "x"}}),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Topic>("badname", "InvalidSpec").await;
    assert!(
        message.contains("not a valid Pub/Sub topic name") && message.contains("spec.tags.Team"),
        "{message}"
    );
    // A subscription name and labels Pub/Sub refuses, on a Queue.
    h.apply::<Queue>(
        "badsub",
        json!({
            "providerConfigRef": pc, "externalName": "9starts-with-digit", "tags": {"env": "Prod"},
            "gcp": {"topicRef": {"name": "t"}}
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Queue>("badsub", "InvalidSpec").await;
    assert!(
        message.contains("spec.externalName") && message.contains("spec.tags.env"),
        "{message}"
    );
    // Pub/Sub's own ranges.
    h.apply::<Queue>(
        "range",
        json!({"providerConfigRef": pc, "visibilityTimeoutSeconds": 900, "gcp": {"topicRef": {"name": "t"}}}),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Queue>("range", "InvalidSpec").await;
    assert!(
        message.contains("spec.visibilityTimeoutSeconds") && message.contains("10 to 600"),
        "{message}"
    );
    // Portable fields Pub/Sub cannot honour: UnsupportedForProvider naming each.
    h.apply::<Queue>(
        "delayed",
        json!({
            "providerConfigRef": pc, "delaySeconds": 5, "receiveWaitTimeSeconds": 10, "maxMessageSizeBytes": 1024,
            "gcp": {"topicRef": {"name": "t"}}
        }),
    )
    .await;
    let (q, message) = h.wait_stalled_as::<Queue>("delayed", "UnsupportedForProvider").await;
    for field in [
        "spec.delaySeconds",
        "spec.receiveWaitTimeSeconds",
        "spec.maxMessageSizeBytes",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
    assert!(!is_true(&q, "Reconciling"), "needs a human, not a retry loop");
    h.apply::<Topic>(
        "fanout",
        json!({
            "providerConfigRef": pc, "fifo": true, "displayName": "Orders",
            "subscriptions": [{"protocol": "Queue", "queueRef": {"name": "orders"}}]
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Topic>("fanout", "UnsupportedForProvider").await;
    for field in ["spec.fifo", "spec.displayName", "spec.subscriptions[0]"] {
        assert!(message.contains(field), "{field} in {message}");
    }
    assert!(
        message.contains("spec.gcp.topicRef"),
        "says what to do instead: {message}"
    );

    for name in ["orphan", "badsub", "range", "delayed"] {
        h.delete::<Queue>(name).await;
        h.wait_deleted::<Queue>(name).await;
    }
    for name in ["badname", "fanout"] {
        h.delete::<Topic>(name).await;
        h.wait_deleted::<Topic>(name).await;
    }
    assert_eq!(
        cloud.connections(),
        0,
        "invalid or unsupported specs never reach the cloud"
    );
}
