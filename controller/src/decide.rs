//! The judging half of the one loop: check a spec before any cloud call, work out the
//! desired state from the references, and decide from what `observe` found whether to
//! create, converge some fields, wait or stall. The controller acts on these decisions;
//! `cloudkit plan --live` prints them. Keeping both on this code is what makes the plan true.

use cloudkit_crds::reason::Reason;
use std::time::Duration;

use cloudkit_crds::common::ManagedStatus;
use cloudkit_crds::validation::{FieldError, SpecErrors};
use cloudkit_crds::{Cloud, DriftPolicy};
use cloudkit_drift::{FieldDiff, touches};
use cloudkit_reconcilers::{Normalize, Observed, OwnerTag, Tagged};
use kube::ResourceExt;
use serde::Serialize;

use crate::error::Failure;
use crate::kinds::ManagedKind;
use crate::references::{self, Stores};

/// How soon a resource the cloud is still provisioning is looked at again.
const PROVISIONING_RECHECK: Duration = Duration::from_secs(3);

/// Everything that can be wrong before any cloud call: the spec on its cloud, a rename of
/// the resource already recorded as this object's (`recorded`), a cycle of references.
pub fn check<K: ManagedKind>(
    obj: &K,
    cloud: Cloud,
    name: &str,
    recorded: Option<&str>,
    stores: &Stores,
) -> Result<(), Failure> {
    let mut errors = obj.spec_errors(cloud);
    if let Some(recorded) = recorded.filter(|r| *r != name) {
        errors.push(FieldError {
            field: obj.name_field().to_owned(),
            message: format!(
                "the cloud resource is '{recorded}' and cannot be renamed to '{name}': restore the name, \
                 or create a new object for the new resource"
            ),
        });
    }
    let unsupported = obj.unsupported(cloud);
    if !errors.is_empty() {
        // Everything at once, so that one edit can fix it all.
        errors.extend(unsupported);
        return Err(Failure::stalled(Reason::InvalidSpec, SpecErrors(errors).to_string()));
    }
    if !unsupported.is_empty() {
        return Err(Failure::stalled(
            Reason::UnsupportedForProvider,
            SpecErrors(unsupported).to_string(),
        ));
    }
    if !obj.references().is_empty()
        && let Some(cycle) = stores.cycle(K::KIND, &obj.namespace().unwrap_or_default(), &obj.name_any())
    {
        // Each member would wait for the next forever; a human must break the loop.
        return Err(Failure::stalled(
            Reason::DependencyCycle,
            format!("references form a cycle, {cycle}: remove one of them"),
        ));
    }
    Ok(())
}

/// The state the manifest asks for, once everything it references is Ready, marked as
/// this object's with `owner`.
pub fn desired<K: ManagedKind>(obj: &K, stores: &Stores, owner: &OwnerTag) -> Result<K::State, Failure> {
    let deps = references::resolve(stores, &obj.namespace().unwrap_or_default(), &obj.references())?;
    let mut desired = obj
        .desired(&deps)
        .map_err(|m| Failure::waiting(Reason::DependencyNotReady, m, references::DEPENDENCY_RECHECK))?;
    desired.tags_mut().insert(owner.key.clone(), owner.value.clone());
    Ok(desired)
}

/// What to do with the cloud resource.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Nothing by that name exists.
    Create,
    /// It exists and is usable; these fields differ from the manifest (none: in sync).
    /// `adopting` when it becomes this object's now, as `spec.externalName` asked.
    Converge { diffs: Vec<FieldDiff>, adopting: bool },
}

