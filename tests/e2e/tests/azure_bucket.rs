//! Bucket on Azure end to end: real kube-apiserver, Azurite, the real controller binary.
//! Every check of what is in Azurite goes through the tests' own REST client.

use std::collections::BTreeMap;

use cloudkit_crds::Bucket;
use cloudkit_e2e::{
    Azurite, CountingEndpoint, Harness, condition, eventually, is_true, ready_at_generation, ready_reason,
};
use serde_json::json;

/// Each spec tag is present with its value (the controller may add tags of its own).
fn has_tags(metadata: &BTreeMap<String, String>, tags: &[(&str, &str)]) -> bool {
    tags.iter()
        .all(|(k, v)| metadata.get(*k).map(String::as_str) == Some(*v))
}

async fn metadata(az: &Azurite, name: &str) -> BTreeMap<String, String> {
    let r = az.container(name).await;
    assert_eq!(r.status, 200, "GetContainerProperties {name}: {}", r.body);
    r.metadata()
}

async fn public_access(az: &Azurite, name: &str) -> Option<String> {
    az.container(name).await.headers.get("x-ms-blob-public-access").cloned()
}

#[tokio::test]
async fn azure_container_create_update_drift_and_delete() {
    let h = Harness::new("azbucket").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("logs", false);
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "tags": {"team": "data", "env": "test"}}),
    )
    .await;
    let b = h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let status = b.status.clone().expect("status");
    assert_eq!(status.external_name.as_deref(), Some(name.as_str()));
    assert_eq!(status.url, Some(format!("{}/{name}", az.blob)));
    let id = format!(
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/cloudkit-e2e/providers/\
         Microsoft.Storage/storageAccounts/{}/blobServices/default/containers/{name}",
        az.account
    );
    assert_eq!(status.id.as_deref(), Some(id.as_str()));
    assert_eq!(status.arn.as_deref(), Some(id.as_str()));
    assert!(
        status
            .provider
            .as_deref()
            .is_some_and(|p| p.starts_with("azure account devstoreaccount1")),
        "{status:?}"
    );
    assert!(has_tags(
        &metadata(&az, &name).await,
        &[("team", "data"), ("env", "test")]
    ));
    assert_eq!(
        public_access(&az, &name).await,
        None,
        "blockPublicAccess (default true): private"
    );

    // Update: a value changed, a tag added, one removed; the container made public.
    h.apply_bucket(
        &name,
        json!({
            "providerConfigRef": {"name": "azure"}, "tags": {"team": "ml", "cost": "c1"},
            "blockPublicAccess": false, "azure": {"publicAccess": "Blob"}
        }),
    )
    .await;
    h.wait_bucket(&name, "Ready at the new generation", ready_at_generation)
        .await;
    let m = metadata(&az, &name).await;
    assert!(has_tags(&m, &[("team", "ml"), ("cost", "c1")]), "{m:?}");
    assert!(
        !m.contains_key("env"),
        "a tag removed from the spec leaves the container: {m:?}"
    );
    assert_eq!(public_access(&az, &name).await.as_deref(), Some("blob"));

    // Drift: metadata changed in Azure directly is reported and set back.
    az.set_container_metadata(&name, &[("team", "hacked")]).await;
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
    eventually("metadata set back", || async {
        has_tags(&metadata(&az, &name).await, &[("team", "ml"), ("cost", "c1")])
    })
    .await;
    assert!(h.event_reasons(&name).await.iter().any(|r| r == "DriftCorrected"));

    // Back to private.
    h.merge_spec::<Bucket>(&name, json!({"blockPublicAccess": true, "azure": null}))
        .await;
    h.wait_bucket(&name, "Ready private", ready_at_generation).await;
    assert_eq!(public_access(&az, &name).await, None);

    // deletionPolicy Delete (the default): the container goes with the object.
    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(!az.container_exists(&name).await, "container deleted with the object");

    // The account key never reaches the controller's log (json, every level it writes).
    let log = std::fs::read_to_string(&h.log).expect("controller log");
    assert!(
        !log.contains(&az.key_base64),
        "the account key is in {}",
        h.log.display()
    );
}

/// A SAS token instead of the key: appended to each request, never printed.
#[tokio::test]
async fn azure_sas_token_credentials() {
    use cloudkit_crds::ProviderConfig;
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;
    use kube::api::{Patch, PatchParams};
    let h = Harness::new("azsas").await;
    let az = h.azure_provider_config("azure", None).await;
    let sas = az.account_sas();
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure-sas"},
                        "stringData": {"sasToken": format!("?{sas}")}});
    secrets
        .patch(
            "azure-sas",
            &PatchParams::apply("cloudkit-e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply secret");
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    configs
        .patch(
            "azure",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"secretRef": {"name": "azure-sas"}}}})),
        )
        .await
        .expect("point the ProviderConfig at the SAS");
    let name = h.azure_name("sas", false);
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "tags": {"team": "sas"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    assert!(has_tags(&metadata(&az, &name).await, &[("team", "sas")]));
    let sig = sas.split('&').find(|p| p.starts_with("sig=")).expect("sig").to_owned();
    let log = std::fs::read_to_string(&h.log).expect("controller log");
    assert!(
        !log.contains(&sig) && !log.contains(&sas),
        "the SAS is in {}",
        h.log.display()
    );
}

