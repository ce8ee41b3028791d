//! Table on DynamoDB end to end: real kube-apiserver, real moto, the real controller binary.

use aws_sdk_dynamodb::types::{BillingMode, TableDescription, Tag};
use cloudkit_crds::Table;
use cloudkit_e2e::{CountingEndpoint, Harness, eventually, ready_at_generation};
use serde_json::json;

async fn describe(h: &Harness, name: &str) -> Option<TableDescription> {
    match h.dynamodb.describe_table().table_name(name).send().await {
        Ok(out) => out.table().cloned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!("DescribeTable {name}: {e:?}"),
    }
}

async fn table(h: &Harness, name: &str) -> TableDescription {
    describe(h, name).await.unwrap_or_else(|| panic!("table {name} exists"))
}

async fn tags(h: &Harness, arn: &str) -> Vec<(String, String)> {
    let out = h
        .dynamodb
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("ListTagsOfResource");
    let mut t: Vec<_> = out
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    t.sort();
    t
}

async fn ttl(h: &Harness, name: &str) -> Option<String> {
    let out = h
        .dynamodb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .expect("DescribeTimeToLive");
    out.time_to_live_description()
        .filter(|d| d.time_to_live_status().is_some_and(|s| s.as_str() == "ENABLED"))
        .and_then(|d| d.attribute_name().map(str::to_owned))
}

async fn pitr(h: &Harness, name: &str) -> bool {
    let out = h
        .dynamodb
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .expect("DescribeContinuousBackups");
    out.continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .is_some_and(|s| s.as_str() == "ENABLED")
}

fn generation_ready(generation: i64) -> impl Fn(&Table) -> bool {
    move |t: &Table| t.metadata.generation == Some(generation) && ready_at_generation(t)
}

