//! DynamoDB tables: keys, billing, TTL, point-in-time recovery, streams, global secondary
//! indexes, deletion protection and tags.
//!
//! DynamoDB runs one table change at a time (the table is UPDATING until it is built), so
//! `update` makes at most one `UpdateTable` change per call; the loop observes again, waits
//! while the table is busy and comes back for what is left.

use cloudkit_crds::reason::Reason;
use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode as AwsBilling, CreateGlobalSecondaryIndexAction, DeleteGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, Projection as AwsProjection, ProjectionType,
    ProvisionedThroughput, ProvisionedThroughputDescription, ScalarAttributeType, StreamSpecification,
    StreamViewType as AwsStreamView, TableDescription, TableStatus, Tag, TimeToLiveSpecification, TimeToLiveStatus,
    UpdateGlobalSecondaryIndexAction,
};
use aws_smithy_types::error::operation::BuildError;
use cloudkit_crds::common::Tags;
use cloudkit_crds::table::{AttributeType, BillingMode, KeyAttribute, Projection, StreamViewType};
use cloudkit_drift::{FieldDiff, touches};

use super::{Clients, classify, error_code};
use crate::table::{BillingState, IndexState, TableState};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct DynamoTable {
    client: Client,
}

impl DynamoTable {
    pub async fn new(clients: &Clients, ctx: &ProviderContext) -> Self {
        Self {
            client: clients.dynamodb(ctx).await,
        }
    }

    async fn describe(&self, name: &str) -> Result<Option<TableDescription>, CloudError> {
        match self.client.describe_table().table_name(name).send().await {
            Ok(out) => Ok(out.table().cloned()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify("DescribeTable", name, e)),
        }
    }

    async fn ttl(&self, name: &str) -> Result<Option<String>, CloudError> {
        let out = self.client.describe_time_to_live().table_name(name).send().await;
        let out = out.map_err(|e| classify("DescribeTimeToLive", name, e))?;
        Ok(out.time_to_live_description().and_then(|d| {
            matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
            .then(|| d.attribute_name().map(str::to_owned))
            .flatten()
        }))
    }

    async fn point_in_time_recovery(&self, name: &str) -> Result<bool, CloudError> {
        let out = self.client.describe_continuous_backups().table_name(name).send().await;
        let out = out.map_err(|e| classify("DescribeContinuousBackups", name, e))?;
        Ok(out
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status())
            == Some(&PointInTimeRecoveryStatus::Enabled))
    }

    async fn tags(&self, name: &str, arn: &str) -> Result<Tags, CloudError> {
        let out = self.client.list_tags_of_resource().resource_arn(arn).send().await;
        let out = out.map_err(|e| classify("ListTagsOfResource", name, e))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    /// The one `UpdateTable` change to make now, if any, in an order that never asks for two
    /// at once: protection, billing, stream, then indexes (removals before additions).
    async fn update_table(
        &self,
        name: &str,
        live: &TableDescription,
        desired: &TableState,
        diffs: &[FieldDiff],
    ) -> Result<(), CloudError> {
        let request = self.client.update_table().table_name(name);
        let request = if touches(diffs, "deletionProtection") {
            request.deletion_protection_enabled(desired.deletion_protection)
        } else if touches(diffs, "billing") {
            let mut r = request.billing_mode(aws_billing(desired.billing.mode));
            if let Some(table) = throughput(desired.billing.read_capacity, desired.billing.write_capacity)? {
                r = r.provisioned_throughput(table);
                // Provisioned tables need capacities on every index in the same request.
                for (index, state) in &desired.global_secondary_indexes {
                    if let Some(t) = throughput(state.read_capacity, state.write_capacity)? {
                        let update = built(
                            UpdateGlobalSecondaryIndexAction::builder()
                                .index_name(index)
                                .provisioned_throughput(t)
                                .build(),
                        )?;
                        r = r.global_secondary_index_updates(
                            GlobalSecondaryIndexUpdate::builder().update(update).build(),
                        );
                    }
                }
            }
            r
        } else if touches(diffs, "streamViewType") {
            let enabled = live.stream_specification().is_some_and(|s| s.stream_enabled());
            // A stream's view type cannot change while it is on: turn it off first.
            let spec = match (desired.stream_view_type, enabled) {
                (StreamViewType::Disabled, _) | (_, true) => StreamSpecification::builder().stream_enabled(false),
                (view, false) => StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_stream_view(view)),
            };
            request.stream_specification(built(spec.build())?)
        } else if let Some(index) = index_to_remove(desired, diffs) {
            let delete = built(DeleteGlobalSecondaryIndexAction::builder().index_name(&index).build())?;
            request.global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().delete(delete).build())
        } else if let Some((index, state)) = index_to_add(desired, live) {
            let mut create = CreateGlobalSecondaryIndexAction::builder()
                .index_name(index)
                .set_key_schema(Some(key_schema(&state.partition_key, state.sort_key.as_ref())?))
                .projection(aws_projection(state.projection));
            if let Some(t) = throughput(state.read_capacity, state.write_capacity)? {
                create = create.provisioned_throughput(t);
            }
            request
                .set_attribute_definitions(Some(attribute_definitions(desired)?))
                .global_secondary_index_updates(
                    GlobalSecondaryIndexUpdate::builder()
                        .create(built(create.build())?)
                        .build(),
                )
        } else if let Some((index, state)) = index_capacity_to_change(desired, diffs) {
            let Some(t) = throughput(state.read_capacity, state.write_capacity)? else {
                return Ok(());
            };
            let update = built(
                UpdateGlobalSecondaryIndexAction::builder()
                    .index_name(index)
                    .provisioned_throughput(t)
                    .build(),
            )?;
            request.global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().update(update).build())
        } else {
            return Ok(());
        };
        match request.send().await {
            Ok(_) => Ok(()),
            // Busy with an earlier change: the next observe waits for it.
            Err(e) if error_code(&e) == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(classify("UpdateTable", name, e)),
        }
    }
}

