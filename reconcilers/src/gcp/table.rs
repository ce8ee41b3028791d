//! Bigtable tables: the column families, added and dropped in place. The instance is the
//! object's `spec.gcp.instance` (placed into the context by the controller). Bigtable keeps
//! one row key of bytes and no key schema: `partitionKey` and `sortKey` name how the row key
//! is built, by convention, and are not stored (`unobserved`). Billing, TTL, indexes,
//! deletion protection and tags are refused for GCP by validation, so this backend reports
//! them as unset.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use cloudkit_crds::common::Tags;
use cloudkit_crds::reason::Reason;
use cloudkit_crds::table::{AttributeType, BillingMode, KeyAttribute, StreamViewType};
use cloudkit_drift::{FieldDiff, touches};
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::modify_column_families_request::{
    Modification, modification::Mod,
};
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::{
    ColumnFamily, CreateTableRequest, DeleteTableRequest, GetTableRequest, ModifyColumnFamiliesRequest, Table,
    table::View,
};
use tonic::Code;

use super::{Clients, Project};
use crate::table::{BillingState, TableState};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct BigtableTable {
    project: Arc<Project>,
    /// `projects/<p>/instances/<instance>`.
    instance: String,
}

impl BigtableTable {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        let project = clients.project(ctx)?;
        // Validation requires spec.gcp.instance on GCP; checked again so no call goes out
        // to an instance named by nothing.
        let instance = ctx.gcp_instance.clone().ok_or_else(|| CloudError::Rejected {
            reason: Reason::InvalidSpec,
            message: "a Table on GCP needs spec.gcp.instance: the Bigtable instance holding it".into(),
        })?;
        Ok(Self {
            instance: project.path("instances", &instance),
            project,
        })
    }

    fn path(&self, name: &str) -> String {
        format!("{}/tables/{name}", self.instance)
    }

    fn outputs(&self, name: &str) -> Outputs {
        Outputs {
            // `arn` is the cloud identifier in every status: the table's full name here.
            arn: Some(self.path(name)),
            id: Some(name.to_owned()),
            ..Default::default()
        }
    }

    async fn modify(&self, name: &str, modifications: Vec<Modification>) -> Result<(), CloudError> {
        if modifications.is_empty() {
            return Ok(());
        }
        let admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(ModifyColumnFamiliesRequest {
                name: self.path(name),
                modifications,
                ignore_warnings: false,
            })
            .await?;
        let mut client = admin;
        self.project
            .bigtable_call("ModifyColumnFamilies", name, client.modify_column_families(request))
            .await?;
        Ok(())
    }
}

fn families(desired: &TableState) -> BTreeSet<String> {
    desired.column_families.clone().unwrap_or_default()
}

/// The families a diff says the table has now (its observed side).
fn observed_families(diffs: &[FieldDiff]) -> BTreeSet<String> {
    diffs
        .iter()
        .filter(|d| d.path == "columnFamilies")
        .filter_map(|d| d.observed.as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[async_trait]
impl ExternalResource for BigtableTable {
    type State = TableState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<TableState>>, CloudError> {
        let mut admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(GetTableRequest {
                name: self.path(name),
                view: View::SchemaView as i32,
            })
            .await?;
        let table = match self
            .project
            .bigtable_call("GetTable", name, admin.get_table(request))
            .await
        {
            Ok(table) => table,
            Err(f) if f.code == Some(Code::NotFound) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let key = |name: &str| KeyAttribute {
            name: name.to_owned(),
            type_: AttributeType::Binary,
        };
        // Keys and tags are not stored (see `unobserved`); the rest is what every table is.
        let state = TableState {
            partition_key: key("rowKey"),
            sort_key: None,
            billing: BillingState {
                mode: BillingMode::OnDemand,
                read_capacity: None,
                write_capacity: None,
            },
            ttl_attribute: None,
            point_in_time_recovery: false,
            stream_view_type: StreamViewType::Disabled,
            deletion_protection: false,
            global_secondary_indexes: Default::default(),
            tags: Tags::new(),
            column_families: Some(table.column_families.into_keys().collect()),
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, desired: &TableState) -> Result<(), CloudError> {
        let mut admin = self.project.bigtable().await?;
        let table = Table {
            column_families: families(desired)
                .into_iter()
                .map(|f| (f, ColumnFamily::default()))
                .collect(),
            ..Default::default()
        };
        let request = self
            .project
            .bigtable_request(CreateTableRequest {
                parent: self.instance.clone(),
                table_id: name.to_owned(),
                table: Some(table),
                initial_splits: Vec::new(),
            })
            .await?;
        match self
            .project
            .bigtable_call("CreateTable", name, admin.create_table(request))
            .await
        {
            Ok(_) => Ok(()),
            // A retry after a lost answer: the table is known as this object's by its
            // external-name record alone (Bigtable tables carry no labels).
            Err(f) if f.code == Some(Code::AlreadyExists) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &TableState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        if !touches(diffs, "columnFamilies") {
            return Ok(());
        }
        let (want, have) = (families(desired), observed_families(diffs));
        // Dropping a family deletes its data: only families CloudKit was asked to remove
        // (listed before, or found and not listed) go, as the manifest says.
        let modifications = want
            .difference(&have)
            .map(|id| Modification {
                id: id.clone(),
                update_mask: None,
                r#mod: Some(Mod::Create(ColumnFamily::default())),
            })
            .chain(have.difference(&want).map(|id| Modification {
                id: id.clone(),
                update_mask: None,
                r#mod: Some(Mod::Drop(true)),
            }))
            .collect();
        self.modify(name, modifications).await
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let mut admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(DeleteTableRequest { name: self.path(name) })
            .await?;
        match self
            .project
            .bigtable_call("DeleteTable", name, admin.delete_table(request))
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.code == Some(Code::NotFound) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    /// Bigtable stores no key schema and tables have no labels.
    fn unobserved(&self) -> &'static [&'static str] {
        &["partitionKey", "sortKey", "tags"]
    }
}
