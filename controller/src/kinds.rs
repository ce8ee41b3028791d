//! What the generic loop needs per kind: its validation, its desired state (from the spec
//! and the outputs of what it references) and the backend for a cloud. Each kind is one line
//! of `kind_glue!`; the code lives in `cloudkit_crds::validation` and `cloudkit_reconcilers`.

use std::fmt::Debug;

use cloudkit_crds::common::Kind;
use cloudkit_crds::validation::{self, FieldError};
use cloudkit_crds::{Bucket, Cloud, Function, Managed, Queue, Table, Topic};
use cloudkit_reconcilers::{
    CloudError, Clouds, Dependencies, ExternalResource, Normalize, ProviderContext, SharedMaps, Tagged,
};
use futures::future::BoxFuture;
use kube::ResourceExt;
use serde::Serialize;

use crate::references;

pub type Backend<S> = Box<dyn ExternalResource<State = S>>;

pub trait ManagedKind: Managed {
    type State: Serialize + Clone + Debug + Send + Sync + Tagged + Normalize + SharedMaps + 'static;
    const KIND: Kind;

    /// Problems with the spec for this cloud; `name_field` says where `name` came from.
    fn validate(&self, name: &str, name_field: &str, cloud: Cloud) -> Vec<FieldError>;
    /// Portable fields the spec sets that `cloud` cannot honour (reported as
    /// `UnsupportedForProvider`, not `InvalidSpec`).
    fn unsupported(&self, cloud: Cloud) -> Vec<FieldError>;
    /// The state the manifest asks for, in the backend's terms; `Err` names an output a
    /// dependency has not published yet.
    fn desired(&self, deps: &Dependencies) -> Result<Self::State, String>;
    fn backend<'a>(
        ctx: &'a ProviderContext,
        clouds: &'a Clouds,
    ) -> BoxFuture<'a, Result<Backend<Self::State>, CloudError>>;

    /// Who manages what this object makes, as its owner tag records it:
    /// `<cluster>/<namespace>/<kind>/<name>`.
    fn owner(&self, cluster: &str) -> String {
        format!(
            "{cluster}/{}/{}/{}",
            self.namespace().unwrap_or_default(),
            Self::KIND,
            self.name_any()
        )
    }

    /// The ProviderConfig's context placed where this object's resource lives inside it (a
    /// Bigtable table's instance), so that the backend finds it and `status.provider`
    /// records it: moving it is a move, as changing the project is.
    fn placed(&self, ctx: &ProviderContext) -> ProviderContext {
        let mut placed = ctx.clone();
        placed.gcp_instance = self.gcp_instance();
        placed
    }

    /// Where the cloud name comes from, for messages about it.
    fn name_field(&self) -> &'static str {
        if self.managed().external_name.is_some() {
            "spec.externalName"
        } else {
            "metadata.name"
        }
    }

    /// Every problem with the spec on `cloud`, found without calling any cloud: what the
    /// controller checks at each reconcile and `cloudkit plan` checks offline.
    fn spec_errors(&self, cloud: Cloud) -> Vec<FieldError> {
        let config = &self.managed().provider_config_ref.name;
        let mut errors = validation::cloud_blocks(&self.cloud_blocks(), cloud, config);
        errors.extend(validation::connection_secret(
            self.managed()
                .write_connection_secret_to_ref
                .as_ref()
                .map(|r| r.name.as_str()),
        ));
        errors.extend(self.validate(&self.desired_external_name(), self.name_field(), cloud));
        errors.extend(references::self_references(
            Self::KIND,
            &self.name_any(),
            &self.references(),
        ));
        errors
    }
}

macro_rules! kind_glue {
    ($($kind:ident => $module:ident :: $state:ident),* $(,)?) => {$(
        impl ManagedKind for $kind {
            type State = cloudkit_reconcilers::$module::$state;
            const KIND: Kind = Kind::$kind;

            fn validate(&self, name: &str, name_field: &str, cloud: Cloud) -> Vec<FieldError> {
                validation::$module(name, name_field, &self.spec, cloud)
            }

            fn unsupported(&self, cloud: Cloud) -> Vec<FieldError> {
                validation::unsupported::$module(&self.spec, cloud)
            }

            fn desired(&self, deps: &Dependencies) -> Result<Self::State, String> {
                cloudkit_reconcilers::$module::$state::desired(&self.spec, deps)
            }

            fn backend<'a>(
                ctx: &'a ProviderContext,
                clouds: &'a Clouds,
            ) -> BoxFuture<'a, Result<Backend<Self::State>, CloudError>> {
                Box::pin(cloudkit_reconcilers::$module::backend(ctx, clouds))
            }
        }
    )*};
}

kind_glue! {
    Bucket => bucket::BucketState,
    Table => table::TableState,
    Queue => queue::QueueState,
    Topic => topic::TopicState,
    Function => function::FunctionState,
}
