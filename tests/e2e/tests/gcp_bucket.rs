//! Bucket on GCP end to end: real kube-apiserver, gcp-storage-emulator, the real controller
//! binary. Every check of what is in the emulator goes through the tests' own JSON client.

use std::collections::BTreeMap;

use cloudkit_e2e::gcp::Gcp;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, is_true, ready_at_generation, ready_reason};
use serde_json::json;

const KEY: &str = "projects/cloudkit-dev/locations/us/keyRings/ring/cryptoKeys/key";

/// Each spec tag is present with its value (the controller adds its owner label).
fn has_labels(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

#[tokio::test]
async fn gcs_bucket_create_update_drift_and_delete() {
    let h = Harness::new("gcsbucket").await;
    let gcs = h.gcp_provider_config("gcp", None).await;
    let name = h.gcp_name("logs");
    h.apply_bucket(
        &name,
        json!({
            "providerConfigRef": {"name": "gcp"}, "tags": {"team": "data", "env": "test"},
            "versioning": true, "encryption": {"keyId": KEY}, "gcp": {"storageClass": "NEARLINE"}
        }),
    )
    .await;
    let b = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.external_name.as_deref(), Some(name.as_str()));
    assert_eq!(status.url, Some(format!("gs://{name}")));
    assert!(
        status
            .arn
            .as_deref()
            .is_some_and(|a| a.ends_with(&format!("/storage/v1/b/{name}"))),
        "self link: {status:?}"
    );
    assert_eq!(status.id.as_deref(), Some(name.as_str()));
    assert!(
        status
            .provider
            .as_deref()
            .is_some_and(|p| p.starts_with("gcp project cloudkit-dev at storage http://")),
        "{status:?}"
    );
    // Every mapped field, read back from the emulator.
    let found = gcs.bucket(&name).await.expect("bucket in the emulator");
    assert_eq!(found["location"], "US", "{found}");
    assert_eq!(found["versioning"]["enabled"], true, "{found}");
    assert_eq!(found["storageClass"], "NEARLINE", "{found}");
    assert_eq!(found["encryption"]["defaultKmsKeyName"], KEY, "{found}");
    assert_eq!(
        found["iamConfiguration"]["publicAccessPrevention"], "enforced",
        "{found}"
    );
    assert_eq!(
        found["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"], true,
        "{found}"
    );
    let labels = gcs.labels(&name).await;
    assert!(has_labels(&labels, &[("team", "data"), ("env", "test")]), "{labels:?}");
    let owner = labels.get("cloudkit-owner").cloned().unwrap_or_default();
    assert!(
        owner.starts_with(&format!("{}-bucket-{name}-", h.ns)) && owner.len() <= 63,
        "owner label: {owner:?}"
    );

    // Update in place: a label changed, one added, one removed; versioning off, public access
    // no longer prevented, another storage class, back to Google-managed keys.
    h.apply_bucket(
        &name,
        json!({
            "providerConfigRef": {"name": "gcp"}, "tags": {"team": "ml", "cost": "c1"},
            "blockPublicAccess": false, "gcp": {"storageClass": "COLDLINE"}
        }),
    )
    .await;
    h.wait_bucket(&name, "Ready at the new generation", ready_at_generation)
        .await;
    let found = gcs.bucket(&name).await.expect("bucket");
    assert_eq!(found["versioning"]["enabled"], false, "{found}");
    assert_eq!(found["storageClass"], "COLDLINE", "{found}");
    assert!(found["encryption"]["defaultKmsKeyName"].is_null(), "{found}");
    assert_eq!(
        found["iamConfiguration"]["publicAccessPrevention"], "inherited",
        "{found}"
    );
    let labels = gcs.labels(&name).await;
    assert!(has_labels(&labels, &[("team", "ml"), ("cost", "c1")]), "{labels:?}");
    assert!(
        !labels.contains_key("env"),
        "a tag removed from the spec leaves the bucket: {labels:?}"
    );
    assert!(labels.contains_key("cloudkit-owner"), "{labels:?}");

    // Drift: a label and versioning changed in GCS directly are reported and set back.
    let mut hacked: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    hacked.insert("team".into(), json!("hacked"));
    gcs.patch_bucket(&name, json!({"labels": hacked, "versioning": {"enabled": true}}))
        .await;
    let b = h
        .wait_bucket(&name, "drift reported", |b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "tags.team"))
        })
        .await;
    let drift = &b.status.as_ref().expect("status").drift;
    assert!(
        drift
            .iter()
            .any(|d| d.field == "tags.team" && d.observed.contains("hacked")),
        "{drift:?}"
    );
    assert!(drift.iter().any(|d| d.field == "versioning"), "{drift:?}");
    eventually("labels and versioning set back", || async {
        let found = gcs.bucket(&name).await.expect("bucket");
        has_labels(&gcs.labels(&name).await, &[("team", "ml"), ("cost", "c1")])
            && found["versioning"]["enabled"] == false
    })
    .await;
    assert!(h.event_reasons(&name).await.iter().any(|r| r == "DriftCorrected"));

    // deletionPolicy Delete (the default): the bucket goes with the object.
    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(!gcs.bucket_exists(&name).await, "bucket deleted with the object");
}

