//! The finalizer that keeps an object until its cloud resource is deleted.
//!
//! kube-runtime's `finalizer()` adds it in a write of its own and ends the reconcile there,
//! so every new object cost one write and one reconcile more than it needs. Here it is
//! added only once something in the cloud may be this object's: a new object gets it in the
//! same write that records its external name before the create call
//! (`identity::record_before_create`); any other path that may act on the cloud calls
//! `ensure` first. An object that never gets that far (invalid, or a kind its cloud cannot
//! serve) holds none and stays deletable without the controller.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::error::{Error, Failure};
use crate::identity;
use crate::kinds::ManagedKind;

pub const FINALIZER: &str = "cloudkit.dev/finalizer";

pub fn holds<K: ResourceExt>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// The object's finalizers with ours added, for a merge patch that carries the
/// resourceVersion they were read at (a merge patch replaces the whole list).
pub fn with_ours<K: ResourceExt>(obj: &K) -> Value {
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    json!(finalizers)
}

/// Adds the finalizer unless the object holds it, guarded by the resourceVersion it was
/// read at, so a finalizer another controller added meanwhile is not lost.
pub async fn ensure<K: ManagedKind>(api: &Api<K>, obj: &K) -> Result<(), Failure> {
    if holds(obj) {
        return Ok(());
    }
    identity::patch_as_read(
        api,
        obj,
        json!({ "finalizers": with_ours(obj) }),
        &format!("adding the finalizer {FINALIZER}"),
    )
    .await
}

/// Removes the finalizer once cleanup is done. A JSON patch that tests the entry it removes,
/// as kube-runtime does: other writes to the object (status, other controllers' finalizers
/// elsewhere in the list) neither block it nor are undone by it.
pub async fn release<K: ManagedKind>(api: &Api<K>, obj: &K) -> Result<(), Error> {
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))?;
    match api
        .patch::<K>(&obj.name_any(), &PatchParams::default(), &Patch::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: the object went with the last finalizer.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn ours_is_added_after_the_others() {
        // Any object will do: only its metadata is read.
        let mut obj = ConfigMap::default();
        assert!(!holds(&obj));
        obj.metadata.finalizers = Some(vec!["other.io/keep".into()]);
        assert_eq!(with_ours(&obj), json!(["other.io/keep", FINALIZER]));
        obj.metadata.finalizers = Some(vec!["other.io/keep".into(), FINALIZER.into()]);
        assert!(holds(&obj));
    }
}
