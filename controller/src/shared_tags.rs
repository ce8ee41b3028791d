//! Tags are shared: clouds add their own (AWS Backup, tag policies, Azure Policy, GKE) and
//! other tools theirs. CloudKit manages only the keys it set, recorded in an annotation so
//! that a key removed from the manifest is removed from the cloud, and leaves every other key
//! as it finds it: never stripped, never reported as drift.

use std::collections::{BTreeMap, BTreeSet};

use cloudkit_crds::reason::Reason;
use cloudkit_reconcilers::Tagged;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::Failure;
use crate::kinds::ManagedKind;

/// The tag keys CloudKit last applied to the resource, as a JSON array.
pub const ANNOTATION: &str = "cloudkit.dev/managed-tags";

/// The keys recorded as applied, if the object has the record.
pub fn applied(annotations: &BTreeMap<String, String>) -> Option<BTreeSet<String>> {
    annotations
        .get(ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
}

/// Makes `desired` keep the tags CloudKit does not manage exactly as `observed` has them:
/// the diff then never sees them, and clouds whose tag call replaces the whole set (S3,
/// Azure metadata) write them back unchanged. A key is managed when the manifest asks for it
/// or CloudKit applied it before (so that removing it from the manifest removes it).
pub fn keep_foreign<S: Tagged>(desired: &mut S, observed: &S, applied: Option<&BTreeSet<String>>) {
    let foreign: Vec<(String, String)> = observed
        .tags()
        .iter()
        .filter(|(key, _)| !desired.tags().contains_key(*key) && applied.is_none_or(|a| !a.contains(*key)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    desired.tags_mut().extend(foreign);
}

/// The keys to record once the desired tags are applied: those the manifest (and the owner
/// tag) asks for, without the foreign ones `keep_foreign` added.
pub fn managed_keys(requested: &BTreeSet<String>) -> String {
    serde_json::to_string(requested).unwrap_or_else(|_| "[]".to_owned())
}

/// Records the managed keys when they differ from the record.
pub async fn record<K: ManagedKind>(api: &Api<K>, obj: &K, requested: &BTreeSet<String>) -> Result<(), Failure> {
    if applied(obj.annotations()).as_ref() == Some(requested) {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {ANNOTATION: managed_keys(requested)}}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("recording the tag keys CloudKit manages: {e}"),
            after: None,
        })
}

#[cfg(test)]
mod tests {
    use cloudkit_crds::common::Tags;

    use super::*;

    struct State(Tags);

    impl Tagged for State {
        fn tags(&self) -> &Tags {
            &self.0
        }
        fn tags_mut(&mut self) -> &mut Tags {
            &mut self.0
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> State {
        State(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn keys(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn foreign_keys_are_kept_as_found_and_managed_ones_follow_the_manifest() {
        let observed = tags(&[
            ("team", "old"),
            ("aws:backup", "daily"),
            ("gone", "x"),
            ("Owner", "ops"),
        ]);
        let mut desired = tags(&[("team", "new")]);
        keep_foreign(&mut desired, &observed, Some(&keys(&["team", "gone"])));
        // `gone` was ours and left the manifest: not kept, so the diff removes it.
        assert_eq!(
            desired.0,
            tags(&[("team", "new"), ("aws:backup", "daily"), ("Owner", "ops")]).0
        );
    }

    #[test]
    fn without_a_record_only_the_manifests_keys_are_managed() {
        let observed = tags(&[("team", "old"), ("extra", "x")]);
        let mut desired = tags(&[("team", "new")]);
        keep_foreign(&mut desired, &observed, None);
        assert_eq!(desired.0, tags(&[("team", "new"), ("extra", "x")]).0);
    }

    #[test]
    fn the_record_reads_back_what_was_written() {
        let written = managed_keys(&keys(&["a", "cloudkit.dev/owner"]));
        let annotations = BTreeMap::from([(ANNOTATION.to_owned(), written)]);
        assert_eq!(applied(&annotations), Some(keys(&["a", "cloudkit.dev/owner"])));
        assert_eq!(applied(&BTreeMap::new()), None);
    }
}
