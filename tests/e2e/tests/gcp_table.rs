//! Table on GCP end to end: a Bigtable table against the Bigtable emulator, with the real
//! controller binary and a real kube-apiserver. What is in the emulator is checked with
//! `cbt`, the Google Cloud SDK's own client. Skipped, loudly, without the emulator or cbt.

use std::collections::BTreeSet;

use cloudkit_crds::Table;
use cloudkit_e2e::gcp::Gcp;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, is_true, ready_at_generation};
use serde_json::json;

const INSTANCE: &str = "cloudkit-e2e";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn skip(test: &str) -> bool {
    Gcp::bigtable_or_skip(test).is_none() || Gcp::cbt_or_skip(test).is_none()
}

#[tokio::test]
async fn bigtable_table_create_update_drift_delete_retain_and_adopt() {
    if skip("bigtable_table_create_update_drift_delete_retain_and_adopt") {
        return;
    }
    let h = Harness::new("bigtable").await;
    let gcp = h.gcp_provider_config("gcp", None).await;
    let name = h.gcp_name("events");
    let spec = |families: &[&str]| {
        json!({
            "providerConfigRef": {"name": "gcp"}, "partitionKey": {"name": "id", "type": "String"},
            "gcp": {"instance": INSTANCE, "columnFamilies": families}
        })
    };
    h.apply::<Table>(&name, spec(&["a", "b"])).await;
    let t: Table = h.wait(&name, "Ready", ready_at_generation).await;
    let status = t.status.expect("status");
    assert_eq!(
        status.arn,
        Some(format!("projects/{}/instances/{INSTANCE}/tables/{name}", gcp.project))
    );
    assert!(
        status
            .provider
            .as_deref()
            .is_some_and(|p| p.starts_with(&format!("gcp project {} instance {INSTANCE}", gcp.project))),
        "{status:?}"
    );
    assert_eq!(gcp.families(INSTANCE, &name), Some(set(&["a", "b"])));

    // Families added and dropped in place.
    h.apply::<Table>(&name, spec(&["b", "c"])).await;
    h.wait::<Table>(&name, "Ready at the new generation", ready_at_generation)
        .await;
    assert_eq!(gcp.families(INSTANCE, &name), Some(set(&["b", "c"])));

    // Drift: a family added in Bigtable directly is reported and dropped.
    let (ok, text) = gcp.cbt(INSTANCE, &["createfamily", &name, "x"]);
    assert!(ok, "{text}");
    let t: Table = h
        .wait(&name, "drift reported", |t: &Table| {
            t.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "columnFamilies"))
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    assert!(drift.iter().any(|d| d.observed.contains('x')), "{drift:?}");
    eventually("the family dropped again", || async {
        gcp.families(INSTANCE, &name) == Some(set(&["b", "c"]))
    })
    .await;

    // The instance is part of where the table is: a table does not move.
    h.merge_spec::<Table>(&name, json!({"gcp": {"instance": "elsewhere"}}))
        .await;
    let (_, message) = h.wait_stalled_as::<Table>(&name, "ProviderChanged").await;
    assert!(message.contains("instance"), "{message}");
    h.merge_spec::<Table>(&name, json!({"gcp": {"instance": INSTANCE}}))
        .await;
    h.wait::<Table>(&name, "Ready again", ready_at_generation).await;

    // Delete (the default for what CloudKit made).
    h.delete::<Table>(&name).await;
    h.wait_deleted::<Table>(&name).await;
    assert_eq!(gcp.families(INSTANCE, &name), None, "deleted with the object");

    // Retain keeps it; the same object takes it back by its record.
    let kept = h.gcp_name("kept");
    let mut retained = spec(&["a"]);
    retained["deletionPolicy"] = json!("Retain");
    h.apply::<Table>(&kept, retained.clone()).await;
    h.wait::<Table>(&kept, "Ready", ready_at_generation).await;
    h.delete::<Table>(&kept).await;
    h.wait_deleted::<Table>(&kept).await;
    assert_eq!(
        gcp.families(INSTANCE, &kept),
        Some(set(&["a"])),
        "Retain leaves the table"
    );

    // A table made outside CloudKit: refused by name alone, adopted with spec.externalName
    // and its families converged.
    let outside = h.gcp_name("outside");
    let (ok, text) = gcp.cbt(INSTANCE, &["createtable", &outside, "families=old"]);
    assert!(ok, "{text}");
    h.apply::<Table>(&outside, spec(&["new"])).await;
    h.wait_stalled_as::<Table>(&outside, "AlreadyExists").await;
    let mut adopt = spec(&["new"]);
    adopt["externalName"] = json!(outside);
    h.apply::<Table>("adopter", adopt).await;
    h.wait::<Table>("adopter", "Ready", ready_at_generation).await;
    assert_eq!(gcp.families(INSTANCE, &outside), Some(set(&["new"])));
}

#[tokio::test]
async fn bigtable_invalid_and_unsupported_specs_stall_without_a_call() {
    if skip("bigtable_invalid_and_unsupported_specs_stall_without_a_call") {
        return;
    }
    let h = Harness::new("bigtablebad").await;
    let cloud = CountingEndpoint::start().await;
    h.gcp_provider_config("nowhere", Some(&cloud.url)).await;
    let key = json!({"name": "id", "type": "String"});
    // No instance: says what to add. Bad family names.
    h.apply::<Table>(
        "noinstance",
        json!({"providerConfigRef": {"name": "nowhere"}, "partitionKey": key, "gcp": {"columnFamilies": ["ok", "no/slash", "ok"]}}),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Table>("noinstance", "InvalidSpec").await;
    for field in [
        "spec.gcp.instance",
        "spec.gcp.columnFamilies[1]",
        "spec.gcp.columnFamilies[2]",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
    // Portable fields Bigtable cannot honour, each named.
    h.apply::<Table>(
        "dynamo",
        json!({
            "providerConfigRef": {"name": "nowhere"}, "partitionKey": key, "ttlAttribute": "exp",
            "tags": {"team": "a"}, "billing": {"mode": "Provisioned", "readCapacity": 1, "writeCapacity": 1},
            "gcp": {"instance": INSTANCE}
        }),
    )
    .await;
    let (t, message) = h.wait_stalled_as::<Table>("dynamo", "UnsupportedForProvider").await;
    for field in ["spec.billing.mode", "spec.ttlAttribute", "spec.tags"] {
        assert!(message.contains(field), "{field} in {message}");
    }
    assert!(!is_true(&t, "Reconciling"), "needs a human, not a retry loop");
    for name in ["noinstance", "dynamo"] {
        h.delete::<Table>(name).await;
        h.wait_deleted::<Table>(name).await;
    }
    assert_eq!(
        cloud.connections(),
        0,
        "invalid or unsupported specs never reach the cloud"
    );
}
