//! Drift policies: a change made directly in the cloud is set back (`Correct`, the
//! default), reported and left (`Report`), or left unsaid (`Ignore`); a resource deleted
//! outside CloudKit is made again or reported.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
use cloudkit_crds::ProviderConfig;
use cloudkit_e2e::{Harness, condition, eventually, is_true, ready_at_generation};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams};
use serde_json::json;

async fn team(h: &Harness, bucket: &str) -> Option<String> {
    let out = h.s3.get_bucket_tagging().bucket(bucket).send().await.ok()?;
    out.tag_set()
        .iter()
        .find(|t| t.key() == "team")
        .map(|t| t.value().to_owned())
}

/// Sets `team` in the cloud, keeping the owner tag as a person editing one tag would.
async fn retag(h: &Harness, bucket: &str, value: &str) {
    let (key, owner) = h.owner_tag("Bucket", bucket);
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("team").value(value).build().expect("tag"))
        .tag_set(Tag::builder().key(key).value(owner).build().expect("tag"))
        .build()
        .expect("tagging");
    h.s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .expect("PutBucketTagging");
}

/// `cloudkit drift -n <test namespace> ARGS`: exit code and output.
fn drift_cli(h: &Harness, args: &[&str]) -> (Option<i32>, String) {
    let bin = std::env::var("CLOUDKIT_BIN").expect("CLOUDKIT_BIN");
    let out = std::process::Command::new(bin)
        .args(["drift", "-n", &h.ns])
        .args(args)
        .output()
        .expect("cloudkit drift runs");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn report_leaves_the_change_and_says_what_differs() {
    let h = Harness::new("drift-report").await;
    let name = h.bucket_name("reported");
    h.apply_bucket(&name, json!({"driftPolicy": "Report", "tags": {"team": "a"}}))
        .await;
    let b = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    assert_eq!(
        condition(b.status.as_ref(), "Drifted").map(|c| c.status.as_str()),
        Some("False")
    );

    retag(&h, &name, "edited").await;
    let b = h.wait_bucket(&name, "Drifted", |b| is_true(b, "Drifted")).await;
    let drifted = condition(b.status.as_ref(), "Drifted").expect("Drifted");
    assert_eq!(drifted.reason, "DriftDetected");
    assert!(
        drifted.message.as_deref().is_some_and(|m| m.contains("tags.team")),
        "{drifted:?}"
    );
    assert!(is_true(&b, "Ready"), "still usable");
    let status = b.status.as_ref().expect("status");
    assert_eq!(status.drift.len(), 1, "{:?}", status.drift);
    assert_eq!(status.drift[0].field, "tags.team");
    assert_eq!(status.drift[0].observed, "\"edited\"");
    assert!(status.drift[0].detected_at.is_some());
    // Resyncs every 2 s leave it, and write nothing more. (A reconcile that started from a
    // cache not yet holding the detection may write once more right after it.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = h.buckets.get(&name).await.expect("get");
    let rv = b.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(team(&h, &name).await.as_deref(), Some("edited"));
    let again = h.buckets.get(&name).await.expect("get");
    assert_eq!(
        again.metadata.resource_version,
        rv,
        "status rewritten for the same drift:\nbefore {}\nafter {}",
        serde_json::to_string(&b).unwrap_or_default(),
        serde_json::to_string(&again).unwrap_or_default()
    );
    let reasons = h.event_reasons(&name).await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "DriftDetected").count(),
        1,
        "{reasons:?}"
    );
    let (_, metrics) = h.http_get("/metrics").await;
    assert!(
        metrics.contains("cloudkit_drift_detected_total{kind=\"Bucket\",provider=\"aws\"} 1")
            && metrics.contains("cloudkit_drifted_objects 1"),
        "{metrics}"
    );

    // `cloudkit drift` says so, for pipelines: exit 2, the field in the table and in JSON.
    let (code, table) = drift_cli(&h, &[]);
    assert_eq!(code, Some(2), "{table}");
    assert!(
        table.contains(&format!("Bucket/{name}")) && table.contains("tags.team"),
        "{table}"
    );
    let (_, json) = drift_cli(&h, &["-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(listed[0]["fields"][0]["observed"], "\"edited\"", "{json}");

    // A manifest change is applied whatever the policy: the edit is set back with it.
    h.apply_bucket(&name, json!({"driftPolicy": "Correct", "tags": {"team": "a"}}))
        .await;
    eventually("team set back", || async {
        team(&h, &name).await.as_deref() == Some("a")
    })
    .await;
    let b = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    assert!(!is_true(&b, "Drifted"));
    let (code, table) = drift_cli(&h, &[]);
    assert_eq!((code, table.as_str()), (Some(0), "No drift.\n"));
    let (_, metrics) = h.http_get("/metrics").await;
    assert!(metrics.contains("cloudkit_drifted_objects 0"), "{metrics}");

    // Deleted outside CloudKit under Report: said, not made again.
    h.apply_bucket(&name, json!({"driftPolicy": "Report", "tags": {"team": "a"}}))
        .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    h.s3.delete_bucket().bucket(&name).send().await.expect("DeleteBucket");
    let (_, message) = h.wait_stalled(&name, "ExternalResourceMissing").await;
    assert!(message.contains("driftPolicy: Correct"), "{message}");
    assert!(!h.bucket_exists(&name).await);
}

