//! Bucket end to end: real kube-apiserver, real moto, the real controller binary.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging};
use cloudkit_crds::{ProviderConfig, Topic};
use cloudkit_e2e::{CountingEndpoint, Harness, condition, eventually, is_true, ready_at_generation, ready_reason};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn s3_tags(h: &Harness, bucket: &str) -> Vec<(String, String)> {
    let mut t: Vec<_> = match h.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    };
    t.sort();
    t
}

async fn s3_versioning(h: &Harness, bucket: &str) -> Option<BucketVersioningStatus> {
    h.s3.get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketVersioning")
        .status()
        .cloned()
}

#[tokio::test]
async fn create_update_drift_and_delete() {
    let h = Harness::new("lifecycle").await;
    let name = h.bucket_name("data");
    h.apply_bucket(
        &name,
        json!({"versioning": true, "tags": {"team": "data", "env": "test"}}),
    )
    .await;

    let out = h.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        &format!("bucket/{name}"),
    ]);
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.external_name.as_deref(), Some(name.as_str()));
    assert_eq!(status.arn, Some(format!("arn:aws:s3:::{name}")));
    assert!(!is_true(&b, "Reconciling") && !is_true(&b, "Stalled"));
    assert_eq!(s3_versioning(&h, &name).await, Some(BucketVersioningStatus::Enabled));
    let owner = h.owner_tag("Bucket", &name);
    let mut want = tags(&[("env", "test"), ("team", "data")]);
    want.insert(0, owner.clone());
    assert_eq!(s3_tags(&h, &name).await, want);
    let pab =
        h.s3.get_public_access_block()
            .bucket(&name)
            .send()
            .await
            .expect("GetPublicAccessBlock");
    assert_eq!(
        pab.public_access_block_configuration()
            .and_then(|c| c.block_public_acls()),
        Some(true)
    );

    // Quiet resyncs (every 2s here) must not rewrite status.
    let rv = b.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = h.buckets.get(&name).await.expect("get");
    assert_eq!(
        again.metadata.resource_version, rv,
        "status was rewritten without a change"
    );

    // A spec change converges and advances observedGeneration.
    h.apply_bucket(
        &name,
        json!({"versioning": false, "tags": {"team": "platform"}, "encryption": {"keyId": "alias/e2e"}}),
    )
    .await;
    let b = h
        .wait_bucket(&name, "generation 2 Ready", |b| {
            b.metadata.generation == Some(2) && ready_at_generation(b)
        })
        .await;
    assert_eq!(b.status.as_ref().and_then(|s| s.observed_generation), Some(2));
    assert_eq!(s3_versioning(&h, &name).await, Some(BucketVersioningStatus::Suspended));
    assert_eq!(
        s3_tags(&h, &name).await,
        [owner.clone(), tags(&[("team", "platform")])[0].clone()]
    );
    let sse =
        h.s3.get_bucket_encryption()
            .bucket(&name)
            .send()
            .await
            .expect("GetBucketEncryption");
    let by_default = sse
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .expect("default encryption");
    assert_eq!(by_default.kms_master_key_id(), Some("alias/e2e"));

    // Someone edits the bucket behind CloudKit's back: the next resync sets it back and
    // says which field drifted.
    let foreign = Tagging::builder()
        .tag_set(Tag::builder().key("team").value("intruder").build().expect("tag"))
        .tag_set(Tag::builder().key(&owner.0).value(&owner.1).build().expect("tag"))
        // Another tool's tag (AWS Backup, a tag policy): not CloudKit's, not drift.
        .tag_set(Tag::builder().key("backup").value("daily").build().expect("tag"))
        .build()
        .expect("tagging");
    h.s3.put_bucket_tagging()
        .bucket(&name)
        .tagging(foreign)
        .send()
        .await
        .expect("PutBucketTagging");
    let b = h
        .wait_bucket(&name, "drift reported", |b| {
            b.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &b.status.as_ref().expect("status").drift;
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].field, "tags.team");
    assert_eq!(drift[0].desired, "\"platform\"");
    assert_eq!(drift[0].observed, "\"intruder\"");
    let shared = vec![
        ("backup".to_owned(), "daily".to_owned()),
        owner.clone(),
        ("team".to_owned(), "platform".to_owned()),
    ];
    eventually("team set back, backup kept", || async {
        s3_tags(&h, &name).await == shared
    })
    .await;
    // Resyncs (every 2 s) leave the foreign tag alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s3_tags(&h, &name).await, shared);
    assert!(h.event_reasons(&name).await.contains(&"DriftCorrected".to_owned()));

    let (code, _) = h.http_get("/readyz").await;
    assert_eq!(code, 200);
    let (code, metrics) = h.http_get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("cloudkit_reconciles_total{kind=\"Bucket\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudkit_reconcile_duration_seconds_bucket{"),
        "{metrics}"
    );

    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(!h.bucket_exists(&name).await, "Delete policy must remove the bucket");
    let reasons = h.event_reasons(&name).await;
    assert!(
        reasons.contains(&"Created".to_owned()) && reasons.contains(&"Deleted".to_owned()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn retain_keeps_the_bucket_in_its_region() {
    let h = Harness::new("retain").await;
    h.provider_config_in_region("ireland", &h.endpoint, "eu-west-1").await;
    let name = h.bucket_name("keep");
    h.apply_bucket(
        &name,
        json!({"deletionPolicy": "Retain", "providerConfigRef": {"name": "ireland"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let location =
        h.s3.get_bucket_location()
            .bucket(&name)
            .send()
            .await
            .expect("GetBucketLocation");
    assert_eq!(location.location_constraint().map(|c| c.as_str()), Some("eu-west-1"));
    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(
        h.bucket_exists(&name).await,
        "Retain must leave the bucket in the cloud"
    );
}

#[tokio::test]
async fn adopts_an_existing_bucket_by_external_name() {
    let h = Harness::new("adopt").await;
    let existing = h.bucket_name("preexisting");
    h.s3.create_bucket()
        .bucket(&existing)
        .send()
        .await
        .expect("CreateBucket");
    // No deletionPolicy: an adopted bucket is kept when its object goes.
    h.apply_bucket("adopter", json!({"externalName": existing, "versioning": true}))
        .await;
    let b = h.wait_bucket("adopter", "Ready", ready_at_generation).await;
    assert_eq!(b.status.and_then(|s| s.external_name), Some(existing.clone()));
    assert_eq!(
        s3_versioning(&h, &existing).await,
        Some(BucketVersioningStatus::Enabled)
    );
    assert!(h.event_reasons("adopter").await.contains(&"Adopted".to_owned()));
    assert_eq!(s3_tags(&h, &existing).await, [h.owner_tag("Bucket", "adopter")]);
    assert!(
        b.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("cloudkit.dev/adopted")
    );
    h.delete_bucket("adopter").await;
    h.wait_gone("adopter").await;
    assert!(
        h.bucket_exists(&existing).await,
        "an adopted bucket is retained by default"
    );
    assert!(h.event_reasons("adopter").await.contains(&"Retained".to_owned()));

    // Adopted with deletionPolicy: Delete, it goes with its object.
    let doomed = h.bucket_name("doomed");
    h.s3.create_bucket().bucket(&doomed).send().await.expect("CreateBucket");
    h.apply_bucket("doomer", json!({"externalName": doomed, "deletionPolicy": "Delete"}))
        .await;
    h.wait_bucket("doomer", "Ready", ready_at_generation).await;
    h.delete_bucket("doomer").await;
    h.wait_gone("doomer").await;
    assert!(
        !h.bucket_exists(&doomed).await,
        "deletionPolicy: Delete applies to adopted buckets"
    );

    // Same name, but adoption not asked for: hands off, and say how to take it over.
    let unowned = h.bucket_name("unowned");
    h.s3.create_bucket()
        .bucket(&unowned)
        .send()
        .await
        .expect("CreateBucket");
    h.apply_bucket(&unowned, json!({"versioning": true})).await;
    let (b, message) = h.wait_stalled(&unowned, "AlreadyExists").await;
    assert!(message.contains("set spec.externalName"), "{message}");
    assert_eq!(b.status.and_then(|s| s.external_name), None);
    assert_eq!(
        s3_versioning(&h, &unowned).await,
        None,
        "an unowned bucket must not be touched"
    );
    // Releasing the object leaves the bucket alone, whatever the deletion policy.
    h.delete_bucket(&unowned).await;
    h.wait_gone(&unowned).await;
    assert!(h.bucket_exists(&unowned).await);
}

/// Another namespace naming a bucket that one manages, or a second object in the same
/// namespace, neither adopts, changes nor deletes it.
#[tokio::test]
async fn no_object_takes_over_a_bucket_another_one_manages() {
    let owner = Harness::new("owner").await;
    let name = owner.bucket_name("shared");
    owner.apply_bucket(&name, json!({"tags": {"team": "owner"}})).await;
    owner.wait_bucket(&name, "Ready", ready_at_generation).await;
    let owner_tag = owner.owner_tag("Bucket", &name);
    let tagged = vec![owner_tag.clone(), ("team".to_owned(), "owner".to_owned())];
    assert_eq!(s3_tags(&owner, &name).await, tagged);

    let thief = Harness::new("thief").await;
    thief
        .apply_bucket(
            "grab",
            json!({"externalName": name, "versioning": true, "tags": {"team": "thief"}, "deletionPolicy": "Delete"}),
        )
        .await;
    let (b, message) = thief.wait_stalled("grab", "OwnedByAnother").await;
    assert!(message.contains(&owner_tag.1), "{message}");
    assert_eq!(b.status.and_then(|s| s.external_name), None);
    // Same namespace, second object: refused too.
    owner
        .apply_bucket("twin", json!({"externalName": name, "versioning": true}))
        .await;
    owner.wait_stalled("twin", "OwnedByAnother").await;

    assert_eq!(s3_tags(&owner, &name).await, tagged, "tags untouched");
    assert_eq!(s3_versioning(&owner, &name).await, None, "versioning untouched");
    // Deleting the refused objects, even with deletionPolicy: Delete, leaves the bucket.
    thief.delete_bucket("grab").await;
    thief.wait_gone("grab").await;
    owner.delete_bucket("twin").await;
    owner.wait_gone("twin").await;
    assert!(owner.bucket_exists(&name).await);
    assert!(is_true(
        &owner.wait_bucket(&name, "Ready", ready_at_generation).await,
        "Ready"
    ));
}

#[tokio::test]
async fn invalid_name_stalls_with_a_clear_message_and_no_cloud_call() {
    let h = Harness::new("invalid").await;
    let cloud = CountingEndpoint::start().await;
    h.provider_config("watched", &cloud.url).await;
    h.apply_bucket(
        "bad",
        json!({"externalName": "Not_A_Valid_Bucket", "providerConfigRef": {"name": "watched"}}),
    )
    .await;
    let (b, message) = h.wait_stalled("bad", "InvalidSpec").await;
    assert!(
        message.contains("spec.externalName") && message.contains("not a valid aws bucket name"),
        "{message}"
    );
    assert!(
        !is_true(&b, "Reconciling"),
        "a spec error needs a human, not a retry loop"
    );
    assert!(h.event_reasons("bad").await.contains(&"InvalidSpec".to_owned()));
    assert_eq!(cloud.connections(), 0, "an invalid spec must not reach the cloud");

    // A block for another cloud is a mistake, not a no-op.
    h.apply_bucket(
        "wrong-cloud",
        json!({"providerConfigRef": {"name": "watched"}, "gcp": {"storageClass": "NEARLINE"}}),
    )
    .await;
    let b = h.wait_bucket("wrong-cloud", "Stalled", |b| is_true(b, "Stalled")).await;
    let message = condition(b.status.as_ref(), "Stalled")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("spec.gcp: is set but ProviderConfig 'watched' is for aws"),
        "{message}"
    );

    // Kinds without a backend on a cloud yet are answered, not ignored.
    h.azure_provider_config("watched-azure", Some(&cloud.url)).await;
    let topics: Api<Topic> = Api::namespaced(h.client.clone(), &h.ns);
    let topic = json!({"apiVersion": "cloudkit.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "events"},
                       "spec": {"providerConfigRef": {"name": "watched-azure"}}});
    topics
        .patch("events", &PatchParams::apply("cloudkit-e2e"), &Patch::Apply(&topic))
        .await
        .expect("apply topic");
    eventually("Topic Stalled with UnsupportedForProvider", || async {
        let t = topics.get("events").await.expect("get topic");
        condition(t.status.as_ref(), "Stalled")
            .is_some_and(|c| c.status == "True" && c.reason == "UnsupportedForProvider")
    })
    .await;
    // Nothing can be made for it, so nothing holds it: it goes at once, controller or not.
    assert!(
        topics
            .get("events")
            .await
            .expect("get topic")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
    topics
        .delete("events", &Default::default())
        .await
        .expect("delete topic");
    assert!(
        topics.get_opt("events").await.expect("get topic").is_none(),
        "deleted at once"
    );

    // Deleting a resource that never existed in the cloud releases it without a cloud call.
    h.delete_bucket("bad").await;
    h.wait_gone("bad").await;
    assert_eq!(
        cloud.connections(),
        0,
        "no cloud call for invalid or unsupported resources"
    );
}

/// A ProviderConfig applied after the objects using it (one commit, any order) is not a
/// failure: they wait, Reconciling. Only when it stays missing past --stall-after are they
/// reported Stalled, and they still recover by themselves once it is created.
#[tokio::test]
async fn missing_provider_config_waits_then_stalls_then_recovers_when_created() {
    let mut h = Harness::new("noconfig").await;
    h.kill_controller();
    h.start_controller_with(&["--stall-after", "4s"]);
    let name = h.bucket_name("later");
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "not-yet"}}))
        .await;
    let waiting = h
        .wait_bucket(&name, "ProviderConfigNotFound", |b| {
            ready_reason(b).as_deref() == Some("ProviderConfigNotFound")
        })
        .await;
    assert!(is_true(&waiting, "Reconciling"), "{:?}", waiting.status);
    assert!(!is_true(&waiting, "Stalled"), "{:?}", waiting.status);
    assert!(waiting.status.as_ref().and_then(|s| s.failing_since.as_ref()).is_some());

    let (stalled, message) = h.wait_stalled(&name, "ProviderConfigNotFound").await;
    assert!(message.contains("ProviderConfig 'not-yet' not found"), "{message}");
    let why = condition(stalled.status.as_ref(), "Stalled")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(why.contains("failing for") && why.contains("still retrying"), "{why}");
    assert!(!is_true(&stalled, "Reconciling"));
    eventually("a Stalled Warning event", || async {
        h.event_reasons(&name).await.iter().any(|r| r == "Stalled")
    })
    .await;
    assert!(!h.bucket_exists(&name).await);

    // Creating the ProviderConfig wakes the bucket up without waiting out its backoff.
    h.provider_config("not-yet", &h.endpoint).await;
    let ready = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    assert!(h.bucket_exists(&name).await);
    assert!(!is_true(&ready, "Stalled"));
    assert_eq!(ready.status.and_then(|s| s.failing_since), None);
}

/// `kubectl delete -f stack/` (or a namespace deletion) may remove the credentials Secret
/// before the objects whose cleanup needs it: they still delete their cloud resources.
#[tokio::test]
async fn deleting_the_secret_first_strands_nothing() {
    let h = Harness::new("secretfirst").await;
    let names = [h.bucket_name("one"), h.bucket_name("two")];
    for name in &names {
        h.apply_bucket(name, json!({"tags": {"team": "a"}})).await;
    }
    for name in &names {
        h.wait_bucket(name, "Ready", ready_at_generation).await;
    }
    // The Secret first in the same command, as a manifest listing it first would.
    let mut args = vec!["delete", "--wait=false", "secret/aws", "providerconfig/default"];
    let objects: Vec<String> = names.iter().map(|n| format!("bucket/{n}")).collect();
    args.extend(objects.iter().map(String::as_str));
    let out = h.kubectl(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in &names {
        h.wait_gone(name).await;
        assert!(!h.bucket_exists(name).await, "'{name}' left in the cloud");
        assert!(h.event_reasons(name).await.contains(&"Deleted".to_owned()));
    }
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    eventually("the ProviderConfig released", || async {
        configs.get_opt("default").await.ok().flatten().is_none()
    })
    .await;
}

/// Deleting a whole stack deletes the ProviderConfig too, at the same moment: it must stay
/// until the objects using it have cleaned up their cloud resources with its credentials.
#[tokio::test]
async fn a_deleted_provider_config_stays_until_its_users_are_gone() {
    let h = Harness::new("pcdelete").await;
    h.provider_config("shared", &h.endpoint).await;
    let name = h.bucket_name("user");
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "shared"}}))
        .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    configs
        .delete("shared", &Default::default())
        .await
        .expect("delete the ProviderConfig");
    let ready_message = || async {
        let pc = configs.get("shared").await.expect("get the ProviderConfig");
        pc.status
            .and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.reason == "DependentsExist")
            })
            .and_then(|c| c.message)
    };
    eventually("the deleted ProviderConfig reports DependentsExist", || async {
        ready_message().await.is_some()
    })
    .await;
    let message = ready_message().await.unwrap_or_default();
    assert!(message.contains(&format!("Bucket/{name}")), "{message}");
    assert!(h.event_reasons("shared").await.iter().any(|r| r == "DependentsExist"));

    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(!h.bucket_exists(&name).await, "the bucket was deleted from the cloud");
    eventually("the ProviderConfig is gone", || async {
        configs.get_opt("shared").await.expect("get").is_none()
    })
    .await;
}

