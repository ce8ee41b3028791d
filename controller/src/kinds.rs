//! What the generic loop needs per kind: validation, desired state and the backend.

use std::fmt::Debug;

use cloudkit_crds::validation::{self, FieldError};
use cloudkit_crds::{Bucket, Cloud, Function, Managed, Queue, Table, Topic};
use cloudkit_reconcilers::bucket::BucketState;
use cloudkit_reconcilers::{CloudError, Clouds, ExternalResource, ProviderContext};
use futures::future::BoxFuture;
use serde::Serialize;

pub type Backend<S> = Box<dyn ExternalResource<State = S>>;

pub trait ManagedKind: Managed {
    type State: Serialize + Clone + Debug + Send + Sync + 'static;

    /// Problems with the spec for this cloud; `name_field` says where `name` came from.
    fn validate(&self, name: &str, name_field: &str, cloud: Cloud) -> Vec<FieldError>;
    /// The state the manifest asks for, in the backend's terms.
    fn desired(&self) -> Self::State;
    fn backend<'a>(
        ctx: &'a ProviderContext,
        clouds: &'a Clouds,
    ) -> BoxFuture<'a, Result<Backend<Self::State>, CloudError>>;
}

impl ManagedKind for Bucket {
    type State = BucketState;

    fn validate(&self, name: &str, name_field: &str, cloud: Cloud) -> Vec<FieldError> {
        validation::bucket(name, name_field, &self.spec, cloud)
    }

    fn desired(&self) -> BucketState {
        BucketState::desired(&self.spec)
    }

    fn backend<'a>(
        ctx: &'a ProviderContext,
        clouds: &'a Clouds,
    ) -> BoxFuture<'a, Result<Backend<BucketState>, CloudError>> {
        Box::pin(cloudkit_reconcilers::bucket::backend(ctx, clouds))
    }
}

/// Kinds whose backends have not landed yet. They run through the same loop so that a
/// user's manifest is answered with `Stalled`/`UnsupportedForProvider` (and no cloud call)
/// rather than silently ignored.
macro_rules! no_backend_yet {
    ($($kind:ident),*) => {$(
        impl ManagedKind for $kind {
            type State = ();

            fn validate(&self, _name: &str, _name_field: &str, _cloud: Cloud) -> Vec<FieldError> {
                Vec::new()
            }

            fn desired(&self) {}

            fn backend<'a>(ctx: &'a ProviderContext, _clouds: &'a Clouds) -> BoxFuture<'a, Result<Backend<()>, CloudError>> {
                Box::pin(std::future::ready(Err(CloudError::Unsupported { kind: stringify!($kind), cloud: ctx.cloud })))
            }
        }
    )*};
}

no_backend_yet!(Table, Queue, Topic, Function);