#[tokio::test]
async fn ignore_leaves_the_change_unsaid() {
    let h = Harness::new("drift-ignore").await;
    // The policy comes from the ProviderConfig, for every object that sets none.
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    configs
        .patch(
            "quiet",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "quiet"},
                "spec": {
                    "provider": "aws", "endpoint": h.endpoint, "resyncInterval": "2s", "driftPolicy": "Ignore",
                    "credentials": {"source": "Secret", "secretRef": {"name": "aws"}}
                }
            })),
        )
        .await
        .expect("apply ProviderConfig");
    let name = h.bucket_name("ignored");
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "quiet"}, "versioning": false}),
    )
    .await;
    let b = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let rv = b.metadata.resource_version.clone();
    h.s3.put_bucket_versioning()
        .bucket(&name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let versioning =
        h.s3.get_bucket_versioning()
            .bucket(&name)
            .send()
            .await
            .expect("versioning");
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let b = h.buckets.get(&name).await.expect("get");
    assert_eq!(b.metadata.resource_version, rv, "nothing written");
    assert!(b.status.as_ref().is_some_and(|s| s.drift.is_empty()));
}

#[tokio::test]
async fn a_resource_deleted_outside_is_made_again() {
    let h = Harness::new("drift-gone").await;
    let name = h.bucket_name("phoenix");
    h.apply_bucket(&name, json!({"tags": {"team": "a"}})).await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    h.s3.delete_bucket().bucket(&name).send().await.expect("DeleteBucket");
    eventually("made again", || async { h.bucket_exists(&name).await }).await;
    eventually("tagged again", || async {
        team(&h, &name).await.as_deref() == Some("a")
    })
    .await;
    eventually("a Recreated event", || async {
        h.event_reasons(&name).await.contains(&"Recreated".to_owned())
    })
    .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
}

#[tokio::test]
async fn observe_only_reads_and_never_writes() {
    let h = Harness::new("observe-only").await;
    let name = h.bucket_name("theirs");
    h.s3.create_bucket().bucket(&name).send().await.expect("CreateBucket");
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("team").value("theirs").build().expect("tag"))
        .build()
        .expect("tagging");
    h.s3.put_bucket_tagging()
        .bucket(&name)
        .tagging(tagging)
        .send()
        .await
        .expect("PutBucketTagging");
    let spec = json!({
        "externalName": name, "managementPolicy": "ObserveOnly", "deletionPolicy": "Delete",
        "versioning": true, "tags": {"team": "ours"}, "blockPublicAccess": false
    });
    h.apply_bucket("watcher", spec).await;
    let b = h
        .wait_bucket("watcher", "Ready and Drifted", |b| {
            ready_at_generation(b) && is_true(b, "Drifted")
        })
        .await;
    let status = b.status.as_ref().expect("status");
    let fields: Vec<&str> = status.drift.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["tags.team", "versioning"], "{:?}", status.drift);
    assert!(status.url.is_some() || status.arn.is_some(), "outputs published");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let writes: Vec<String> = h
        .cloud_calls()
        .await
        .into_keys()
        .map(|(_, op)| op)
        .filter(|op| !(op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List")))
        .collect();
    assert!(writes.is_empty(), "ObserveOnly wrote to the cloud: {writes:?}");
    assert_eq!(team(&h, &name).await.as_deref(), Some("theirs"));
    let tags = h.s3.get_bucket_tagging().bucket(&name).send().await.expect("tags");
    assert_eq!(tags.tag_set().len(), 1, "no owner tag added: {tags:?}");

    // Even deletionPolicy: Delete leaves it.
    h.delete_bucket("watcher").await;
    h.wait_gone("watcher").await;
    assert!(h.bucket_exists(&name).await);

    // Nothing to observe: said, never created.
    let missing = h.bucket_name("missing");
    h.apply_bucket(
        "ghost",
        json!({"externalName": missing, "managementPolicy": "ObserveOnly"}),
    )
    .await;
    h.wait_stalled("ghost", "ExternalResourceMissing").await;
    assert!(!h.bucket_exists(&missing).await);
}

/// Drift is "differs from what CloudKit last applied": a change made outside while the
/// object was failing for another reason is still reported as drift when it recovers.
#[tokio::test]
async fn a_change_made_during_a_failure_is_still_drift() {
    let h = Harness::new("drift-failing").await;
    let name = h.bucket_name("failing");
    h.apply_bucket(&name, json!({"tags": {"team": "a"}})).await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let secret = secrets.get("aws").await.expect("the harness's Secret");
    secrets.delete("aws", &Default::default()).await.expect("delete Secret");
    h.wait_bucket(&name, "CredentialsNotFound", |b| {
        condition(b.status.as_ref(), "Ready").is_some_and(|c| c.reason == "CredentialsNotFound")
    })
    .await;
    retag(&h, &name, "edited").await;
    let restored = Secret {
        metadata: ObjectMeta {
            name: Some("aws".into()),
            ..Default::default()
        },
        data: secret.data,
        ..Default::default()
    };
    secrets
        .create(&Default::default(), &restored)
        .await
        .expect("restore Secret");
    let b = h
        .wait_bucket(&name, "Ready with drift", |b| {
            ready_at_generation(b) && b.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &b.status.as_ref().expect("status").drift;
    assert_eq!(drift[0].field, "tags.team", "{drift:?}");
    assert_eq!(team(&h, &name).await.as_deref(), Some("a"));
    eventually("a DriftCorrected event", || async {
        h.event_reasons(&name).await.contains(&"DriftCorrected".to_owned())
    })
    .await;
}
