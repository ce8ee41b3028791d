//! Map-valued fields are shared: clouds add their own tags (AWS Backup, tag policies, Azure
//! Policy, GKE), tracing tools add environment variables to functions, other teams subscribe
//! their queues to a topic. CloudKit manages only the keys it set, recorded in an annotation
//! so that a key removed from the manifest is removed from the cloud, and leaves every other
//! key as it finds it: never removed, never reported as drift.

use std::collections::{BTreeMap, BTreeSet};

use cloudkit_crds::reason::Reason;
use cloudkit_reconcilers::{SharedKeys, SharedMaps};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::Failure;
use crate::kinds::ManagedKind;

/// The keys CloudKit last applied, per field: `{"tags": [...], "env": [...]}`.
pub const ANNOTATION: &str = "cloudkit.dev/managed-keys";
/// The record of tag keys only, as written before other maps were shared; read when the
/// new record is missing, and removed when it is written.
pub const LEGACY_ANNOTATION: &str = "cloudkit.dev/managed-tags";

/// The keys recorded as applied, if the object has a record.
pub fn applied(annotations: &BTreeMap<String, String>) -> Option<SharedKeys> {
    if let Some(text) = annotations.get(ANNOTATION) {
        return serde_json::from_str(text).ok();
    }
    let tags: BTreeSet<String> = serde_json::from_str(annotations.get(LEGACY_ANNOTATION)?).ok()?;
    Some(SharedKeys::from([("tags".to_owned(), tags)]))
}

/// Makes `desired` keep the entries CloudKit does not manage exactly as `observed` has them.
/// A key is managed when the manifest asks for it or CloudKit applied it before (so that
/// removing it from the manifest removes it); with no record for a field, only the
/// manifest's keys are.
pub fn keep_foreign<S: SharedMaps>(desired: &mut S, observed: &S, applied: Option<&SharedKeys>) {
    let requested = desired.shared_keys();
    let held = |keys: Option<&SharedKeys>, field: &str, key: &str| {
        keys.and_then(|k| k.get(field)).is_some_and(|k| k.contains(key))
    };
    desired.keep_foreign(observed, &|field, key| {
        !held(Some(&requested), field, key) && !held(applied, field, key)
    });
}

/// The annotations recording `requested` as the managed keys (the legacy record removed).
pub fn annotations(requested: &SharedKeys) -> serde_json::Map<String, serde_json::Value> {
    let text = serde_json::to_string(requested).unwrap_or_else(|_| "{}".to_owned());
    let mut map = serde_json::Map::new();
    map.insert(ANNOTATION.to_owned(), json!(text));
    map.insert(LEGACY_ANNOTATION.to_owned(), serde_json::Value::Null);
    map
}

/// Records the managed keys when they differ from the record.
pub async fn record<K: ManagedKind>(api: &Api<K>, obj: &K, requested: &SharedKeys) -> Result<(), Failure> {
    if applied(obj.annotations()).as_ref() == Some(requested) && !obj.annotations().contains_key(LEGACY_ANNOTATION) {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": annotations(requested)}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("recording the keys CloudKit manages: {e}"),
            after: None,
        })
}

#[cfg(test)]
mod tests {
    use cloudkit_reconcilers::function::FunctionState;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn state(tags: &[(&str, &str)], env: &[(&str, &str)], triggers: &[(&str, i32)]) -> FunctionState {
        FunctionState {
            package_type: "Zip".into(),
            runtime: None,
            handler: None,
            memory_mb: 128,
            timeout_seconds: 3,
            env: map(env),
            code: String::new(),
            role_arn: None,
            architecture: "x86_64".into(),
            queue_triggers: triggers.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            tags: map(tags),
            upload: None,
        }
    }

    fn record(fields: &[(&str, &[&str])]) -> SharedKeys {
        fields
            .iter()
            .map(|(f, keys)| (f.to_string(), keys.iter().map(|k| k.to_string()).collect()))
            .collect()
    }

    #[test]
    fn foreign_keys_are_kept_as_found_and_managed_ones_follow_the_manifest() {
        let observed = state(
            &[("team", "old"), ("aws:backup", "daily"), ("gone", "x")],
            &[("LOG", "debug"), ("DD_TRACE_ENABLED", "true"), ("OLD", "1")],
            &[("arn:q1", 5), ("arn:theirs", 1)],
        );
        let mut desired = state(&[("team", "new")], &[("LOG", "info")], &[("arn:q1", 10)]);
        let applied = record(&[
            ("tags", &["team", "gone"]),
            ("env", &["LOG", "OLD"]),
            ("queueTriggers", &["arn:q1"]),
        ]);
        keep_foreign(&mut desired, &observed, Some(&applied));
        // What CloudKit set and the manifest dropped (`gone`, `OLD`) is not kept: the diff
        // removes it. Everything else foreign is kept as found.
        assert_eq!(desired.tags, map(&[("team", "new"), ("aws:backup", "daily")]));
        assert_eq!(desired.env, map(&[("LOG", "info"), ("DD_TRACE_ENABLED", "true")]));
        assert_eq!(
            desired.queue_triggers,
            BTreeMap::from([("arn:q1".to_owned(), 10), ("arn:theirs".to_owned(), 1)])
        );
    }

    #[test]
    fn without_a_record_only_the_manifests_keys_are_managed() {
        let observed = state(&[("team", "old"), ("extra", "x")], &[("X", "1")], &[]);
        let mut desired = state(&[("team", "new")], &[], &[]);
        keep_foreign(&mut desired, &observed, None);
        assert_eq!(desired.tags, map(&[("team", "new"), ("extra", "x")]));
        assert_eq!(desired.env, map(&[("X", "1")]));
    }

    #[test]
    fn the_record_reads_back_what_was_written_and_the_old_tags_record_too() {
        let written = record(&[("tags", &["a", "cloudkit.dev/owner"]), ("env", &["LOG"])]);
        let text = serde_json::to_string(&written).expect("json");
        let annotations = BTreeMap::from([(ANNOTATION.to_owned(), text)]);
        assert_eq!(applied(&annotations), Some(written));
        let legacy = BTreeMap::from([(LEGACY_ANNOTATION.to_owned(), r#"["a","b"]"#.to_owned())]);
        assert_eq!(applied(&legacy), Some(record(&[("tags", &["a", "b"])])));
        assert_eq!(applied(&BTreeMap::new()), None);
    }
}