/// Deleting a container deletes its blobs: never implied, as an S3 bucket must be empty too.
#[tokio::test]
async fn azure_container_with_blobs_is_not_deleted() {
    let h = Harness::new("azfull").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("full", false);
    h.apply_bucket(&name, json!({"providerConfigRef": {"name": "azure"}}))
        .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    az.put_blob(&name, "report.csv", "a,b\n").await;
    h.delete_bucket(&name).await;
    h.wait_bucket(&name, "BucketNotEmpty", |b| {
        ready_reason(b).as_deref() == Some("BucketNotEmpty")
    })
    .await;
    assert!(az.container_exists(&name).await, "a container with blobs is kept");
    az.delete_blob(&name, "report.csv").await;
    // BucketNotEmpty is retried after a minute (emptying a container is work for a human):
    // allow for that wait.
    let started = std::time::Instant::now();
    while h.buckets.get_opt(&name).await.expect("get bucket").is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "not released once empty"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(!az.container_exists(&name).await, "deleted once empty");
}

#[tokio::test]
async fn azure_retain_keeps_the_container_and_adoption_takes_it_back() {
    let h = Harness::new("azretain").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("keep", false);
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "deletionPolicy": "Retain", "tags": {"team": "a"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let owner = metadata(&az, &name)
        .await
        .get("cloudkit_owner")
        .cloned()
        .unwrap_or_default();
    assert!(
        owner.ends_with(&format!("/{}/Bucket/{name}", h.ns)),
        "owner recorded as metadata: {owner:?}"
    );
    h.delete_bucket(&name).await;
    h.wait_gone(&name).await;
    assert!(az.container_exists(&name).await, "Retain leaves the container");

    // The same object again: the owner metadata proves the container is its own.
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "tags": {"team": "b"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready again", ready_at_generation).await;
    assert!(has_tags(&metadata(&az, &name).await, &[("team", "b")]));
    // Another object naming it is refused: it is managed by the first.
    h.apply_bucket(
        "thief",
        json!({"providerConfigRef": {"name": "azure"}, "externalName": name}),
    )
    .await;
    h.wait_stalled("thief", "OwnedByAnother").await;

    // A container made outside CloudKit: refused by name alone…
    let outside = h.azure_name("outside", false);
    az.create_container(&outside, &[("team", "old")]).await;
    h.apply_bucket(&outside, json!({"providerConfigRef": {"name": "azure"}}))
        .await;
    h.wait_stalled(&outside, "AlreadyExists").await;
    // …and adopted when spec.externalName names it, its metadata converged.
    h.apply_bucket(
        "adopter",
        json!({"providerConfigRef": {"name": "azure"}, "externalName": outside, "tags": {"team": "new", "cost": "c2"}}),
    )
    .await;
    let b = h.wait_bucket("adopter", "Ready", ready_at_generation).await;
    assert_eq!(
        b.status.as_ref().and_then(|s| s.external_name.as_deref()),
        Some(outside.as_str())
    );
    let m = metadata(&az, &outside).await;
    assert!(has_tags(&m, &[("team", "new"), ("cost", "c2")]), "{m:?}");
    assert!(
        m.get("cloudkit_owner").is_some_and(|o| o.ends_with("/Bucket/adopter")),
        "{m:?}"
    );
}

#[tokio::test]
async fn azure_invalid_names_and_unsupported_fields_stall_without_a_call() {
    let h = Harness::new("azbad").await;
    let cloud = CountingEndpoint::start().await;
    h.azure_provider_config("nowhere", Some(&cloud.url)).await;
    for (object, external, problem) in [
        ("upper", "Bad_Name", "use only lowercase letters, digits and hyphens"),
        ("short", "ab", "must be 3 to 63 characters"),
        ("dashes", "a--b", "not contain '--'"),
    ] {
        h.apply_bucket(
            object,
            json!({"providerConfigRef": {"name": "nowhere"}, "externalName": external}),
        )
        .await;
        let (_, message) = h.wait_stalled(object, "InvalidSpec").await;
        assert!(
            message.contains("spec.externalName")
                && message.contains("not a valid azure bucket name")
                && message.contains(problem),
            "{message}"
        );
    }
    // A tag key AWS accepts but Azure metadata cannot hold, named.
    h.apply_bucket(
        "tagged",
        json!({"providerConfigRef": {"name": "nowhere"}, "tags": {"team/app": "x"}}),
    )
    .await;
    let (_, message) = h.wait_stalled("tagged", "InvalidSpec").await;
    assert!(message.contains("spec.tags.team/app"), "{message}");

    // Fields Azure sets per account: UnsupportedForProvider naming each.
    h.apply_bucket(
        "versioned",
        json!({"providerConfigRef": {"name": "nowhere"}, "versioning": true, "encryption": {"keyId": "https://v/keys/k"}}),
    )
    .await;
    let (b, message) = h.wait_stalled("versioned", "UnsupportedForProvider").await;
    assert!(
        message.contains("spec.versioning")
            && message.contains("spec.encryption.keyId")
            && message.contains("storage account"),
        "{message}"
    );
    assert!(!is_true(&b, "Reconciling"), "needs a human, not a retry loop");
    // Public access asked for while blocked: a contradiction in the spec.
    h.apply_bucket(
        "public",
        json!({"providerConfigRef": {"name": "nowhere"}, "azure": {"publicAccess": "Container"}}),
    )
    .await;
    let (_, message) = h.wait_stalled("public", "InvalidSpec").await;
    assert!(message.contains("spec.azure.publicAccess"), "{message}");

    for name in ["upper", "short", "dashes", "tagged", "versioned", "public"] {
        h.delete_bucket(name).await;
        h.wait_gone(name).await;
    }
    assert_eq!(
        cloud.connections(),
        0,
        "invalid or unsupported specs never reach the cloud"
    );
}

/// One manifest, two clouds: only providerConfigRef differs, one controller reconciles both.
#[tokio::test]
async fn aws_and_azure_buckets_side_by_side() {
    let h = Harness::new("azmixed").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("mixed", false);
    let manifest = |config: &str| json!({"providerConfigRef": {"name": config}, "tags": {"team": "data"}});
    let (on_aws, on_azure) = (format!("{name}-aws"), format!("{name}-az"));
    h.apply_bucket(&on_aws, manifest("default")).await;
    h.apply_bucket(&on_azure, manifest("azure")).await;
    let a = h.wait_bucket(&on_aws, "Ready", ready_at_generation).await;
    let z = h.wait_bucket(&on_azure, "Ready", ready_at_generation).await;
    assert!(h.bucket_exists(&on_aws).await, "S3 bucket in moto");
    assert!(az.container_exists(&on_azure).await, "container in Azurite");
    assert!(
        !h.bucket_exists(&on_azure).await && !az.container_exists(&on_aws).await,
        "each on its own cloud"
    );
    let provider = |b: &Bucket| b.status.as_ref().and_then(|s| s.provider.clone()).unwrap_or_default();
    assert!(
        provider(&a).starts_with("aws") && provider(&z).starts_with("azure"),
        "{} / {}",
        provider(&a),
        provider(&z)
    );
    assert!(condition(a.status.as_ref(), "Ready").is_some());
    h.delete_bucket(&on_aws).await;
    h.delete_bucket(&on_azure).await;
    h.wait_gone(&on_aws).await;
    h.wait_gone(&on_azure).await;
    assert!(!az.container_exists(&on_azure).await);
}

/// Drift policies on Azure: `Report` leaves metadata changed in Azure and names the field;
/// metadata another tool added (Azure Policy) is neither removed nor reported; a container
/// deleted in Azure under `Report` is reported, not made again.
#[tokio::test]
async fn azure_report_keeps_the_change_and_foreign_metadata() {
    let h = Harness::new("azreport").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("reported", false);
    h.apply_bucket(
        &name,
        json!({"providerConfigRef": {"name": "azure"}, "driftPolicy": "Report", "tags": {"team": "a"}}),
    )
    .await;
    h.wait_bucket(&name, "Ready", ready_at_generation).await;
    let owner = metadata(&az, &name)
        .await
        .get("cloudkit_owner")
        .cloned()
        .unwrap_or_default();
    az.set_container_metadata(
        &name,
        &[
            ("team", "edited"),
            ("policy", "tagged-by-azure-policy"),
            ("cloudkit_owner", &owner),
        ],
    )
    .await;
    let b = h.wait_bucket(&name, "Drifted", |b| is_true(b, "Drifted")).await;
    let fields: Vec<&str> = b
        .status
        .as_ref()
        .expect("status")
        .drift
        .iter()
        .map(|d| d.field.as_str())
        .collect();
    assert_eq!(fields, ["tags.team"], "the foreign key is not drift");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let m = metadata(&az, &name).await;
    assert!(
        has_tags(&m, &[("team", "edited"), ("policy", "tagged-by-azure-policy")]),
        "{m:?}"
    );

    az.delete_container(&name).await;
    h.wait_stalled(&name, "ExternalResourceMissing").await;
    assert!(!az.container_exists(&name).await, "Report does not make it again");
}
