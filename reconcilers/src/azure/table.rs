//! Table storage tables, through the Table REST API on the azure_core pipeline (the same
//! transport, timeouts and signing as the official blob and queue clients): there is no
//! official Table crate, and the unofficial `azure_data_tables` brings a second, older
//! azure_core and HTTP stack (see docs/azure.md).
//!
//! A table is only a name: Azure keeps no key schema (every entity has the string properties
//! PartitionKey and RowKey), no settings and no metadata. Validation refuses the Table fields
//! Azure cannot honour; the key names are the application's convention and are not compared.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::{Context, Method, Request, RequestContent, Url};
use cloudkit_crds::table::{AttributeType, BillingMode, KeyAttribute, StreamViewType};
use cloudkit_drift::FieldDiff;

use super::{Account, Clients, Service};
use crate::table::{BillingState, TableState};
use cloudkit_crds::common::Tags;

use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

/// A Table service version every current account and Azurite serve.
const TABLE_VERSION: &str = "2019-02-02";

pub struct StorageTable {
    account: Arc<Account>,
}

impl StorageTable {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        Ok(Self {
            account: clients.account(ctx)?,
        })
    }

    /// `<endpoint>/<segment>`, e.g. `Tables('orders')`.
    fn url(&self, segment: &str) -> Result<Url, CloudError> {
        self.account.url(Service::Table, segment)
    }

    fn request(&self, url: Url, method: Method) -> Request {
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json;odata=nometadata");
        request.insert_header("x-ms-version", TABLE_VERSION);
        request.insert_header("dataserviceversion", "3.0");
        request
    }

    async fn send(&self, operation: &str, name: &str, mut request: Request) -> Result<(), super::Failed> {
        let pipeline = self.account.pipeline(Service::Table);
        let ctx = Context::new();
        self.account
            .call(Service::Table, operation, name, pipeline.send(&ctx, &mut request, None))
            .await
            .map(|_| ())
    }

    fn outputs(&self, name: &str) -> Outputs {
        Outputs {
            url: self.url(name).ok().map(|u| u.to_string()),
            // `arn` is the cloud identifier in every status (an ARM resource ID here, when the
            // ProviderConfig names subscription and resource group); `id` falls back to the name.
            arn: self
                .account
                .resource_id(&format!("tableServices/default/tables/{name}")),
            id: Some(
                self.account
                    .resource_id(&format!("tableServices/default/tables/{name}"))
                    .unwrap_or_else(|| name.to_owned()),
            ),
            ..Default::default()
        }
    }
}

/// Table names are alphanumeric (validated before any call), so quoting needs no escaping.
fn entity(name: &str) -> String {
    format!("Tables('{name}')")
}

#[async_trait]
impl ExternalResource for StorageTable {
    type State = TableState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<TableState>>, CloudError> {
        let request = self.request(self.url(&entity(name))?, Method::Get);
        match self.send("GetTable", name, request).await {
            Ok(()) => {}
            Err(f) if f.status == Some(404) => return Ok(None),
            Err(f) => return Err(f.into()),
        }
        let string_key = |name: &str| KeyAttribute {
            name: name.to_owned(),
            type_: AttributeType::String,
        };
        // Keys are not stored by Azure (see `unobserved`); the rest is what every table is.
        let state = TableState {
            partition_key: string_key("PartitionKey"),
            sort_key: Some(string_key("RowKey")),
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
            column_families: None,
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, _desired: &TableState) -> Result<(), CloudError> {
        let mut request = self.request(self.url("Tables")?, Method::Post);
        request.insert_header("content-type", "application/json");
        request.insert_header("prefer", "return-no-content");
        let body = serde_json::json!({ "TableName": name }).to_string();
        request.set_body(RequestContent::<(), azure_core::http::NoFormat>::from(
            body.into_bytes(),
        ));
        match self.send("CreateTable", name, request).await {
            Ok(()) => Ok(()),
            // A retry after a lost response: names are per account, so it is ours. A table
            // still being deleted answers 409 TableBeingDeleted, retried as transient.
            Err(f) if f.status == Some(409) && f.code.as_deref() != Some("TableBeingDeleted") => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, _name: &str, _desired: &TableState, _diffs: &[FieldDiff]) -> Result<(), CloudError> {
        // A table has nothing to change: validation refuses every setting Azure lacks, and
        // the keys are not compared.
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let request = self.request(self.url(&entity(name))?, Method::Delete);
        match self.send("DeleteTable", name, request).await {
            Ok(()) => Ok(()),
            Err(f) if f.status == Some(404) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    /// A table keeps no key schema and no metadata: the owner tag the loop adds cannot be
    /// stored either, so a table is known as ours by the external-name record alone.
    fn unobserved(&self) -> &'static [&'static str] {
        &["partitionKey", "sortKey", "tags"]
    }
}
