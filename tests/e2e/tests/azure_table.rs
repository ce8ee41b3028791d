//! Table on Azure end to end: real kube-apiserver, Azurite, the real controller binary.
//! Every check of what is in Azurite goes through the tests' own REST client.

use cloudkit_crds::Table;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, ready_at_generation};
use serde_json::json;

fn keys() -> serde_json::Value {
    json!({"providerConfigRef": {"name": "azure"}, "partitionKey": {"name": "tenant", "type": "String"},
           "sortKey": {"name": "id", "type": "String"}})
}

#[tokio::test]
async fn azure_table_create_update_recreate_delete_and_retain() {
    let h = Harness::new("aztable").await;
    let az = h.azure_provider_config("azure", None).await;
    let name = h.azure_name("orders", true);
    h.apply::<Table>(&name, keys()).await;
    let t: Table = h.wait(&name, "Ready", ready_at_generation).await;
    let status = t.status.clone().expect("status");
    assert_eq!(status.url, Some(format!("{}/{name}", az.table)));
    assert!(
        status
            .id
            .as_deref()
            .is_some_and(|id| id.ends_with(&format!("/tableServices/default/tables/{name}"))),
        "{status:?}"
    );
    assert!(az.table_exists(&name).await);

    // The key names are the application's convention (Azure stores no schema): a new
    // generation is Ready with nothing to change, and no drift is reported from them.
    let mut renamed = keys();
    renamed["sortKey"] = json!({"name": "orderId", "type": "String"});
    h.apply::<Table>(&name, renamed).await;
    let t: Table = h.wait(&name, "Ready at the new generation", ready_at_generation).await;
    assert!(t.status.as_ref().is_some_and(|s| s.drift.is_empty()));

    // Deleted in Azure directly: the controller makes it again.
    az.delete_table(&name).await;
    eventually("table made again", || async { az.table_exists(&name).await }).await;

    h.delete::<Table>(&name).await;
    h.wait_deleted::<Table>(&name).await;
    assert!(!az.table_exists(&name).await, "deletionPolicy Delete removes the table");

    let kept = h.azure_name("kept", true);
    let mut retain = keys();
    retain["deletionPolicy"] = json!("Retain");
    h.apply::<Table>(&kept, retain).await;
    h.wait::<Table>(&kept, "Ready", ready_at_generation).await;
    h.delete::<Table>(&kept).await;
    h.wait_deleted::<Table>(&kept).await;
    assert!(az.table_exists(&kept).await, "Retain leaves the table");
}

#[tokio::test]
async fn azure_table_adopted_by_external_name() {
    let h = Harness::new("aztadopt").await;
    let az = h.azure_provider_config("azure", None).await;
    let outside = h.azure_name("outside", true);
    az.create_table(&outside).await;
    h.apply::<Table>(&outside, keys()).await;
    h.wait_stalled_as::<Table>(&outside, "AlreadyExists").await;
    let mut adopt = keys();
    adopt["externalName"] = json!(outside);
    h.apply::<Table>("adopter", adopt).await;
    let t: Table = h.wait("adopter", "Ready", ready_at_generation).await;
    assert_eq!(
        t.status.as_ref().and_then(|s| s.external_name.as_deref()),
        Some(outside.as_str())
    );
}

#[tokio::test]
async fn azure_table_invalid_names_and_unsupported_fields_stall_without_a_call() {
    let h = Harness::new("aztbad").await;
    let cloud = CountingEndpoint::start().await;
    h.azure_provider_config("nowhere", Some(&cloud.url)).await;
    let mut bad = keys();
    bad["providerConfigRef"] = json!({"name": "nowhere"});
    for (object, external, problem) in [
        ("dashes", "my-table", "use only letters and digits"),
        ("digit", "1orders", "must start with a letter"),
        ("reserved", "tables", "reserved"),
    ] {
        let mut spec = bad.clone();
        spec["externalName"] = json!(external);
        h.apply::<Table>(object, spec).await;
        let (_, message) = h.wait_stalled_as::<Table>(object, "InvalidSpec").await;
        assert!(
            message.contains("not a valid Azure table name") && message.contains(problem),
            "{message}"
        );
    }
    let mut fancy = bad.clone();
    fancy["ttlAttribute"] = json!("expires");
    fancy["billing"] = json!({"mode": "Provisioned", "readCapacity": 5, "writeCapacity": 5});
    fancy["tags"] = json!({"team": "data"});
    h.apply::<Table>("fancy", fancy).await;
    let (_, message) = h.wait_stalled_as::<Table>("fancy", "UnsupportedForProvider").await;
    for field in ["spec.ttlAttribute", "spec.billing.mode", "spec.tags"] {
        assert!(
            message.contains(&format!("{field}: is not supported on azure")),
            "{field}: {message}"
        );
    }
    for name in ["dashes", "digit", "reserved", "fancy"] {
        h.delete::<Table>(name).await;
        h.wait_deleted::<Table>(name).await;
    }
    assert_eq!(
        cloud.connections(),
        0,
        "invalid or unsupported specs never reach the cloud"
    );
}
