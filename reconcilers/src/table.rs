//! Table: the portable state every cloud's table backend observes and converges.

use std::collections::BTreeMap;

use cloudkit_crds::common::Tags;
use cloudkit_crds::table::{BillingMode, GcMode, GcPolicy, KeyAttribute, Projection, StreamViewType, TableSpec};
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
    /// GCP: the Bigtable column families by name, so the diff names the family (and the
    /// GC rule field) that differs. Absent on other clouds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_families: Option<BTreeMap<String, FamilyState>>,
}

/// One Bigtable column family.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FamilyState {
    /// `None`: no GC rule, every cell is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc_policy: Option<GcPolicyState>,
}

/// A column family's GC rule in the manifest's terms. `mode` is set only when both rules
/// are (one rule alone reads the same in a union or an intersection), so equal rules are
/// equal states whatever spelling either side used.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GcPolicyState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<GcMode>,
    /// A rule found in the cloud that the manifest cannot express (nested rules, a
    /// sub-second age), written out; never in a desired state, so it is always a
    /// difference and the rule is replaced by the manifest's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

impl GcPolicyState {
    /// The state a manifest's policy asks for.
    pub fn desired(policy: &GcPolicy) -> Self {
        let both = policy.max_versions.is_some() && policy.max_age_seconds.is_some();
        Self {
            max_versions: policy.max_versions,
            max_age_seconds: policy.max_age_seconds,
            mode: both.then(|| policy.mode.unwrap_or_default()),
            other: None,
        }
    }
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
            column_families: spec.gcp.as_ref().map(|g| {
                g.column_families
                    .iter()
                    .map(|f| {
                        let state = FamilyState {
                            gc_policy: f.gc_policy.as_ref().map(GcPolicyState::desired),
                        };
                        (f.name.clone(), state)
                    })
                    .collect()
            }),
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
