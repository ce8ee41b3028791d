//! `Table`: a key-value table (DynamoDB, Azure Table, Bigtable).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ManagedFields, Tags};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AttributeType {
    String,
    Number,
    Binary,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeyAttribute {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: AttributeType,
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

/// Settings only Bigtable has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpTable {
    /// Bigtable instance holding the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default)]
    pub column_families: Vec<String>,
}

managed_kind! {
    kind = "Table",
    shortname = "cktable",
    doc = "A key-value table: DynamoDB on AWS, Azure Table storage, Bigtable on GCP.",
    pub struct TableSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        pub partition_key: KeyAttribute,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sort_key: Option<KeyAttribute>,
        #[serde(default)]
        pub billing: Billing,
        /// Attribute holding each item's expiry time (epoch seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ttl_attribute: Option<String>,
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