/// A ProviderConfig pointed elsewhere after creation must not make a second resource (and
/// leave the first behind): the object stalls, naming both places, until it is put back.
/// New credentials for the same place are no move.
#[tokio::test]
async fn a_resource_stays_where_it_was_made() {
    let h = Harness::new("pinned").await;
    h.provider_config("here", &h.endpoint).await;
    h.provider_config("same-place", &h.endpoint).await;
    let name = h.bucket_name("pinned");
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "here"}}))
        .await;
    let ready = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let place = ready.status.and_then(|s| s.provider).unwrap_or_default();
    assert_eq!(place, format!("aws region us-east-1 at {}", h.endpoint));

    // Another ProviderConfig for the same place: fine.
    h.merge_spec::<cloudkit_crds::Bucket>(&name, json!({"providerConfigRef": {"name": "same-place"}}))
        .await;
    h.wait_bucket(&name, "Ready on the other ProviderConfig", ready_at_generation)
        .await;

    // That ProviderConfig now points at another region: refused, nothing made there.
    h.provider_config_in_region("same-place", &h.endpoint, "eu-west-1")
        .await;
    let (_, message) = h.wait_stalled(&name, "ProviderChanged").await;
    assert!(
        message.contains("us-east-1") && message.contains("eu-west-1") && message.contains("'same-place'"),
        "{message}"
    );
    let located = h.s3.get_bucket_location().bucket(&name).send().await.expect("location");
    assert!(
        located.location_constraint().is_none_or(|c| c.as_str().is_empty()),
        "{located:?}"
    );

    // Put back: Ready again, without a human touching the object.
    h.provider_config("same-place", &h.endpoint).await;
    h.wait_bucket(&name, "Ready once put back", |b| {
        ready_at_generation(b) && !is_true(b, "Stalled")
    })
    .await;
}

