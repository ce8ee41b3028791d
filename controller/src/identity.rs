//! Which cloud resource is this object's. The name is kept in annotations, where it
//! survives what status does not: backup and restore, a GitOps rebuild, a status write made
//! from a stale cache. As crossplane-runtime does with `crossplane.io/external-name` and its
//! create-pending/succeeded/failed annotations, the name is written before the create call,
//! guarded by the resourceVersion the decision was made on, so a create is never decided on
//! a stale copy and an answer lost to a crash still leaves the name behind.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

use cloudkit_crds::DeletionPolicy;
use cloudkit_crds::reason::Reason;

use crate::error::Failure;
use crate::finalizer;
use crate::kinds::ManagedKind;

pub const EXTERNAL_NAME: &str = "cloudkit.dev/external-name";
pub const CREATE_PENDING: &str = "cloudkit.dev/create-pending";
pub const CREATE_SUCCEEDED: &str = "cloudkit.dev/create-succeeded";
pub const CREATE_FAILED: &str = "cloudkit.dev/create-failed";
/// When this object took over a resource it did not create (`spec.externalName`).
pub const ADOPTED: &str = "cloudkit.dev/adopted";

/// The name of the cloud resource this object made or adopted, if it has one: the
/// annotation, else `status.externalName` (objects made before the annotation existed).
pub fn recorded<K: ManagedKind>(obj: &K) -> Option<String> {
    obj.annotations()
        .get(EXTERNAL_NAME)
        .cloned()
        .or_else(|| obj.managed_status().and_then(|s| s.external_name.clone()))
}

/// Records `name` as this object's before the create call. The patch carries the
/// resourceVersion the caller read: if the object has changed since (a cache behind the
/// API, another writer), nothing is written and the caller decides again on a fresh copy.
///
/// `also`: more annotations for the same write (the managed keys, see shared_maps). The
/// finalizer goes in the same write too: a new object costs one write for all three.
pub async fn record_before_create<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    name: &str,
    now: &str,
    also: serde_json::Map<String, Value>,
) -> Result<(), Failure> {
    let mut annotations = serde_json::Map::new();
    annotations.extend(also);
    annotations.insert(EXTERNAL_NAME.to_owned(), json!(name));
    annotations.insert(CREATE_PENDING.to_owned(), json!(now));
    annotations.insert(CREATE_FAILED.to_owned(), Value::Null);
    let mut metadata = json!({ "annotations": annotations });
    if !finalizer::holds(obj) {
        metadata["finalizers"] = finalizer::with_ours(obj);
    }
    patch_as_read(api, obj, metadata, "recording the external name before creating").await
}

/// Merge-patches `metadata` onto the object only if it is still at the resourceVersion it
/// was read at (a merge patch replaces lists whole, and a decision made on a stale copy
/// must be made again). A conflict is retried soon, on a fresh copy.
pub async fn patch_as_read<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    mut metadata: Value,
    doing: &str,
) -> Result<(), Failure> {
    metadata["resourceVersion"] = json!(obj.resource_version());
    let patch = json!({ "metadata": metadata });
    match api
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("{doing}: the object changed meanwhile; deciding again"),
            after: Some(Duration::from_secs(1)),
        }),
        Err(e) => Err(Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("{doing}: {e}"),
            after: None,
        }),
    }
}

/// Whether the resource was known to exist: its create answered, or it was adopted.
pub fn existed<K: ManagedKind>(obj: &K) -> bool {
    obj.annotations().contains_key(CREATE_SUCCEEDED) || obj.annotations().contains_key(ADOPTED)
}

/// What deleting the object does to its resource: the spec's `deletionPolicy`, else keep
/// what was adopted (someone else made it, and may still need it) and delete what was made.
pub fn deletion_policy(
    spec: Option<DeletionPolicy>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> DeletionPolicy {
    spec.unwrap_or(if annotations.contains_key(ADOPTED) {
        DeletionPolicy::Retain
    } else {
        DeletionPolicy::Delete
    })
}

/// Records that `name` was taken over rather than made, which makes `Retain` its default.
pub async fn adopted<K: ManagedKind>(api: &Api<K>, obj: &K, name: &str, now: &str) -> Result<(), Failure> {
    annotate(api, obj, json!({EXTERNAL_NAME: name, ADOPTED: now})).await
}

/// Writes the name of a resource this object already manages (adopted, or made before the
/// annotation existed) where it survives a lost status.
pub async fn remember<K: ManagedKind>(api: &Api<K>, obj: &K, name: &str) -> Result<(), Failure> {
    annotate(api, obj, json!({EXTERNAL_NAME: name})).await
}

/// The create call answered: the resource exists.
pub async fn created<K: ManagedKind>(api: &Api<K>, obj: &K, now: &str) -> Result<(), Failure> {
    annotate(api, obj, json!({CREATE_SUCCEEDED: now, CREATE_PENDING: Value::Null})).await
}

/// The cloud refused the create: nothing was made, so the name is not ours to keep (a
/// delete must not touch a namesake), and the user may pick another.
pub async fn refused<K: ManagedKind>(api: &Api<K>, obj: &K, now: &str) -> Result<(), Failure> {
    annotate(
        api,
        obj,
        json!({EXTERNAL_NAME: Value::Null, CREATE_PENDING: Value::Null, CREATE_FAILED: now}),
    )
    .await
}

async fn annotate<K: ManagedKind>(api: &Api<K>, obj: &K, annotations: Value) -> Result<(), Failure> {
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("recording the create's outcome in annotations: {e}"),
            after: None,
        })
}