fn built<T>(result: Result<T, BuildError>) -> Result<T, CloudError> {
    result.map_err(|e| CloudError::Rejected {
        reason: Reason::InvalidRequest,
        message: e.to_string(),
    })
}

fn scalar(t: AttributeType) -> ScalarAttributeType {
    match t {
        AttributeType::String => ScalarAttributeType::S,
        AttributeType::Number => ScalarAttributeType::N,
        AttributeType::Binary => ScalarAttributeType::B,
    }
}

fn attribute_type(t: &ScalarAttributeType) -> AttributeType {
    match t {
        ScalarAttributeType::N => AttributeType::Number,
        ScalarAttributeType::B => AttributeType::Binary,
        _ => AttributeType::String,
    }
}

fn aws_billing(mode: BillingMode) -> AwsBilling {
    match mode {
        BillingMode::OnDemand => AwsBilling::PayPerRequest,
        BillingMode::Provisioned => AwsBilling::Provisioned,
    }
}

fn aws_stream_view(view: StreamViewType) -> AwsStreamView {
    match view {
        StreamViewType::KeysOnly | StreamViewType::Disabled => AwsStreamView::KeysOnly,
        StreamViewType::NewImage => AwsStreamView::NewImage,
        StreamViewType::OldImage => AwsStreamView::OldImage,
        StreamViewType::NewAndOldImages => AwsStreamView::NewAndOldImages,
    }
}

fn aws_projection(p: Projection) -> AwsProjection {
    let t = match p {
        Projection::All => ProjectionType::All,
        Projection::KeysOnly => ProjectionType::KeysOnly,
    };
    AwsProjection::builder().projection_type(t).build()
}

fn throughput(read: Option<i64>, write: Option<i64>) -> Result<Option<ProvisionedThroughput>, CloudError> {
    match (read, write) {
        (Some(r), Some(w)) => Ok(Some(built(
            ProvisionedThroughput::builder()
                .read_capacity_units(r)
                .write_capacity_units(w)
                .build(),
        )?)),
        _ => Ok(None),
    }
}