/// Backup and restore (Velero, a GitOps rebuild) bring objects back without their status.
/// The name of the resource an object made is kept in an annotation too, so the restored
/// object takes its own bucket back instead of calling it someone else's (AlreadyExists),
/// and deleting it afterwards leaves no orphan.
#[tokio::test]
async fn a_restored_object_without_status_knows_its_resource() {
    let mut h = Harness::new("restore").await;
    let name = h.bucket_name("kept");
    h.apply_bucket(&name, json!({"tags": {"team": "a"}})).await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let saved = h.buckets.get(&name).await.expect("get");
    let annotations = saved.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("cloudkit.dev/external-name"),
        Some(&name),
        "{annotations:?}"
    );
    assert!(
        annotations.contains_key("cloudkit.dev/create-succeeded"),
        "{annotations:?}"
    );
    assert!(
        !annotations.contains_key("cloudkit.dev/create-pending"),
        "{annotations:?}"
    );

    // The cluster loses the object (the controller is down, so the bucket stays), and a
    // restore brings back its manifest and annotations, not its status.
    h.kill_controller();
    h.buckets
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop the finalizer");
    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(h.bucket_exists(&name).await);
    let restored = json!({
        "apiVersion": "cloudkit.dev/v1alpha1", "kind": "Bucket",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"tags": {"team": "a"}},
    });
    h.buckets
        .create(
            &Default::default(),
            &serde_json::from_value(restored).expect("a Bucket"),
        )
        .await
        .expect("restore");
    h.start_controller();
    let back = h
        .wait_bucket(&name, "Ready after the restore", ready_at_generation)
        .await;
    assert!(!is_true(&back, "Stalled"), "{:?}", back.status);
    assert_eq!(back.status.and_then(|s| s.external_name), Some(name.clone()));

    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(!h.bucket_exists(&name).await, "deleted from the cloud, not orphaned");
}

