//! Table on GCP end to end: a Bigtable table against the Bigtable emulator, with the real
//! controller binary and a real kube-apiserver. What is in the emulator is checked with
//! `cbt`, the Google Cloud SDK's own client. Skipped, loudly, without the emulator or cbt.

use std::collections::{BTreeMap, BTreeSet};

use cloudkit_crds::Table;
use cloudkit_e2e::gcp::Gcp;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, is_true, ready_at_generation};
use serde_json::{Value, json};

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
        let families: Vec<_> = families.iter().map(|f| json!({"name": f})).collect();
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
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "columnFamilies.x"))
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    assert!(
        drift
            .iter()
            .any(|d| d.field == "columnFamilies.x" && d.desired == "null"),
        "{drift:?}"
    );
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

fn policies(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn bigtable_gc_policies_and_deletion_protection() {
    if skip("bigtable_gc_policies_and_deletion_protection") {
        return;
    }
    let h = Harness::new("bigtablegc").await;
    let gcp = h.gcp_provider_config("gcp", None).await;
    let name = h.gcp_name("gc");
    let spec = |families: Value, protected: bool| {
        json!({
            "providerConfigRef": {"name": "gcp"}, "partitionKey": {"name": "id", "type": "String"},
            "deletionProtection": protected,
            "gcp": {"instance": INSTANCE, "columnFamilies": families}
        })
    };
    // Created with every kind of policy, and protected.
    h.apply::<Table>(
        &name,
        spec(
            json!([
                {"name": "a", "gcPolicy": {"maxVersions": 3}},
                {"name": "b", "gcPolicy": {"maxAgeSeconds": 86400}},
                {"name": "c", "gcPolicy": {"maxVersions": 2, "maxAgeSeconds": 3600, "mode": "Intersection"}},
                {"name": "d"}
            ]),
            true,
        ),
    )
    .await;
    h.wait::<Table>(&name, "Ready", ready_at_generation).await;
    assert_eq!(
        gcp.gc_policies(INSTANCE, &name),
        Some(policies(&[
            ("a", "versions() > 3"),
            ("b", "age() > 1d"),
            ("c", "(versions() > 2 && age() > 1h)"),
            ("d", "")
        ]))
    );
    assert!(gcp.deletion_protection(INSTANCE, &name).await);
    // Protected: Bigtable itself refuses to drop a family or the table.
    let (ok, text) = gcp.cbt(INSTANCE, &["deletefamily", &name, "d"]);
    assert!(!ok, "a protected table's family was dropped: {text}");
    let (ok, text) = gcp.cbt(INSTANCE, &["deletetable", &name]);
    assert!(!ok, "a protected table was deleted: {text}");
    assert!(gcp.gc_policies(INSTANCE, &name).is_some());

    // Changed in place: a rule changed, one removed, one added, the mode switched, and the
    // protection lifted.
    h.apply::<Table>(
        &name,
        spec(
            json!([
                {"name": "a", "gcPolicy": {"maxVersions": 5}},
                {"name": "b"},
                {"name": "c", "gcPolicy": {"maxVersions": 2, "maxAgeSeconds": 3600, "mode": "Union"}},
                {"name": "d", "gcPolicy": {"maxVersions": 1}}
            ]),
            false,
        ),
    )
    .await;
    h.wait::<Table>(&name, "Ready at the new generation", ready_at_generation)
        .await;
    let converged = policies(&[
        ("a", "versions() > 5"),
        ("b", ""),
        ("c", "(versions() > 2 || age() > 1h)"),
        ("d", "versions() > 1"),
    ]);
    assert_eq!(gcp.gc_policies(INSTANCE, &name), Some(converged.clone()));

    // Drift: a rule changed in Bigtable directly is reported field by field and set back.
    let (ok, text) = gcp.cbt(INSTANCE, &["setgcpolicy", &name, "a", "maxversions=9"]);
    assert!(ok, "{text}");
    let t: Table = h
        .wait(&name, "drift reported", |t: &Table| {
            t.status.as_ref().is_some_and(|s| {
                s.drift
                    .iter()
                    .any(|d| d.field == "columnFamilies.a.gcPolicy.maxVersions")
            })
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    let found = drift
        .iter()
        .find(|d| d.field == "columnFamilies.a.gcPolicy.maxVersions")
        .expect("the field");
    assert_eq!(
        (found.desired.as_str(), found.observed.as_str()),
        ("5", "9"),
        "{drift:?}"
    );
    eventually("the rule set back", || async {
        gcp.gc_policies(INSTANCE, &name) == Some(converged.clone())
    })
    .await;
    // A rule the manifest cannot say (nested) is replaced too.
    let (ok, text) = gcp.cbt(
        INSTANCE,
        &[
            "setgcpolicy",
            &name,
            "b",
            "maxversions=1 or (maxage=1h and maxversions=4)",
        ],
    );
    assert!(ok, "{text}");
    eventually("the nested rule removed", || async {
        gcp.gc_policies(INSTANCE, &name) == Some(converged.clone())
    })
    .await;

    // Deletion protection switched on in Bigtable directly: reported and set back.
    assert!(!gcp.deletion_protection(INSTANCE, &name).await);
    gcp.set_deletion_protection(INSTANCE, &name, true).await;
    let t: Table = h
        .wait(&name, "protection drift reported", |t: &Table| {
            t.status
                .as_ref()
                .is_some_and(|s| s.drift.iter().any(|d| d.field == "deletionProtection"))
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    assert!(
        drift
            .iter()
            .any(|d| d.field == "deletionProtection" && d.desired == "false" && d.observed == "true"),
        "{drift:?}"
    );
    eventually("the protection lifted again", || async {
        !gcp.deletion_protection(INSTANCE, &name).await
    })
    .await;

    // Unprotected now: deleted with the object.
    h.delete::<Table>(&name).await;
    h.wait_deleted::<Table>(&name).await;
    assert_eq!(gcp.gc_policies(INSTANCE, &name), None, "deleted with the object");

    // A protected table is not deleted: the object says why, and Retain lets it go.
    let guarded = h.gcp_name("guarded");
    h.apply::<Table>(&guarded, spec(json!([{"name": "a"}]), true)).await;
    h.wait::<Table>(&guarded, "Ready", ready_at_generation).await;
    h.delete::<Table>(&guarded).await;
    let (_, message) = h.wait_stalled_as::<Table>(&guarded, "CloudRejected").await;
    assert!(message.contains("spec.deletionProtection"), "{message}");
    h.merge_spec::<Table>(&guarded, json!({"deletionPolicy": "Retain"}))
        .await;
    h.wait_deleted::<Table>(&guarded).await;
    assert!(
        gcp.gc_policies(INSTANCE, &guarded).is_some(),
        "the protected table stays"
    );
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
        json!({
            "providerConfigRef": {"name": "nowhere"}, "partitionKey": key,
            "gcp": {"columnFamilies": [
                {"name": "ok"}, {"name": "no/slash"}, {"name": "ok"},
                {"name": "gc", "gcPolicy": {"maxVersions": 0, "mode": "Intersection"}},
                {"name": "none", "gcPolicy": {}}
            ]}
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Table>("noinstance", "InvalidSpec").await;
    for field in [
        "spec.gcp.instance",
        "spec.gcp.columnFamilies[1].name",
        "spec.gcp.columnFamilies[2].name",
        "spec.gcp.columnFamilies[3].gcPolicy.maxVersions",
        "spec.gcp.columnFamilies[3].gcPolicy.mode",
        "spec.gcp.columnFamilies[4].gcPolicy",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
    // A table ID Bigtable refuses, and an instance ID.
    h.apply::<Table>(
        "badname",
        json!({
            "providerConfigRef": {"name": "nowhere"}, "partitionKey": key, "externalName": "-starts-with-dash",
            "gcp": {"instance": "UPPER"}
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Table>("badname", "InvalidSpec").await;
    assert!(
        message.contains("spec.externalName") && message.contains("Bigtable table"),
        "{message}"
    );
    assert!(message.contains("spec.gcp.instance"), "{message}");
    // Portable fields Bigtable cannot honour, each named.
    h.apply::<Table>(
        "dynamo",
        json!({
            "providerConfigRef": {"name": "nowhere"}, "partitionKey": key, "ttlAttribute": "exp",
            "tags": {"team": "a"}, "billing": {"mode": "Provisioned", "readCapacity": 1, "writeCapacity": 1},
            "deletionProtection": true,
            "globalSecondaryIndexes": [{"name": "by-x", "partitionKey": {"name": "x", "type": "String"},
                                        "readCapacity": 1, "writeCapacity": 1}],
            "gcp": {"instance": INSTANCE}
        }),
    )
    .await;
    let (t, message) = h.wait_stalled_as::<Table>("dynamo", "UnsupportedForProvider").await;
    for field in [
        "spec.billing.mode",
        "spec.ttlAttribute",
        "spec.tags",
        "spec.globalSecondaryIndexes",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
    assert!(
        !message.contains("spec.deletionProtection"),
        "Bigtable has deletion protection: {message}"
    );
    assert!(!is_true(&t, "Reconciling"), "needs a human, not a retry loop");
    for name in ["noinstance", "badname", "dynamo"] {
        h.delete::<Table>(name).await;
        h.wait_deleted::<Table>(name).await;
    }
    assert_eq!(
        cloud.connections(),
        0,
        "invalid or unsupported specs never reach the cloud"
    );
}
