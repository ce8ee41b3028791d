//! Table: the portable state every cloud's table backend observes and converges.

use std::collections::{BTreeMap, BTreeSet};

use cloudkit_crds::common::Tags;
use cloudkit_crds::table::{BillingMode, KeyAttribute, Projection, StreamViewType, TableSpec};
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// How the table is paid for; capacities only with `Provisioned`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BillingState {
    pub mode: BillingMode,
    pub read_capacity: Option<i64>,
    pub write_capacity: Option<i64>,
}

/// One global secondary index.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IndexState {
    pub partition_key: KeyAttribute,
    pub sort_key: Option<KeyAttribute>,
    pub projection: Projection,
    pub read_capacity: Option<i64>,
    pub write_capacity: Option<i64>,
}

/// The settings of a table CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TableState {
    pub partition_key: KeyAttribute,
    pub sort_key: Option<KeyAttribute>,
    pub billing: BillingState,
    pub ttl_attribute: Option<String>,
    pub point_in_time_recovery: bool,
    pub stream_view_type: StreamViewType,
    pub deletion_protection: bool,
    /// By index name, so that the diff names the index that differs.
    pub global_secondary_indexes: BTreeMap<String, IndexState>,
    pub tags: Tags,
    /// GCP: the Bigtable column families. Absent on other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_families: Option<BTreeSet<String>>,
}

impl TableState {
    /// The state a manifest asks for.
    pub fn desired(spec: &TableSpec, _deps: &Dependencies) -> Result<Self, String> {
        let provisioned = spec.billing.mode == BillingMode::Provisioned;
        // Capacities mean nothing on demand; validation refuses them there.
        let capacity = |c: Option<i64>| c.filter(|_| provisioned);
        let aws = spec.aws.clone().unwrap_or_default();
        Ok(Self {
            partition_key: spec.partition_key.clone(),
            sort_key: spec.sort_key.clone(),
            billing: BillingState {
                mode: spec.billing.mode,
                read_capacity: capacity(spec.billing.read_capacity),
                write_capacity: capacity(spec.billing.write_capacity),
            },
            ttl_attribute: spec.ttl_attribute.clone(),
            point_in_time_recovery: aws.point_in_time_recovery,
            stream_view_type: aws.stream_view_type,
            deletion_protection: spec.deletion_protection,
            global_secondary_indexes: spec
                .global_secondary_indexes
                .iter()
                .map(|i| {
                    let state = IndexState {
                        partition_key: i.partition_key.clone(),
                        sort_key: i.sort_key.clone(),
                        projection: i.projection,
                        read_capacity: capacity(i.read_capacity),
                        write_capacity: capacity(i.write_capacity),
                    };
                    (i.name.clone(), state)
                })
                .collect(),
            tags: spec.tags.clone(),
            column_families: spec.gcp.as_ref().map(|g| g.column_families.iter().cloned().collect()),
        })
    }
}

pub type TableBackend = dyn ExternalResource<State = TableState>;

/// The table backend for the ProviderConfig's cloud.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    allow(unused_variables)
)]
pub async fn backend(ctx: &ProviderContext, clouds: &Clouds) -> Result<Box<TableBackend>, CloudError> {
    match ctx.cloud {
        #[cfg(feature = "aws")]
        cloudkit_crds::Cloud::Aws => Ok(Box::new(crate::aws::table::DynamoTable::new(&clouds.aws, ctx).await)),
        #[cfg(feature = "azure")]
        cloudkit_crds::Cloud::Azure => Ok(Box::new(crate::azure::table::StorageTable::new(&clouds.azure, ctx)?)),
        #[cfg(feature = "gcp")]
        cloudkit_crds::Cloud::Gcp => Ok(Box::new(crate::gcp::table::BigtableTable::new(&clouds.gcp, ctx)?)),
        // Unreachable only when every cloud has a backend for the kind and all are built.
        #[allow(unreachable_patterns)]
        cloud => Err(CloudError::Unsupported { kind: "Table", cloud }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_only_with_provisioned_billing() {
        let spec: TableSpec = serde_json::from_value(serde_json::json!({
            "partitionKey": {"name": "id", "type": "String"},
            "globalSecondaryIndexes": [{"name": "by-x", "partitionKey": {"name": "x", "type": "Number"}}]
        }))
        .expect("spec");
        let s = TableState::desired(&spec, &Dependencies::default()).expect("desired");
        assert_eq!(s.billing.mode, BillingMode::OnDemand);
        assert_eq!(s.billing.read_capacity, None);
        assert_eq!(s.global_secondary_indexes["by-x"].projection, Projection::All);
        assert_eq!(s.stream_view_type, StreamViewType::Disabled);
    }
}