/// In a cluster shared by teams, the controller's own cloud identity is lent only to the
/// namespaces the operator lists: elsewhere a ProviderConfig asking for it is Stalled, and
/// nothing is sent to the cloud.
#[tokio::test]
async fn ambient_credentials_only_in_allowed_namespaces() {
    let mut h = Harness::new("ambient").await;
    h.kill_controller();
    h.start_controller_with(&["--ambient-credentials-namespaces", "cloudkit-system,platform"]);
    h.provider_config_for("ambient", "aws", &h.endpoint).await;
    let name = h.bucket_name("borrowed");
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "ambient"}}))
        .await;
    let (_, message) = h.wait_stalled(&name, "CredentialsNotAllowed").await;
    assert!(
        message.contains(&h.ns) && message.contains("source Secret"),
        "{message}"
    );
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    eventually("the ProviderConfig says so too", || async {
        configs
            .get("ambient")
            .await
            .ok()
            .and_then(|pc| pc.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "CredentialsNotAllowed")
            })
    })
    .await;
    assert!(!h.bucket_exists(&name).await);
    assert_eq!(h.cloud_call_total().await, 0, "no cloud call");
}

#[tokio::test]
async fn unreachable_cloud_retries_then_converges() {
    let h = Harness::new("retry").await;
    let down = CountingEndpoint::start().await;
    h.provider_config("flaky", &down.url).await;
    let name = h.bucket_name("eventually");
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "flaky"}}))
        .await;
    let b = h
        .wait_bucket(&name, "ProviderError", |b| {
            condition(b.status.as_ref(), "Ready").is_some_and(|c| c.reason == "ProviderError")
        })
        .await;
    assert!(
        is_true(&b, "Reconciling"),
        "a transient error keeps the resource Reconciling"
    );
    assert!(!is_true(&b, "Stalled"));
    let first = down.connections();
    eventually("a retry", || async { down.connections() > first }).await;

    h.provider_config("flaky", &h.endpoint).await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    assert!(h.bucket_exists(&name).await);
}

