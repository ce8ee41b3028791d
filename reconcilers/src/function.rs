//! Function: placeholder until the Function backend lands; the kind answers UnsupportedForProvider.

use cloudkit_crds::function::FunctionSpec;
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// The settings of a function CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct FunctionState {}

impl FunctionState {
    /// The state a manifest asks for.
    pub fn desired(_spec: &FunctionSpec, _deps: &Dependencies) -> Result<Self, String> {
        Ok(Self {})
    }
}

pub type FunctionBackend = dyn ExternalResource<State = FunctionState>;

/// The function backend for the ProviderConfig's cloud.
pub async fn backend(ctx: &ProviderContext, _clouds: &Clouds) -> Result<Box<FunctionBackend>, CloudError> {
    Err(CloudError::Unsupported {
        kind: "Function",
        cloud: ctx.cloud,
    })
}
