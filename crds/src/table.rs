//! `Table`: a key-value table (DynamoDB, Azure Table, Bigtable).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ManagedFields, Tags};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum AttributeType {
    String,
    Number,
    Binary,
}

/// A key attribute: its name and the type of its values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub struct KeyAttribute {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: AttributeType,
}

/// Which attributes an index copies from the table.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Projection {
    /// Every attribute.
    #[default]
    All,
    /// Only the table's and the index's keys.
    KeysOnly,
}

/// A secondary index with its own keys, queryable like the table. Indexes are added and
/// removed in place, one at a time (the cloud builds each before the next).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalSecondaryIndex {
    pub name: String,
    pub partition_key: KeyAttribute,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<KeyAttribute>,
    #[serde(default)]
    pub projection: Projection,
    /// Required when the table's billing is `Provisioned`; not allowed with `OnDemand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_capacity: Option<i64>,
    /// Required when the table's billing is `Provisioned`; not allowed with `OnDemand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_capacity: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BillingMode {
    /// Pay per request.
    #[default]
    OnDemand,
    /// Fixed read and write capacity.
    Provisioned,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Billing {
    #[serde(default)]
    pub mode: BillingMode,
    /// Required with `Provisioned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_capacity: Option<i64>,
    /// Required with `Provisioned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_capacity: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamViewType {
    /// No stream.
    #[default]
    Disabled,
    KeysOnly,
    NewImage,
    OldImage,
    NewAndOldImages,
}

/// Settings only DynamoDB has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsTable {
    #[serde(default)]
    pub point_in_time_recovery: bool,
    /// What a DynamoDB stream records of each change.
    #[serde(default)]
    pub stream_view_type: StreamViewType,
}

/// With both rules set, how they combine (default `Union`; only with both).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum GcMode {
    /// A cell goes when either rule says so (too old, or beyond the newest `maxVersions`).
    #[default]
    Union,
    /// A cell goes only when both rules say so (too old and beyond the newest `maxVersions`).
    Intersection,
}

/// When Bigtable may delete old cells of a column family (its GC rule). Cells are deleted
/// in the background, some time after they qualify.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcPolicy {
    /// Keep at most this many versions of each cell (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<i32>,
    /// Delete cells older than this many seconds (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
    /// With both rules: `Union` (default) or `Intersection`. Only with both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<GcMode>,
}

/// A Bigtable column family.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnFamily {
    /// 1 to 64 letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Omit to keep every cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_policy: Option<GcPolicy>,
}

/// Settings only Bigtable has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpTable {
    /// Bigtable instance holding the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The table's column families, each with its garbage-collection policy. Added,
    /// changed and dropped in place (dropping one deletes its data).
    #[serde(default)]
    pub column_families: Vec<ColumnFamily>,
}

managed_kind! {
    kind = "Table",
    shortname = "cktable",
    doc = "A key-value table: DynamoDB on AWS, Azure Table storage, Bigtable on GCP.",
    pub struct TableSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        /// The key every item is found by. Cannot change once the table exists: create a new
        /// Table and move the data.
        pub partition_key: KeyAttribute,
        /// Orders items that share a partition key. Cannot change once the table exists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sort_key: Option<KeyAttribute>,
        #[serde(default)]
        pub billing: Billing,
        /// Attribute holding each item's expiry time (epoch seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ttl_attribute: Option<String>,
        #[serde(default)]
        pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
        /// Refuse to delete the table, whoever asks (the cloud console too). CloudKit's own
        /// delete then fails until this is set back to false.
        #[serde(default)]
        pub deletion_protection: bool,
        #[serde(default)]
        pub tags: Tags,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsTable>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gcp: Option<GcpTable>,
    }
}

impl TableSpec {
    /// A table reads no other object's outputs.
    pub fn references(&self) -> Vec<crate::common::Reference> {
        Vec::new()
    }
}