#[tokio::test]
async fn controller_restart_does_not_duplicate() {
    let mut h = Harness::new("restart").await;
    let names: Vec<String> = (0..3).map(|i| h.bucket_name(&format!("r{i}"))).collect();
    for n in &names {
        h.apply_bucket(n, json!({"versioning": true})).await;
    }
    // Kill the controller as soon as it has started creating, then start a new one.
    h.wait_bucket(&names[0], "creation started", |b| {
        b.status.as_ref().is_some_and(|s| s.external_name.is_some())
    })
    .await;
    h.kill_controller();
    h.start_controller();
    for n in &names {
        h.wait_bucket(n, "Ready", ready_at_generation).await;
    }
    let listed = h.s3.list_buckets().send().await.expect("ListBuckets");
    let ours: Vec<&str> = listed
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|b| b.starts_with(&h.ns))
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
}

#[tokio::test]
async fn provider_configs_report_their_own_health() {
    let h = Harness::new("pchealth").await;
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    let no_secret = json!({"apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "nosecret"},
                           "spec": {"provider": "aws", "credentials": {"source": "Secret", "secretRef": {"name": "missing"}}}});
    configs
        .patch(
            "nosecret",
            &PatchParams::apply("cloudkit-e2e"),
            &Patch::Apply(&no_secret),
        )
        .await
        .expect("apply");
    let pc_condition = |name: &'static str, type_: &'static str| {
        let configs = configs.clone();
        async move {
            let pc = configs.get(name).await.expect("get ProviderConfig");
            pc.status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == type_))
        }
    };
    eventually("default ProviderConfig Ready", || async {
        pc_condition("default", "Ready")
            .await
            .is_some_and(|c| c.status == "True")
    })
    .await;
    // External Secrets may create it a moment later: waiting, not failed.
    eventually("nosecret Reconciling with CredentialsNotFound", || async {
        pc_condition("nosecret", "Reconciling")
            .await
            .is_some_and(|c| c.status == "True" && c.reason == "RetryingAfterError")
            && pc_condition("nosecret", "Ready")
                .await
                .is_some_and(|c| c.status == "False" && c.reason == "CredentialsNotFound")
    })
    .await;
    let message = pc_condition("nosecret", "Ready")
        .await
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("Secret 'missing'"), "{message}");
}
