//! Drift policies: a change made directly in the cloud is set back (`Correct`, the
//! default), reported and left (`Report`), or left unsaid (`Ignore`); a resource deleted
//! outside CloudKit is made again or reported.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
use cloudkit_e2e::{Harness, condition, eventually, is_true, ready_at_generation};
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
    // Resyncs every 2 s leave it, and write nothing more.
    let rv = b.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(team(&h, &name).await.as_deref(), Some("edited"));
    let again = h.buckets.get(&name).await.expect("get");
    assert_eq!(
        again.metadata.resource_version, rv,
        "status rewritten for the same drift"
    );
    let reasons = h.event_reasons(&name).await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "DriftDetected").count(),
        1,
        "{reasons:?}"
    );
    let (_, metrics) = h.http_get("/metrics").await;
    assert!(
        metrics.contains("cloudkit_drift_detected_total{kind=\"Bucket\",provider=\"aws\"} 1"),
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
    let name = h.bucket_name("ignored");
    h.apply_bucket(&name, json!({"driftPolicy": "Ignore", "versioning": false}))
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
    assert!(h.event_reasons(&name).await.contains(&"Recreated".to_owned()));
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
}