#[tokio::test]
async fn gcs_retain_keeps_the_bucket_and_adoption_takes_it_back() {
    let h = Harness::new("gcsretain").await;
    let gcs = h.gcp_provider_config("gcp", None).await;
    let name = h.gcp_name("keep");
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "gcp"}, "deletionPolicy": "Retain", "tags": {"team": "a"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(gcs.bucket_exists(&name).await, "Retain leaves the bucket");

    // The same object again: the owner label proves the bucket is its own.
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "gcp"}, "tags": {"team": "b"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready again", ready_at_generation).await;
    assert!(has_labels(&gcs.labels(&name).await, &[("team", "b")]));
    // Another object naming it is refused: it is managed by the first.
    h.apply_bucket(
        "thief",
        json!({"providerConfigRef": {"name": "gcp"}, "externalName": name}),
    )
    .await;
    let (_, message) = h.wait_stalled("thief", "OwnedByAnother").await;
    assert!(message.contains("cloudkit-owner"), "{message}");

    // A bucket made outside CloudKit: refused by name alone…
    let outside = h.gcp_name("outside");
    gcs.create_bucket(&outside, json!({"team": "old", "keep": "me"})).await;
    h.apply_bucket(&outside, json!({"providerConfigRef": {"name": "gcp"}}))
        .await;
    h.wait_stalled(&outside, "AlreadyExists").await;
    // …and adopted when spec.externalName names it, its labels converged; a label another
    // tool set is left alone.
    h.apply_bucket(
        "adopter",
        json!({"providerConfigRef": {"name": "gcp"}, "externalName": outside, "tags": {"team": "new", "cost": "c2"}}),
    )
    .await;
    let b = h.wait_bucket("adopter", "Ready", ready_at_generation).await;
    assert_eq!(
        b.status.as_ref().and_then(|s| s.external_name.as_deref()),
        Some(outside.as_str())
    );
    let labels = gcs.labels(&outside).await;
    assert!(
        has_labels(&labels, &[("team", "new"), ("cost", "c2"), ("keep", "me")]),
        "{labels:?}"
    );
    assert!(
        labels
            .get("cloudkit-owner")
            .is_some_and(|o| o.starts_with(&format!("{}-bucket-adopter-", h.ns))),
        "{labels:?}"
    );
    // Adopted, so kept on delete (deletionPolicy unset: Retain for what was adopted).
    h.delete_bucket("adopter").await;
    h.wait_gone("adopter").await;
    assert!(gcs.bucket_exists(&outside).await, "an adopted bucket is kept");
}

/// GCS deletes only empty buckets: deleting the objects is never implied.
#[tokio::test]
async fn gcs_bucket_with_objects_is_not_deleted() {
    let h = Harness::new("gcsfull").await;
    let gcs = h.gcp_provider_config("gcp", None).await;
    let name = h.gcp_name("full");
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "gcp"}}))
        .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    gcs.put_object(&name, "report.csv", "a,b\n").await;
    h.delete_bucket(&name).await;
    h.wait_bucket(&name, "BucketNotEmpty", |b| {
        ready_reason(b).as_deref() == Some("BucketNotEmpty")
    })
    .await;
    assert!(gcs.bucket_exists(&name).await, "a bucket with objects is kept");
    gcs.delete_object(&name, "report.csv").await;
    // BucketNotEmpty is retried after a minute: allow for that wait.
    let started = std::time::Instant::now();
    while h.buckets.get_opt(&name).await.expect("get bucket").is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "not released once empty"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(!gcs.bucket_exists(&name).await, "deleted once empty");
}