#[tokio::test]
async fn create_update_drift_and_delete() {
    let h = Harness::new("t-lifecycle").await;
    let name = h.bucket_name("orders");
    let spec = |billing: serde_json::Value, extra: serde_json::Value| {
        let mut s = json!({
            "partitionKey": {"name": "id", "type": "String"},
            "sortKey": {"name": "at", "type": "Number"},
            "billing": billing,
            "tags": {"team": "orders"},
            "writeConnectionSecretToRef": {"name": "orders-table"}
        });
        if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(extra.clone());
        }
        s
    };
    h.apply::<Table>(
        &name,
        spec(
            json!({"mode": "Provisioned", "readCapacity": 5, "writeCapacity": 2}),
            json!({
                "ttlAttribute": "expires",
                "aws": {"pointInTimeRecovery": true},
                "globalSecondaryIndexes": [{"name": "by-user", "partitionKey": {"name": "user", "type": "String"},
                                            "readCapacity": 1, "writeCapacity": 1}]
            }),
        ),
    )
    .await;
    let t: Table = h.wait(&name, "Ready", ready_at_generation::<Table>).await;
    let live = table(&h, &name).await;
    let keys: Vec<(&str, &str)> = live
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().as_str()))
        .collect();
    assert_eq!(keys, [("id", "HASH"), ("at", "RANGE")]);
    let throughput = live.provisioned_throughput().expect("throughput");
    assert_eq!(
        (throughput.read_capacity_units(), throughput.write_capacity_units()),
        (Some(5), Some(2))
    );
    assert_eq!(live.global_secondary_indexes().len(), 1);
    assert_eq!(live.global_secondary_indexes()[0].index_name(), Some("by-user"));
    assert_eq!(ttl(&h, &name).await.as_deref(), Some("expires"));
    assert!(pitr(&h, &name).await);
    let arn = live.table_arn().expect("arn").to_owned();
    assert_eq!(t.status.as_ref().and_then(|s| s.arn.clone()), Some(arn.clone()));
    let owner = h.owner_tag("Table", &name);
    assert_eq!(
        tags(&h, &arn).await,
        [owner.clone(), ("team".to_owned(), "orders".to_owned())]
    );

    // Every mutable field changes in place: billing, an index swapped, TTL off, PITR off,
    // a stream on, deletion protection, tags. DynamoDB takes them one change at a time.
    h.apply::<Table>(
        &name,
        spec(
            json!({"mode": "OnDemand"}),
            json!({
                "deletionProtection": true,
                "aws": {"streamViewType": "NEW_IMAGE"},
                "globalSecondaryIndexes": [{"name": "by-sku", "partitionKey": {"name": "sku", "type": "String"},
                                            "projection": "KeysOnly"}],
                "tags": {"team": "billing"}
            }),
        ),
    )
    .await;
    let t: Table = h.wait(&name, "generation 2 Ready", generation_ready(2)).await;
    assert_eq!(t.status.as_ref().and_then(|s| s.observed_generation), Some(2));
    let live = table(&h, &name).await;
    assert_eq!(
        live.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let indexes: Vec<&str> = live
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, ["by-sku"]);
    assert_eq!(ttl(&h, &name).await, None);
    assert!(!pitr(&h, &name).await);
    assert_eq!(live.stream_specification().map(|s| s.stream_enabled()), Some(true));
    // The stream's ARN is an output: in status and in the connection Secret.
    let stream = t
        .status
        .as_ref()
        .and_then(|s| s.outputs.as_ref()?.get("streamArn").cloned());
    assert_eq!(stream.as_deref(), live.latest_stream_arn());
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(h.client.clone(), &h.ns);
    let secret = secrets.get("orders-table").await.expect("connection Secret");
    let data = secret.data.unwrap_or_default();
    assert_eq!(
        data.get("streamArn")
            .map(|v| String::from_utf8_lossy(&v.0).into_owned()),
        stream
    );
    assert_eq!(live.deletion_protection_enabled(), Some(true));
    assert_eq!(
        tags(&h, &arn).await,
        [owner.clone(), ("team".to_owned(), "billing".to_owned())]
    );

    // A tag changed behind CloudKit's back is reported and set back.
    h.dynamodb
        .tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("team").value("intruder").build().expect("tag"))
        .send()
        .await
        .expect("TagResource");
    let t: Table = h
        .wait(&name, "drift reported", |t: &Table| {
            t.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &t.status.as_ref().expect("status").drift;
    assert_eq!(drift[0].field, "tags.team");
    eventually("tag set back", || async {
        tags(&h, &arn).await == [owner.clone(), ("team".to_owned(), "billing".to_owned())]
    })
    .await;

    // The key schema cannot change: refused, and the table is left as it is.
    let mut changed = spec(json!({"mode": "OnDemand"}), json!({"deletionProtection": true}));
    changed["partitionKey"] = json!({"name": "orderId", "type": "String"});
    h.apply::<Table>(&name, changed).await;
    let (_, message) = h.wait_stalled_as::<Table>(&name, "ImmutableFieldChanged").await;
    assert!(message.contains("spec.partitionKey.name"), "{message}");
    assert_eq!(table(&h, &name).await.key_schema()[0].attribute_name(), "id");

    // Deletion protection holds until the manifest lifts it; then Delete removes the table.
    h.apply::<Table>(&name, spec(json!({"mode": "OnDemand"}), json!({})))
        .await;
    h.wait(&name, "generation 4 Ready", generation_ready(4)).await;
    h.delete::<Table>(&name).await;
    h.wait_deleted::<Table>(&name).await;
    assert!(describe(&h, &name).await.is_none(), "Delete policy removes the table");
}

#[tokio::test]
async fn adopts_by_external_name_and_retains() {
    let h = Harness::new("t-adopt").await;
    let existing = h.bucket_name("legacy");
    h.dynamodb
        .create_table()
        .table_name(&existing)
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    h.apply::<Table>(
        "legacy",
        json!({"externalName": existing, "partitionKey": {"name": "pk", "type": "String"},
               "ttlAttribute": "expires", "deletionPolicy": "Retain"}),
    )
    .await;
    h.wait("legacy", "Ready", ready_at_generation::<Table>).await;
    assert!(h.event_reasons("legacy").await.contains(&"Adopted".to_owned()));
    assert_eq!(ttl(&h, &existing).await.as_deref(), Some("expires"));
    h.delete::<Table>("legacy").await;
    h.wait_deleted::<Table>("legacy").await;
    assert!(
        describe(&h, &existing).await.is_some(),
        "Retain leaves the table in the cloud"
    );
}

#[tokio::test]
async fn invalid_spec_stalls_with_every_problem_and_no_cloud_call() {
    let h = Harness::new("t-invalid").await;
    let cloud = CountingEndpoint::start().await;
    h.provider_config("watched", &cloud.url).await;
    h.apply::<Table>(
        "bad",
        json!({
            "providerConfigRef": {"name": "watched"},
            "externalName": "x",
            "partitionKey": {"name": "id", "type": "String"},
            "billing": {"mode": "Provisioned", "readCapacity": 0},
            "globalSecondaryIndexes": [{"name": "by-id", "partitionKey": {"name": "id", "type": "Number"}}]
        }),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Table>("bad", "InvalidSpec").await;
    for field in [
        "spec.externalName",
        "spec.billing.readCapacity",
        "spec.billing.writeCapacity",
        "spec.globalSecondaryIndexes[0].partitionKey.type",
    ] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }
    h.delete::<Table>("bad").await;
    h.wait_deleted::<Table>("bad").await;
    assert_eq!(cloud.connections(), 0, "an invalid spec must not reach the cloud");
}
