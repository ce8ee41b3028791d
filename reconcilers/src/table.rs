//! Table: placeholder until the Table backend lands; the kind answers UnsupportedForProvider.

use cloudkit_crds::table::TableSpec;
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// The settings of a table CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct TableState {}

impl TableState {
    /// The state a manifest asks for.
    pub fn desired(_spec: &TableSpec, _deps: &Dependencies) -> Result<Self, String> {
        Ok(Self {})
    }
}

pub type TableBackend = dyn ExternalResource<State = TableState>;

/// The table backend for the ProviderConfig's cloud.
pub async fn backend(ctx: &ProviderContext, _clouds: &Clouds) -> Result<Box<TableBackend>, CloudError> {
    Err(CloudError::Unsupported {
        kind: "Table",
        cloud: ctx.cloud,
    })
}