fn key_schema(partition: &KeyAttribute, sort: Option<&KeyAttribute>) -> Result<Vec<KeySchemaElement>, CloudError> {
    let mut keys = vec![built(
        KeySchemaElement::builder()
            .attribute_name(&partition.name)
            .key_type(KeyType::Hash)
            .build(),
    )?];
    if let Some(sort) = sort {
        keys.push(built(
            KeySchemaElement::builder()
                .attribute_name(&sort.name)
                .key_type(KeyType::Range)
                .build(),
        )?);
    }
    Ok(keys)
}

/// Every attribute any key of the table or its indexes uses, once each.
fn attribute_definitions(state: &TableState) -> Result<Vec<AttributeDefinition>, CloudError> {
    let mut seen = BTreeMap::new();
    let indexes = state.global_secondary_indexes.values();
    let keys = [Some(&state.partition_key), state.sort_key.as_ref()]
        .into_iter()
        .flatten()
        .chain(indexes.flat_map(|i| [Some(&i.partition_key), i.sort_key.as_ref()].into_iter().flatten()));
    for key in keys {
        seen.entry(key.name.clone()).or_insert(key.type_);
    }
    seen.into_iter()
        .map(|(name, t)| {
            built(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(scalar(t))
                    .build(),
            )
        })
        .collect()
}

/// The keys a key schema names, with their types from the attribute definitions.
fn keys(schema: &[KeySchemaElement], types: &BTreeMap<&str, AttributeType>) -> (KeyAttribute, Option<KeyAttribute>) {
    let key = |kind: KeyType| {
        schema.iter().find(|k| k.key_type() == &kind).map(|k| KeyAttribute {
            name: k.attribute_name().to_owned(),
            type_: types.get(k.attribute_name()).copied().unwrap_or(AttributeType::String),
        })
    };
    let partition = key(KeyType::Hash).unwrap_or(KeyAttribute {
        name: String::new(),
        type_: AttributeType::String,
    });
    (partition, key(KeyType::Range))
}

fn capacities(provisioned: bool, t: Option<&ProvisionedThroughputDescription>) -> (Option<i64>, Option<i64>) {
    if !provisioned {
        return (None, None);
    }
    (
        t.and_then(|t| t.read_capacity_units()),
        t.and_then(|t| t.write_capacity_units()),
    )
}

/// An index the manifest no longer lists, or one whose keys or projection changed (indexes
/// cannot change those; the index is rebuilt from the table, no data is lost).
fn index_to_remove(desired: &TableState, diffs: &[FieldDiff]) -> Option<String> {
    diffs.iter().find_map(|d| {
        let rest = d.path.strip_prefix("globalSecondaryIndexes.")?;
        let (index, field) = match rest.split_once('.') {
            Some((index, field)) => (index, Some(field)),
            None => (rest, None),
        };
        let removed = !desired.global_secondary_indexes.contains_key(index);
        let rebuilt =
            field.is_some_and(|f| f.starts_with("partitionKey") || f.starts_with("sortKey") || f == "projection");
        (removed || rebuilt).then(|| index.to_owned())
    })
}

/// An index the manifest lists that the table does not have yet.
fn index_to_add<'a>(desired: &'a TableState, live: &TableDescription) -> Option<(&'a String, &'a IndexState)> {
    desired.global_secondary_indexes.iter().find(|(name, _)| {
        !live
            .global_secondary_indexes()
            .iter()
            .any(|i| i.index_name() == Some(name.as_str()))
    })
}

fn index_capacity_to_change<'a>(desired: &'a TableState, diffs: &[FieldDiff]) -> Option<(&'a String, &'a IndexState)> {
    desired
        .global_secondary_indexes
        .iter()
        .find(|(name, _)| touches(diffs, &format!("globalSecondaryIndexes.{name}")))
}

