//! Queue on Azure end to end: real kube-apiserver, Azurite, the real controller binary.
//! Every check of what is in Azurite goes through the tests' own REST client.

use std::collections::BTreeMap;

use cloudkit_crds::Queue;
use cloudkit_e2e::{Azurite, CountingEndpoint, Harness, eventually, is_true, ready_at_generation};
use serde_json::json;

fn has_tags(metadata: &BTreeMap<String, String>, tags: &[(&str, &str)]) -> bool {
    tags.iter()
        .all(|(k, v)| metadata.get(*k).map(String::as_str) == Some(*v))
}

async fn metadata(az: &Azurite, name: &str) -> BTreeMap<String, String> {
    let r = az.queue(name).await;
    assert_eq!(r.status, 200, "GetQueueMetadata {name}: {}", r.body);
    r.metadata()
}

#[tokio::test]
async fn azure_queue_create_update_drift_delete_and_retain() {
    let h = Harness::new("azqueue").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("jobs", false);
    h.apply::<Queue>(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "tags": {"team": "data", "env": "test"}}),
    )
    .await;
    let q: Queue = h.wait(&name, "Ready", ready_at_generation).await;
    let status = q.status.clone().expect("status");
    assert_eq!(status.url, Some(format!("{}/{name}", az.queue)));
    assert!(
        status.id.as_deref().is_some_and(|id| id.ends_with(&format!(
            "/storageAccounts/{}/queueServices/default/queues/{name}",
            az.account
        ))),
        "{status:?}"
    );
    assert!(has_tags(
        &metadata(&az, &name).await,
        &[("team", "data"), ("env", "test")]
    ));

    // Update: changed, added, removed.
    h.apply::<Queue>(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "tags": {"team": "ml", "cost": "c1"}}),
    )
    .await;
    h.wait::<Queue>(&name, "Ready at the new generation", ready_at_generation)
        .await;
    let m = metadata(&az, &name).await;
    assert!(
        has_tags(&m, &[("team", "ml"), ("cost", "c1")]) && !m.contains_key("env"),
        "{m:?}"
    );

    // Drift: metadata edited in Azure directly is reported and set back.
    az.set_queue_metadata(&name, &[("team", "hacked")]).await;
    let q: Queue = h
        .wait(&name, "drift reported", |q: &Queue| {
            q.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "tags.team"))
        })
        .await;
    assert!(
        q.status
            .as_ref()
            .expect("status")
            .drift
            .iter()
            .any(|d| d.observed.contains("hacked"))
    );
    eventually("queue metadata set back", || async {
        has_tags(&metadata(&az, &name).await, &[("team", "ml"), ("cost", "c1")])
    })
    .await;

    // deletionPolicy Delete: the queue goes with the object.
    h.delete::<Queue>(&name).await;
    h.wait_deleted::<Queue>(&name).await;
    assert!(!az.queue_exists(&name).await);

    // Retain: the queue stays.
    let kept = h.azure_name("kept", false);
    h.apply::<Queue>(
        &kept,
        json!({"providerConfigRef": {"name": "azure"}, "deletionPolicy": "Retain"}),
    )
    .await;
    h.wait::<Queue>(&kept, "Ready", ready_at_generation).await;
    h.delete::<Queue>(&kept).await;
    h.wait_deleted::<Queue>(&kept).await;
    assert!(az.queue_exists(&kept).await, "Retain leaves the queue");
}

#[tokio::test]
async fn azure_queue_adopted_by_external_name() {
    let h = Harness::new("azqadopt").await;
    let az = h.azure_provider_config("azure", None).await;
    let outside = h.azure_name("outside", false);
    az.create_queue(&outside, &[("team", "old")]).await;
    h.apply::<Queue>(&outside, json!({"providerConfigRef": {"name": "azure"}}))
        .await;
    h.wait_stalled_as::<Queue>(&outside, "AlreadyExists").await;
    h.apply::<Queue>(
        "adopter",
        json!({"providerConfigRef": {"name": "azure"}, "externalName": outside, "tags": {"team": "new"}}),
    )
    .await;
    h.wait::<Queue>("adopter", "Ready", ready_at_generation).await;
    let m = metadata(&az, &outside).await;
    assert!(
        has_tags(&m, &[("team", "new")]) && m.contains_key("cloudkit_owner"),
        "{m:?}"
    );
}

#[tokio::test]
async fn azure_queue_invalid_names_and_unsupported_fields_stall_without_a_call() {
    let h = Harness::new("azqbad").await;
    let cloud = CountingEndpoint::start().await;
    h.azure_provider_config("nowhere", Some(&cloud.url)).await;
    h.apply::<Queue>(
        "upper",
        json!({"providerConfigRef": {"name": "nowhere"}, "externalName": "Jobs_1"}),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Queue>("upper", "InvalidSpec").await;
    assert!(
        message.contains("spec.externalName") && message.contains("not a valid Azure queue name"),
        "{message}"
    );

    // What an Azure queue does not have: each field named, none silently dropped.
    h.apply::<Queue>(
        "fancy",
        json!({
            "providerConfigRef": {"name": "nowhere"}, "fifo": true, "delaySeconds": 5,
            "deadLetter": {"queueRef": {"name": "dlq"}, "maxReceiveCount": 3}
        }),
    )
    .await;
    let (q, message) = h.wait_stalled_as::<Queue>("fancy", "UnsupportedForProvider").await;
    for field in ["spec.fifo", "spec.delaySeconds", "spec.deadLetter"] {
        assert!(
            message.contains(&format!("{field}: is not supported on azure")),
            "{field}: {message}"
        );
    }
    assert!(!is_true(&q, "Reconciling"));
    for name in ["upper", "fancy"] {
        h.delete::<Queue>(name).await;
        h.wait_deleted::<Queue>(name).await;
    }
    assert_eq!(
        cloud.connections(),
        0,
        "invalid or unsupported specs never reach the cloud"
    );
}
