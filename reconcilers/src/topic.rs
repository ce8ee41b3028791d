//! Topic: placeholder until the Topic backend lands; the kind answers UnsupportedForProvider.

use cloudkit_crds::topic::TopicSpec;
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// The settings of a topic CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct TopicState {}

impl TopicState {
    /// The state a manifest asks for.
    pub fn desired(_spec: &TopicSpec, _deps: &Dependencies) -> Result<Self, String> {
        Ok(Self {})
    }
}

pub type TopicBackend = dyn ExternalResource<State = TopicState>;

/// The topic backend for the ProviderConfig's cloud.
pub async fn backend(ctx: &ProviderContext, _clouds: &Clouds) -> Result<Box<TopicBackend>, CloudError> {
    Err(CloudError::Unsupported {
        kind: "Topic",
        cloud: ctx.cloud,
    })
}