/// Decides from the observed resource. `ours` says the name is already recorded as this
/// object's; `adopt` that the manifest names the resource explicitly; `owner` is the tag
/// this object puts on what it manages.
// Each argument is one fact the decision rests on; a struct for them would only move the list.
#[allow(clippy::too_many_arguments)]
pub fn decide<S: Serialize + Clone + Tagged + Normalize>(
    observed: Option<&Observed<S>>,
    desired: &S,
    name: &str,
    ours: bool,
    adopt: bool,
    immutable: &[&str],
    unobserved: &[&str],
    owner: &OwnerTag,
) -> Result<Decision, Failure> {
    let Some(observed) = observed else {
        return Ok(Decision::Create);
    };
    // Another object's resource is never touched, whatever this one's spec or annotations
    // say: adopting it, or even recording its name, would let a namespace take over (retag,
    // re-encrypt, delete) what another one manages.
    let ours = match observed.state.tags().get(&owner.key) {
        Some(other) if *other != owner.value => {
            return Err(Failure::stalled(
                Reason::OwnedByAnother,
                format!(
                    "'{name}' is managed by {other} (its tag {} says so) and is left untouched: choose another \
                     name; if that owner no longer exists, remove the tag in the cloud to let this object adopt it",
                    owner.key
                ),
            ));
        }
        // Its tag names this object: made or adopted by it, even if the record was lost (a
        // restore from backup without annotations). When the manifest names it, whether it
        // was made here cannot be told, so it is taken as adopted, which keeps it on delete.
        Some(_) => ours || !adopt,
        None => ours,
    };
    // Taking over a resource is only done when asked: a name that merely matches
    // `metadata.name` may belong to someone else (another namespace, another tool).
    if !ours && !adopt {
        return Err(Failure::stalled(
            Reason::AlreadyExists,
            format!(
                "'{name}' already exists and is not managed by this object: set spec.externalName: {name} \
                 to adopt it, or choose another name"
            ),
        ));
    }
    if let Some(pending) = &observed.pending {
        return Err(provisioning(name, pending));
    }
    let diffs = diff(desired, &observed.state, unobserved)?;
    let fixed: Vec<&FieldDiff> = diffs
        .iter()
        .filter(|d| immutable.iter().any(|f| touches(std::slice::from_ref(*d), f)))
        .collect();
    if !fixed.is_empty() {
        return Err(Failure::stalled(
            Reason::ImmutableFieldChanged,
            format!(
                "{} cannot change once '{name}' exists: restore the old value, or create a new object (with a \
                 new name) for a new resource; nothing was changed",
                fixed
                    .iter()
                    .map(|d| format!("spec.{} (is {}, manifest asks {})", d.path, d.observed, d.desired))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Decision::Converge { diffs, adopting: !ours })
}

/// The one diff, as a Failure when the states cannot be compared. Fields the cloud does
/// not store (`unobserved`) cannot have drifted, nor be converged: they are left out.
/// The observed side is first put in the desired one's spelling (`Normalize`).
pub fn diff<S: Serialize + Clone + Normalize>(
    desired: &S,
    observed: &S,
    unobserved: &[&str],
) -> Result<Vec<FieldDiff>, Failure> {
    let mut observed = observed.clone();
    observed.normalize_to(desired);
    let mut diffs = cloudkit_drift::diff(desired, &observed)
        .map_err(|e| Failure::stalled(Reason::InternalError, format!("comparing states: {e}")))?;
    diffs.retain(|d| !unobserved.iter().any(|f| touches(std::slice::from_ref(d), f)));
    Ok(diffs)
}

/// A resource this object made or adopted (`existed`) that is missing now was deleted
/// outside CloudKit: `Ok(true)` to make it again, refused unless the policy corrects drift.
pub fn vanished(decision: &Decision, existed: bool, policy: DriftPolicy, name: &str) -> Result<bool, Failure> {
    let vanished = *decision == Decision::Create && existed;
    if vanished && policy != DriftPolicy::Correct {
        return Err(Failure::stalled(
            Reason::ExternalResourceMissing,
            format!(
                "'{name}' was deleted outside CloudKit and spec.driftPolicy is {policy:?}, so it is not made \
                 again: set driftPolicy: Correct to recreate it, or delete this object"
            ),
        ));
    }
    Ok(vanished)
}

/// How the diffs on an existing resource are to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drift {
    /// Made outside CloudKit: the generation had already been applied in full.
    pub found: bool,
    /// Left in the cloud, as the policy says; otherwise the diffs are applied.
    pub left: bool,
}

/// Diffs on a generation already in sync (`status.syncedGeneration`) were made outside
/// CloudKit; a manifest change is always applied, whatever the policy.
pub fn drift(
    status: Option<&ManagedStatus>,
    generation: Option<i64>,
    diffs: &[FieldDiff],
    created: bool,
    policy: DriftPolicy,
) -> Drift {
    let in_sync = status.is_some_and(|s| s.synced_generation.is_some() && s.synced_generation == generation);
    let found = in_sync && !created && !diffs.is_empty();
    Drift {
        found,
        left: found && policy != DriftPolicy::Correct,
    }
}

/// The cloud is still working on the resource: look again shortly, no backoff.
/// Refuses to act on a resource through a ProviderConfig that now points elsewhere than
/// where it was made: acting would create a second one and leave the first behind, or
/// delete a namesake that is not ours.
pub fn pinned(status: Option<&ManagedStatus>, target: &str, name: &str, config: &str) -> Result<(), Failure> {
    match status.and_then(|s| s.provider.as_deref()) {
        Some(recorded) if recorded != target => Err(Failure::stalled(
            Reason::ProviderChanged,
            format!(
                "'{name}' was made in {recorded}, but ProviderConfig '{config}' now points at {target}: \
                 CloudKit does not move resources. Put spec.providerConfigRef or the ProviderConfig back; \
                 to move, set spec.deletionPolicy: Retain, delete this object and create it again"
            ),
        )),
        _ => Ok(()),
    }
}

/// After a delete call: done only once observe finds nothing, since some clouds delete in
/// the background (a DynamoDB table `DELETING`) and the name is not free until then.
pub fn gone<S>(after: Option<&Observed<S>>, name: &str) -> Result<(), Failure> {
    match after {
        None => Ok(()),
        Some(still) => Err(Failure::waiting(
            Reason::Deleting,
            format!(
                "'{name}' is being deleted: {}",
                still.pending.as_deref().unwrap_or("still there")
            ),
            PROVISIONING_RECHECK,
        )),
    }
}

pub fn provisioning(name: &str, pending: &str) -> Failure {
    Failure::waiting(
        Reason::Provisioning,
        format!("'{name}' is not ready for use yet: {pending}"),
        PROVISIONING_RECHECK,
    )
}

#[cfg(test)]
mod tests {
    use cloudkit_reconcilers::Outputs;
    use serde_json::json;

    use super::*;

    /// A state with free-form fields and tags, as every kind's has.
    #[derive(Serialize, Clone)]
    struct State {
        #[serde(flatten)]
        fields: serde_json::Value,
        tags: cloudkit_crds::common::Tags,
    }

    impl Tagged for State {
        fn tags(&self) -> &cloudkit_crds::common::Tags {
            &self.tags
        }
        fn tags_mut(&mut self) -> &mut cloudkit_crds::common::Tags {
            &mut self.tags
        }
    }

    impl Normalize for State {}

    #[test]
    fn a_kms_key_arn_read_back_for_its_id_is_no_diff() {
        use cloudkit_reconcilers::bucket::BucketState;
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let desired = BucketState {
            versioning: false,
            tags: Default::default(),
            public_access_block: Default::default(),
            encryption_key_id: Some(id.into()),
            public_access: None,
            default_encryption_scope: None,
            storage_class: None,
        };
        let observed = BucketState {
            encryption_key_id: Some(format!("arn:aws:kms:us-east-1:111122223333:key/{id}")),
            ..desired.clone()
        };
        assert_eq!(diff(&desired, &observed, &[]).expect("diff"), vec![]);
        let other = BucketState {
            encryption_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/another".into()),
            ..desired.clone()
        };
        let d = diff(&desired, &other, &[]).expect("diff");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "encryptionKeyId");
    }

    fn state(fields: serde_json::Value) -> State {
        State {
            fields,
            tags: Default::default(),
        }
    }

    fn seen(fields: serde_json::Value) -> Observed<State> {
        Observed::ready(state(fields), Outputs::default())
    }

    fn me() -> OwnerTag {
        OwnerTag {
            key: "cloudkit.dev/owner".into(),
            value: "c/ns/Bucket/a".into(),
        }
    }

    #[test]
    fn another_objects_resource_is_left_alone_and_our_own_tag_proves_ours() {
        let mut theirs = seen(json!({"x": 1}));
        theirs.state.tags.insert(me().key, "c/other/Bucket/a".into());
        for (ours, adopt) in [(false, false), (false, true), (true, false)] {
            let refused = decide(
                Some(&theirs),
                &state(json!({"x": 1})),
                "a",
                ours,
                adopt,
                &[],
                &[],
                &me(),
            );
            assert!(
                matches!(refused, Err(Failure::Stalled { ref reason, ref message })
                    if *reason == Reason::OwnedByAnother && message.contains("c/other/Bucket/a")),
                "{refused:?}"
            );
        }
        let mut mine = seen(json!({"x": 1}));
        mine.state.tags.insert(me().key, me().value);
        let found = decide(Some(&mine), &state(json!({"x": 1})), "a", false, false, &[], &[], &me());
        assert!(
            matches!(found, Ok(Decision::Converge { adopting: false, .. })),
            "{found:?}"
        );
        let named = decide(Some(&mine), &state(json!({"x": 1})), "a", false, true, &[], &[], &me());
        assert!(
            matches!(named, Ok(Decision::Converge { adopting: true, .. })),
            "{named:?}"
        );
    }

    #[test]
    fn a_resource_stays_where_it_was_made() {
        let made = ManagedStatus {
            provider: Some("aws region us-east-1".into()),
            ..Default::default()
        };
        assert!(pinned(Some(&made), "aws region us-east-1", "b", "default").is_ok());
        // Recorded before this field existed: nothing to compare with yet.
        assert!(pinned(Some(&ManagedStatus::default()), "aws region eu-west-1", "b", "default").is_ok());
        let moved = pinned(Some(&made), "aws region eu-west-1", "b", "other").expect_err("moved");
        assert_eq!(moved.reason(), Reason::ProviderChanged);
        let message = moved.to_string();
        assert!(
            message.contains("us-east-1") && message.contains("eu-west-1") && message.contains("'other'"),
            "{message}"
        );
        assert!(matches!(moved, Failure::Stalled { .. }));
    }

    #[test]
    fn fields_the_cloud_does_not_store_are_not_compared() {
        let found = seen(json!({"partitionKey": {"name": "?"}, "x": 1}));
        let decision = decide(
            Some(&found),
            &state(json!({"partitionKey": {"name": "id"}, "x": 2})),
            "a",
            true,
            false,
            &[],
            &["partitionKey"],
            &me(),
        );
        assert!(
            matches!(decision, Ok(Decision::Converge { ref diffs, .. }) if diffs.len() == 1 && diffs[0].path == "x")
        );
    }

    #[test]
    fn a_delete_is_done_only_when_the_resource_is_gone() {
        assert_eq!(gone::<State>(None, "t"), Ok(()));
        let mut dying = seen(json!({}));
        dying.pending = Some("table status is DELETING".into());
        let waiting = gone(Some(&dying), "t").expect_err("still there");
        assert_eq!(waiting.reason(), Reason::Deleting);
        assert!(matches!(waiting, Failure::Waiting { .. }));
        assert!(waiting.to_string().contains("DELETING"), "{waiting}");
    }

    #[test]
    fn drift_is_judged_against_the_last_applied_generation() {
        let synced = ManagedStatus {
            synced_generation: Some(2),
            ..Default::default()
        };
        let diffs = cloudkit_drift::diff(&json!({"x": 1}), &json!({"x": 2})).expect("diff");
        let judge = |generation, created, policy| drift(Some(&synced), Some(generation), &diffs, created, policy);
        assert_eq!(
            judge(2, false, DriftPolicy::Correct),
            Drift {
                found: true,
                left: false
            }
        );
        assert_eq!(
            judge(2, false, DriftPolicy::Report),
            Drift {
                found: true,
                left: true
            }
        );
        // A manifest change, or a resource just made: applied, never drift.
        assert_eq!(
            judge(3, false, DriftPolicy::Report),
            Drift {
                found: false,
                left: false
            }
        );
        assert_eq!(
            judge(2, true, DriftPolicy::Ignore),
            Drift {
                found: false,
                left: false
            }
        );
        assert!(vanished(&Decision::Create, true, DriftPolicy::Correct, "b").expect("remade"));
        let kept = vanished(&Decision::Create, true, DriftPolicy::Report, "b").expect_err("reported");
        assert_eq!(kept.reason(), Reason::ExternalResourceMissing);
        assert!(!vanished(&Decision::Create, false, DriftPolicy::Report, "b").expect("first create"));
    }

    #[test]
    fn missing_resources_are_created() {
        assert_eq!(
            decide(None, &state(json!({})), "a", false, false, &[], &[], &me()),
            Ok(Decision::Create)
        );
    }

    #[test]
    fn a_resource_found_by_name_alone_is_not_taken_over() {
        let found = seen(json!({"x": 1}));
        let refused = decide(
            Some(&found),
            &state(json!({"x": 1})),
            "a",
            false,
            false,
            &[],
            &[],
            &me(),
        );
        assert!(matches!(refused, Err(Failure::Stalled { ref reason, .. }) if *reason == Reason::AlreadyExists));
        let adopted = decide(Some(&found), &state(json!({"x": 2})), "a", false, true, &[], &[], &me());
        assert!(matches!(adopted, Ok(Decision::Converge { adopting: true, ref diffs }) if diffs.len() == 1));
    }

    #[test]
    fn immutable_fields_stall_and_pending_resources_wait() {
        let found = seen(json!({"fifo": false, "x": 1}));
        let fixed = decide(
            Some(&found),
            &state(json!({"fifo": true, "x": 2})),
            "a",
            true,
            false,
            &["fifo"],
            &[],
            &me(),
        );
        assert!(matches!(fixed, Err(Failure::Stalled { ref reason, ref message })
            if *reason == Reason::ImmutableFieldChanged && message.contains("spec.fifo") && !message.contains("spec.x")));
        let mut busy = seen(json!({}));
        busy.pending = Some("CREATING".into());
        let waiting = decide(Some(&busy), &state(json!({})), "a", true, false, &[], &[], &me());
        assert!(matches!(waiting, Err(Failure::Waiting { ref reason, .. }) if *reason == Reason::Provisioning));
        let in_sync = decide(
            Some(&seen(json!({"x": 1}))),
            &state(json!({"x": 1})),
            "a",
            true,
            false,
            &[],
            &[],
            &me(),
        );
        assert_eq!(
            in_sync,
            Ok(Decision::Converge {
                diffs: vec![],
                adopting: false
            })
        );
    }
}