#[async_trait]
impl ExternalResource for DynamoTable {
    type State = TableState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<TableState>>, CloudError> {
        let Some(table) = self.describe(name).await? else {
            return Ok(None);
        };
        let arn = table.table_arn().unwrap_or_default().to_owned();
        let (ttl, pitr, tags) = tokio::join!(self.ttl(name), self.point_in_time_recovery(name), self.tags(name, &arn));
        let types: BTreeMap<&str, AttributeType> = table
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name(), attribute_type(a.attribute_type())))
            .collect();
        let provisioned =
            table.billing_mode_summary().and_then(|b| b.billing_mode()) != Some(&AwsBilling::PayPerRequest);
        let (partition_key, sort_key) = keys(table.key_schema(), &types);
        let (read_capacity, write_capacity) = capacities(provisioned, table.provisioned_throughput());
        let stream_view_type = match table.stream_specification() {
            Some(s) if s.stream_enabled() => match s.stream_view_type() {
                Some(AwsStreamView::NewImage) => StreamViewType::NewImage,
                Some(AwsStreamView::OldImage) => StreamViewType::OldImage,
                Some(AwsStreamView::NewAndOldImages) => StreamViewType::NewAndOldImages,
                _ => StreamViewType::KeysOnly,
            },
            _ => StreamViewType::Disabled,
        };
        let mut busy: Vec<String> = Vec::new();
        if table.table_status() != Some(&TableStatus::Active) {
            busy.push(format!(
                "table status is {}",
                table.table_status().map_or("unknown", |s| s.as_str())
            ));
        }
        let global_secondary_indexes = table
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                let index = i.index_name().unwrap_or_default().to_owned();
                if i.index_status() != Some(&IndexStatus::Active) {
                    let status = i.index_status().map_or("unknown", |s| s.as_str());
                    busy.push(format!("index {index} is {status}"));
                }
                let (partition_key, sort_key) = keys(i.key_schema(), &types);
                let projection = match i.projection().and_then(|p| p.projection_type()) {
                    Some(ProjectionType::KeysOnly) => Projection::KeysOnly,
                    _ => Projection::All,
                };
                let (read_capacity, write_capacity) = capacities(provisioned, i.provisioned_throughput());
                let state = IndexState {
                    partition_key,
                    sort_key,
                    projection,
                    read_capacity,
                    write_capacity,
                };
                (index, state)
            })
            .collect();
        let state = TableState {
            partition_key,
            sort_key,
            billing: BillingState {
                mode: if provisioned {
                    BillingMode::Provisioned
                } else {
                    BillingMode::OnDemand
                },
                read_capacity,
                write_capacity,
            },
            ttl_attribute: ttl?,
            point_in_time_recovery: pitr?,
            stream_view_type,
            deletion_protection: table.deletion_protection_enabled().unwrap_or(false),
            global_secondary_indexes,
            tags: tags?,
            column_families: None,
        };
        let mut outputs = Outputs {
            arn: Some(arn),
            url: None,
            id: Some(name.to_owned()),
            ..Default::default()
        };
        if stream_view_type != StreamViewType::Disabled
            && let Some(stream) = table.latest_stream_arn()
        {
            outputs.extra.insert("streamArn".to_owned(), stream.to_owned());
        }
        Ok(Some(Observed {
            state,
            outputs,
            pending: (!busy.is_empty()).then(|| busy.join(", ")),
        }))
    }

    async fn create(&self, name: &str, desired: &TableState) -> Result<(), CloudError> {
        // What DynamoDB needs to create a table at all: keys, billing and their indexes.
        let mut request = self
            .client
            .create_table()
            .table_name(name)
            .set_key_schema(Some(key_schema(&desired.partition_key, desired.sort_key.as_ref())?))
            .set_attribute_definitions(Some(attribute_definitions(desired)?))
            .billing_mode(aws_billing(desired.billing.mode));
        if let Some(t) = throughput(desired.billing.read_capacity, desired.billing.write_capacity)? {
            request = request.provisioned_throughput(t);
        }
        for (index, state) in &desired.global_secondary_indexes {
            let mut gsi = GlobalSecondaryIndex::builder()
                .index_name(index)
                .set_key_schema(Some(key_schema(&state.partition_key, state.sort_key.as_ref())?))
                .projection(aws_projection(state.projection));
            if let Some(t) = throughput(state.read_capacity, state.write_capacity)? {
                gsi = gsi.provisioned_throughput(t);
            }
            request = request.global_secondary_indexes(built(gsi.build())?);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            // A retry after a lost answer: the table is there, the next observe sees it.
            Err(e) if error_code(&e) == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(classify("CreateTable", name, e)),
        }
    }

    async fn update(&self, name: &str, desired: &TableState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let live = self
            .describe(name)
            .await?
            .ok_or_else(|| CloudError::transient(format!("table '{name}' is not there (yet): looking again")))?;
        self.update_table(name, &live, desired, diffs).await?;
        if touches(diffs, "ttlAttribute") {
            // Turning TTL off names the attribute it was on.
            let (enabled, attribute) = match &desired.ttl_attribute {
                Some(a) => (true, a.clone()),
                None => (
                    false,
                    diffs
                        .iter()
                        .find(|d| d.path == "ttlAttribute")
                        .and_then(|d| d.observed.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                ),
            };
            let spec = built(
                TimeToLiveSpecification::builder()
                    .enabled(enabled)
                    .attribute_name(attribute)
                    .build(),
            )?;
            let out = self
                .client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await;
            out.map_err(|e| classify("UpdateTimeToLive", name, e))?;
        }
        if touches(diffs, "pointInTimeRecovery") {
            let spec = built(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(desired.point_in_time_recovery)
                    .build(),
            )?;
            let out = self
                .client
                .update_continuous_backups()
                .table_name(name)
                .point_in_time_recovery_specification(spec)
                .send()
                .await;
            out.map_err(|e| classify("UpdateContinuousBackups", name, e))?;
        }
        if touches(diffs, "tags") {
            let arn = live.table_arn().unwrap_or_default();
            let (set, removed) = super::tag_changes(&desired.tags, diffs);
            if !removed.is_empty() {
                let out = self
                    .client
                    .untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(removed))
                    .send()
                    .await;
                out.map_err(|e| classify("UntagResource", name, e))?;
            }
            if !set.is_empty() {
                let tags = set
                    .into_iter()
                    .map(|(k, v)| built(Tag::builder().key(k).value(v).build()))
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(tags))
                    .send()
                    .await;
                out.map_err(|e| classify("TagResource", name, e))?;
            }
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        match self.client.delete_table().table_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            // Still being created or changed: deleting waits for that.
            Err(e) if error_code(&e) == Some("ResourceInUseException") => Err(CloudError::transient(format!(
                "table '{name}' is busy (being created or updated); deleting it when it is done"
            ))),
            Err(e) => Err(classify("DeleteTable", name, e)),
        }
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["partitionKey", "sortKey"]
    }

    fn settles_async(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> TableState {
        let spec: cloudkit_crds::table::TableSpec = serde_json::from_value(serde_json::json!({
            "partitionKey": {"name": "id", "type": "String"},
            "sortKey": {"name": "at", "type": "Number"},
            "globalSecondaryIndexes": [
                {"name": "by-user", "partitionKey": {"name": "user", "type": "String"},
                 "sortKey": {"name": "at", "type": "Number"}}
            ]
        }))
        .expect("spec");
        TableState::desired(&spec, &crate::Dependencies::default()).expect("desired")
    }

    #[test]
    fn attributes_are_defined_once_each() {
        let defs = attribute_definitions(&state()).expect("definitions");
        let names: Vec<&str> = defs.iter().map(|d| d.attribute_name()).collect();
        assert_eq!(names, ["at", "id", "user"]);
    }

    #[test]
    fn a_changed_index_key_rebuilds_the_index() {
        let desired = state();
        let diff = |path: &str| FieldDiff {
            path: path.into(),
            desired: serde_json::Value::Null,
            observed: serde_json::Value::Null,
        };
        assert_eq!(
            index_to_remove(&desired, &[diff("globalSecondaryIndexes.old")]).as_deref(),
            Some("old")
        );
        assert_eq!(
            index_to_remove(&desired, &[diff("globalSecondaryIndexes.by-user.sortKey.name")]).as_deref(),
            Some("by-user")
        );
        assert_eq!(
            index_to_remove(&desired, &[diff("globalSecondaryIndexes.by-user.readCapacity")]),
            None
        );
    }
}