#[tokio::test]
async fn gcs_invalid_names_and_labels_stall_without_a_call() {
    let h = Harness::new("gcsbad").await;
    let cloud = CountingEndpoint::start().await;
    let _: Gcp = h.gcp_provider_config("nowhere", Some(&cloud.url)).await;
    for (object, external, problem) in [
        ("upper", "Bad_Name", "use only lowercase letters"),
        ("short", "ab", "must be 3 to 63 characters"),
        ("google", "my-google-bucket", "contain 'google'"),
    ] {
        h.apply_bucket(
            object,
            json!({"providerConfigRef": {"name": "nowhere"}, "externalName": external}),
        )
        .await;
        let (_, message) = h.wait_stalled(object, "InvalidSpec").await;
        assert!(
            message.contains("spec.externalName")
                && message.contains("not a valid gcp bucket name")
                && message.contains(problem),
            "{message}"
        );
    }
    // Label rules: lowercase keys and values, CloudKit's own prefix reserved; and a KMS key
    // that is not a Cloud KMS key name. Each named.
    h.apply_bucket(
        "labels",
        json!({
            "providerConfigRef": {"name": "nowhere"},
            "tags": {"Team": "x", "env": "Prod", "cloudkit-owner": "me", "k": "v".repeat(64)},
            "encryption": {"keyId": "alias/my-key"}
        }),
    )
    .await;
    let (b, message) = h.wait_stalled("labels", "InvalidSpec").await;
    for field in [
        "spec.tags.Team",
        "spec.tags.env",
        "spec.tags.cloudkit-owner",
        "spec.tags.k",
        "spec.encryption.keyId",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
    assert!(!is_true(&b, "Reconciling"), "needs a human, not a retry loop");
    // An S3-only block on a GCP object.
    h.apply_bucket(
        "awsblock",
        json!({"providerConfigRef": {"name": "nowhere"}, "aws": {"publicAccessBlock": {"blockPublicAcls": true}}}),
    )
    .await;
    let (_, message) = h.wait_stalled("awsblock", "InvalidSpec").await;
    assert!(message.contains("spec.aws"), "{message}");

    for name in ["upper", "short", "google", "labels", "awsblock"] {
        h.delete_bucket(name).await;
        h.wait_gone(name).await;
    }
    assert_eq!(cloud.connections(), 0, "invalid specs never reach the cloud");
}

/// One manifest, three clouds: only providerConfigRef differs, one controller reconciles all.
#[tokio::test]
async fn aws_azure_and_gcp_buckets_side_by_side() {
    let h = Harness::new("gcsmixed").await;
    let gcs = h.gcp_provider_config("gcp", None).await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.gcp_name("mixed");
    let manifest = |config: &str| json!({"providerConfigRef": {"name": config}, "tags": {"team": "data"}});
    let (on_aws, on_azure, on_gcp) = (format!("{name}-aws"), format!("{name}-az"), format!("{name}-gcp"));
    h.apply_bucket(&on_aws, manifest("default")).await;
    h.apply_bucket(&on_azure, manifest("azure")).await;
    h.apply_bucket(&on_gcp, manifest("gcp")).await;
    for n in [&on_aws, &on_azure, &on_gcp] {
        h.wait_bucket(n, "Ready", ready_at_generation).await;
    }
    assert!(h.bucket_exists(&on_aws).await, "S3 bucket in moto");
    assert!(az.container_exists(&on_azure).await, "container in Azurite");
    assert!(gcs.bucket_exists(&on_gcp).await, "bucket in the GCS emulator");
    assert!(
        !gcs.bucket_exists(&on_aws).await && !gcs.bucket_exists(&on_azure).await,
        "each on its own cloud"
    );
    for n in [&on_aws, &on_azure, &on_gcp] {
        h.delete_bucket(n).await;
    }
    for n in [&on_aws, &on_azure, &on_gcp] {
        h.wait_gone(n).await;
    }
    assert!(!gcs.bucket_exists(&on_gcp).await);
}

/// No Cloud Functions backend (no emulator takes a deploy): the kind is refused naming the
/// cloud, as a human must act, and nothing is sent.
#[tokio::test]
async fn gcp_function_is_unsupported_for_provider_without_a_call() {
    let h = Harness::new("gcpfn").await;
    let cloud = CountingEndpoint::start().await;
    let _: Gcp = h.gcp_provider_config("nowhere", Some(&cloud.url)).await;
    h.apply::<cloudkit_crds::Function>(
        "worker",
        json!({
            "providerConfigRef": {"name": "nowhere"}, "runtime": "python3.12", "handler": "app.handler",
            "code": {"zipBase64": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}
        }),
    )
    .await;
    let (f, message) = h
        .wait_stalled_as::<cloudkit_crds::Function>("worker", "UnsupportedForProvider")
        .await;
    assert!(message.contains("Function") && message.contains("gcp"), "{message}");
    assert!(!is_true(&f, "Reconciling"), "needs a human, not a retry loop");
    h.delete::<cloudkit_crds::Function>("worker").await;
    h.wait_deleted::<cloudkit_crds::Function>("worker").await;
    assert_eq!(cloud.connections(), 0, "nothing reaches the cloud");
}
