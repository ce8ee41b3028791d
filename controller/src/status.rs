//! Conditions and status, following Kubernetes conventions so that kstatus-based tools
//! (Flux, Argo CD, Helm, kpt, `kubectl wait`) judge health correctly: `Reconciling=True`
//! while work is pending, `Stalled=True` only when a human must act (or a failure that
//! usually heals has lasted past `--stall-after`), `Ready` always set.

use std::time::Duration;

use cloudkit_crds::common::{Condition, FieldDrift, ManagedStatus};
use cloudkit_crds::provider_config::ProviderConfigStatus;
use cloudkit_crds::reason::{Heals, Reason};
use cloudkit_reconcilers::Outputs;

use crate::error::Failure;

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const DRIFTED: &str = "Drifted";
/// `status.drift` keeps this many fields, so that a resource changed wholesale cannot grow
/// the object without bound; the Drifted message names the first few and counts the rest.
const MAX_DRIFT: usize = 20;
const MESSAGE_FIELDS: usize = 10;

/// The result of one reconcile, to be written into status.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The external name is recorded before the create call, so a delete or a restart
    /// that comes before the create's answer still knows which resource may exist.
    Creating,
    /// The cloud matches the manifest. `changed` is true when this reconcile created,
    /// adopted or updated the resource; `drift` lists what was changed outside CloudKit.
    InSync {
        outputs: &'a Outputs,
        drift: Vec<FieldDrift>,
        /// The drift was left in the cloud (`driftPolicy: Report`), not set back.
        drifted: bool,
        changed: bool,
    },
    Failed(&'a Failure),
}

/// The status after `outcome`, built from the current one so that unchanged conditions keep
/// their `lastTransitionTime` and an unchanged status compares equal (and is not written).
pub fn next(
    old: Option<&ManagedStatus>,
    generation: Option<i64>,
    external_name: &str,
    outcome: &Outcome,
    now: &str,
) -> ManagedStatus {
    let mut status = old.cloned().unwrap_or_default();
    let same_generation = status.observed_generation == generation;
    if !same_generation {
        // Drift found against an older manifest says nothing about this one.
        status.drift.clear();
    }
    status.observed_generation = generation;
    // The clock `escalate` reads: since when this generation has failed for reasons that
    // usually heal by themselves. A new generation may be the fix, so it starts over.
    let failure = match outcome {
        Outcome::Failed(f) => Some(*f),
        _ => None,
    };
    status.failing_since = failing_since(status.failing_since.take(), same_generation, failure, now);
    let mut set = |type_: &str, value: bool, reason: Reason, message: &str| {
        set_condition(&mut status.conditions, type_, value, reason, message, generation, now);
    };
    match outcome {
        Outcome::Creating => {
            set(READY, false, Reason::Creating, "creating the cloud resource");
            set(SYNCED, false, Reason::Creating, "creating the cloud resource");
            set(RECONCILING, true, Reason::Creating, "creating the cloud resource");
            set(STALLED, false, Reason::Creating, "");
        }
        Outcome::InSync { drifted, .. } => {
            let message = if *drifted {
                "the cloud resource is usable but differs from the manifest: see the Drifted condition"
            } else {
                "the cloud resource matches the manifest"
            };
            set(READY, true, Reason::Available, message);
            set(SYNCED, true, Reason::ReconcileSuccess, "");
            set(RECONCILING, false, Reason::ReconcileSuccess, "");
            set(STALLED, false, Reason::ReconcileSuccess, "");
        }
        Outcome::Failed(Failure::Stalled { reason, message }) => {
            set(READY, false, *reason, message);
            set(SYNCED, false, *reason, message);
            set(RECONCILING, false, *reason, "");
            set(STALLED, true, *reason, message);
        }
        Outcome::Failed(Failure::Retrying { reason, message, .. }) => {
            set(READY, false, *reason, message);
            set(SYNCED, false, *reason, message);
            set(RECONCILING, true, Reason::RetryingAfterError, message);
            set(STALLED, false, *reason, "");
        }
        Outcome::Failed(Failure::Waiting { reason, message, .. }) => {
            set(READY, false, *reason, message);
            set(SYNCED, false, *reason, message);
            set(RECONCILING, true, *reason, message);
            set(STALLED, false, *reason, "");
        }
    }
    match outcome {
        Outcome::Creating => status.external_name = Some(external_name.to_owned()),
        Outcome::InSync {
            outputs,
            drift,
            drifted,
            changed,
        } => {
            status.external_name = Some(external_name.to_owned());
            status.synced_generation = generation;
            status.arn = outputs.arn.clone();
            status.url = outputs.url.clone();
            status.id = outputs.id.clone();
            status.outputs = Some(outputs.extra.clone()).filter(|m| !m.is_empty());
            let fields = || {
                let mut names: Vec<&str> = drift.iter().take(MESSAGE_FIELDS).map(|d| d.field.as_str()).collect();
                let more = drift.len().saturating_sub(MESSAGE_FIELDS);
                let more = format!("and {more} more");
                if drift.len() > MESSAGE_FIELDS {
                    names.push(&more);
                }
                names.join(", ")
            };
            if *drifted {
                let message = format!(
                    "differs from the manifest and is left so (driftPolicy: Report or managementPolicy: ObserveOnly): {}",
                    fields()
                );
                set_condition(
                    &mut status.conditions,
                    DRIFTED,
                    true,
                    Reason::DriftDetected,
                    &message,
                    generation,
                    now,
                );
            } else if !drift.is_empty() {
                let message = format!("changed outside CloudKit and set back: {}", fields());
                set_condition(
                    &mut status.conditions,
                    DRIFTED,
                    false,
                    Reason::DriftCorrected,
                    &message,
                    generation,
                    now,
                );
            } else if condition(Some(&status), DRIFTED).is_none_or(|c| c.status == "True") {
                // Quiet resyncs leave the last correction's message in place.
                set_condition(
                    &mut status.conditions,
                    DRIFTED,
                    false,
                    Reason::InSync,
                    "",
                    generation,
                    now,
                );
            }
            if !drift.is_empty() {
                let old = std::mem::take(&mut status.drift);
                status.drift = drift
                    .iter()
                    .take(MAX_DRIFT)
                    .map(|d| {
                        // A difference already reported keeps the time it was first seen.
                        let seen = old
                            .iter()
                            .find(|o| o.field == d.field && o.desired == d.desired && o.observed == d.observed)
                            .and_then(|o| o.detected_at.clone());
                        FieldDrift {
                            detected_at: seen.or_else(|| Some(now.to_owned())),
                            ..d.clone()
                        }
                    })
                    .collect();
            }
            if *changed || status.last_sync_time.is_none() {
                status.last_sync_time = Some(now.to_owned());
            }
        }
        Outcome::Failed(_) => {}
    }
    status
}

/// Whether two drift lists name the same differences, whenever each was seen.
pub fn same_drift(a: &[FieldDrift], b: &[FieldDrift]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.field == y.field && x.desired == y.desired && x.observed == y.observed)
}

/// The parts of a status that escalation reads and writes.
pub trait Escalating {
    /// (conditions, `failingSince`, `observedGeneration`)
    fn parts(&mut self) -> (&mut Vec<Condition>, Option<&str>, Option<i64>);
}

impl Escalating for ManagedStatus {
    fn parts(&mut self) -> (&mut Vec<Condition>, Option<&str>, Option<i64>) {
        (
            &mut self.conditions,
            self.failing_since.as_deref(),
            self.observed_generation,
        )
    }
}

impl Escalating for ProviderConfigStatus {
    fn parts(&mut self) -> (&mut Vec<Condition>, Option<&str>, Option<i64>) {
        (
            &mut self.conditions,
            self.failing_since.as_deref(),
            self.observed_generation,
        )
    }
}

/// Reports a failure that usually heals by itself as `Stalled` once this generation has
/// failed for longer than `stall_after` (`status.failingSince`): a pipeline waiting on the
/// object should stop waiting and show it to a human. The controller keeps retrying, and
/// the next success clears it. Returns whether it escalated.
pub fn escalate(status: &mut impl Escalating, failure: &Failure, now: &str, stall_after: Duration) -> bool {
    let (conditions, failing_since, generation) = status.parts();
    escalate_conditions(conditions, failing_since, generation, failure, now, stall_after)
}

fn escalate_conditions(
    conditions: &mut Vec<Condition>,
    failing_since: Option<&str>,
    generation: Option<i64>,
    failure: &Failure,
    now: &str,
    stall_after: Duration,
) -> bool {
    let elapsed = |since: &str| {
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        parse(now)
            .zip(parse(since))
            .and_then(|(now, since)| (now - since).to_std().ok())
    };
    let Some(failing) = failing_since.and_then(elapsed) else {
        return false;
    };
    if failing < stall_after || matches!(failure, Failure::Stalled { .. }) {
        return false;
    }
    let reason = failure.reason();
    let message = format!(
        "{failure} (failing for {} on this generation; still retrying, and Ready once it heals)",
        humanize(failing)
    );
    set_condition(conditions, RECONCILING, false, reason, "", generation, now);
    set_condition(conditions, STALLED, true, reason, &message, generation, now);
    true
}

/// Since when a generation has failed for reasons that usually heal: kept while the same
/// generation keeps failing so, restarted by a new generation (it may be the fix), cleared
/// by anything else.
fn failing_since(old: Option<String>, same_generation: bool, failure: Option<&Failure>, now: &str) -> Option<String> {
    match failure {
        Some(f) if f.reason().heals() == Heals::Usually && !matches!(f, Failure::Stalled { .. }) => {
            Some(old.filter(|_| same_generation).unwrap_or_else(|| now.to_owned()))
        }
        _ => None,
    }
}

/// `1h5m`, `5m30s`, `42s`: how long a failure has lasted, for messages.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// A ProviderConfig's status: Ready when its settings are valid and its credentials are
/// present (they are not tried against the cloud: resources using them report that).
pub fn provider_config(
    old: Option<&ProviderConfigStatus>,
    generation: Option<i64>,
    result: Result<(), &Failure>,
    now: &str,
) -> ProviderConfigStatus {
    let mut status = old.cloned().unwrap_or_default();
    let same_generation = status.observed_generation == generation;
    status.observed_generation = generation;
    status.failing_since = failing_since(status.failing_since.take(), same_generation, result.err(), now);
    let mut set = |type_: &str, value: bool, reason: Reason, message: &str| {
        set_condition(&mut status.conditions, type_, value, reason, message, generation, now);
    };
    match result {
        Ok(()) => {
            set(
                READY,
                true,
                Reason::Valid,
                "settings are valid and credentials are present",
            );
            set(RECONCILING, false, Reason::Valid, "");
            set(STALLED, false, Reason::Valid, "");
        }
        Err(Failure::Stalled { reason, message }) => {
            set(READY, false, *reason, message);
            set(RECONCILING, false, *reason, "");
            set(STALLED, true, *reason, message);
        }
        Err(Failure::Retrying { reason, message, .. } | Failure::Waiting { reason, message, .. }) => {
            set(READY, false, *reason, message);
            set(RECONCILING, true, Reason::RetryingAfterError, message);
            set(STALLED, false, *reason, "");
        }
    }
    status
}

/// The condition of a type, if set.
pub fn condition<'a>(status: Option<&'a ManagedStatus>, type_: &str) -> Option<&'a Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: bool,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: &str,
) {
    let status = if value { "True" } else { "False" };
    let new = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_string(),
        message: Some(message.to_owned()).filter(|m| !m.is_empty()),
        last_transition_time: now.to_owned(),
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let last_transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time,
                ..new
            };
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:05:00Z";

    fn outputs() -> Outputs {
        Outputs {
            arn: Some("arn:aws:s3:::b".into()),
            url: None,
            id: Some("b".into()),
            ..Default::default()
        }
    }

    fn get<'a>(s: &'a ManagedStatus, t: &str) -> &'a Condition {
        condition(Some(s), t).expect("condition set")
    }

    #[test]
    fn in_sync_is_ready_and_not_reconciling_or_stalled() {
        let o = outputs();
        let s = next(
            None,
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: vec![],
                drifted: false,
                changed: true,
            },
            T0,
        );
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, RECONCILING).status, "False");
        assert_eq!(get(&s, STALLED).status, "False");
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.external_name.as_deref(), Some("b"));
        assert_eq!(s.arn.as_deref(), Some("arn:aws:s3:::b"));
        assert_eq!(s.last_sync_time.as_deref(), Some(T0));
    }

    #[test]
    fn quiet_resync_leaves_status_equal_so_nothing_is_written() {
        let o = outputs();
        let first = next(
            None,
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: vec![],
                drifted: false,
                changed: true,
            },
            T0,
        );
        let again = next(
            Some(&first),
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: vec![],
                drifted: false,
                changed: false,
            },
            T1,
        );
        assert_eq!(first, again);
    }

    #[test]
    fn stalled_needs_a_human_and_keeps_transition_time_while_unchanged() {
        let f = Failure::stalled(Reason::InvalidSpec, "metadata.name: bad");
        let s = next(None, Some(2), "B", &Outcome::Failed(&f), T0);
        assert_eq!(get(&s, STALLED).status, "True");
        assert_eq!(get(&s, READY).reason, "InvalidSpec");
        assert_eq!(get(&s, READY).message.as_deref(), Some("metadata.name: bad"));
        assert_eq!(get(&s, RECONCILING).status, "False");
        assert_eq!(s.external_name, None, "nothing was created, so no name is recorded");
        let again = next(Some(&s), Some(2), "B", &Outcome::Failed(&f), T1);
        assert_eq!(get(&again, STALLED).last_transition_time, T0);
    }

    #[test]
    fn retrying_is_reconciling_not_stalled() {
        let f = Failure::Retrying {
            reason: Reason::ProviderError,
            message: "503".into(),
            after: None,
        };
        let s = next(None, Some(1), "b", &Outcome::Failed(&f), T0);
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "ProviderError");
        assert_eq!(get(&s, RECONCILING).status, "True");
        assert_eq!(get(&s, STALLED).status, "False");
    }

    #[test]
    fn waiting_is_reconciling_with_its_own_reason() {
        let f = Failure::waiting(
            Reason::DependencyNotReady,
            "Queue/dlq is not Ready",
            std::time::Duration::from_secs(5),
        );
        let s = next(None, Some(1), "q", &Outcome::Failed(&f), T0);
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "DependencyNotReady");
        assert_eq!(get(&s, RECONCILING).status, "True");
        assert_eq!(get(&s, RECONCILING).reason, "DependencyNotReady");
        assert_eq!(get(&s, RECONCILING).message.as_deref(), Some("Queue/dlq is not Ready"));
        assert_eq!(get(&s, STALLED).status, "False");
    }

    #[test]
    fn recovery_flips_transition_times_and_keeps_last_drift() {
        let f = Failure::Retrying {
            reason: Reason::ProviderError,
            message: "503".into(),
            after: None,
        };
        let failed = next(None, Some(1), "b", &Outcome::Failed(&f), T0);
        let o = outputs();
        let drift = vec![FieldDrift {
            detected_at: Some(T1.into()),
            field: "versioning".into(),
            desired: "true".into(),
            observed: "false".into(),
        }];
        let ok = next(
            Some(&failed),
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: drift.clone(),
                drifted: false,
                changed: true,
            },
            T1,
        );
        assert_eq!(get(&ok, READY).last_transition_time, T1);
        assert_eq!(ok.drift, drift);
        let quiet = next(
            Some(&ok),
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: vec![],
                drifted: false,
                changed: false,
            },
            T1,
        );
        assert_eq!(
            quiet.drift, drift,
            "the last drift stays readable until new drift replaces it"
        );
    }

    #[test]
    fn provider_config_ready_or_stalled() {
        let ok = provider_config(None, Some(1), Ok(()), T0);
        assert_eq!(
            ok.conditions
                .iter()
                .find(|c| c.type_ == READY)
                .map(|c| c.status.as_str()),
            Some("True")
        );
        let f = Failure::stalled(Reason::InvalidProviderConfig, "region: not a region");
        let bad = provider_config(Some(&ok), Some(2), Err(&f), T1);
        let stalled = bad.conditions.iter().find(|c| c.type_ == STALLED).expect("Stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "InvalidProviderConfig")
        );
        assert_eq!(bad.observed_generation, Some(2));
    }

    /// Reasons that usually heal start a clock on their generation; past `stall_after` the
    /// object reads Stalled (still retried); success or a new generation resets it.
    #[test]
    fn failures_that_usually_heal_escalate_after_the_bound() {
        const LATER: &str = "2026-01-01T00:05:01Z";
        let stall_after = Duration::from_secs(300);
        let missing = Failure::waiting(
            Reason::ProviderConfigNotFound,
            "ProviderConfig 'aws' not found",
            Duration::from_secs(10),
        );
        let mut first = next(None, Some(1), "b", &Outcome::Failed(&missing), T0);
        assert_eq!(first.failing_since.as_deref(), Some(T0));
        assert!(!escalate(&mut first, &missing, T0, stall_after));
        assert_eq!(get(&first, RECONCILING).status, "True");
        assert_eq!(get(&first, STALLED).status, "False");

        // Another reason that usually heals keeps the clock: still the same generation failing.
        let denied = Failure::Retrying {
            reason: Reason::AccessDenied,
            message: "403".into(),
            after: None,
        };
        let mut second = next(Some(&first), Some(1), "b", &Outcome::Failed(&denied), T1);
        assert_eq!(second.failing_since.as_deref(), Some(T0));
        assert!(!escalate(&mut second, &denied, "2026-01-01T00:04:59Z", stall_after));
        assert!(escalate(&mut second, &denied, LATER, stall_after));
        assert_eq!(get(&second, STALLED).status, "True");
        assert_eq!(get(&second, STALLED).reason, "AccessDenied");
        let message = get(&second, STALLED).message.clone().unwrap_or_default();
        assert!(message.starts_with("403 (failing for 5m1s"), "{message}");
        assert_eq!(get(&second, RECONCILING).status, "False");
        assert_eq!(get(&second, READY).message.as_deref(), Some("403"));

        // A new generation may be the fix: the clock starts over.
        let third = next(Some(&second), Some(2), "b", &Outcome::Failed(&denied), LATER);
        assert_eq!(third.failing_since.as_deref(), Some(LATER));

        // Waiting on a dependency that is itself reconciling never escalates; success clears.
        let waits = Failure::waiting(
            Reason::DependencyNotReady,
            "Queue/q is not Ready",
            Duration::from_secs(10),
        );
        let mut waiting = next(Some(&second), Some(1), "b", &Outcome::Failed(&waits), LATER);
        assert_eq!(waiting.failing_since, None);
        assert!(!escalate(&mut waiting, &waits, LATER, stall_after));
        let o = outputs();
        let ok = next(
            Some(&second),
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: vec![],
                drifted: false,
                changed: false,
            },
            LATER,
        );
        assert_eq!(ok.failing_since, None);
        assert_eq!(get(&ok, STALLED).status, "False");
    }

    /// A ProviderConfig whose Secret never comes escalates on the same bound, and Ready clears it.
    #[test]
    fn a_provider_config_that_keeps_failing_escalates_too() {
        let stall_after = Duration::from_secs(300);
        let missing = Failure::waiting(
            Reason::CredentialsNotFound,
            "Secret 'aws' not found",
            Duration::from_secs(10),
        );
        let first = provider_config(None, Some(1), Err(&missing), T0);
        assert_eq!(first.failing_since.as_deref(), Some(T0));
        let mut later = provider_config(Some(&first), Some(1), Err(&missing), "2026-01-01T00:06:00Z");
        assert_eq!(later.failing_since.as_deref(), Some(T0));
        assert!(escalate(&mut later, &missing, "2026-01-01T00:06:00Z", stall_after));
        let stalled = later.conditions.iter().find(|c| c.type_ == STALLED).expect("Stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "CredentialsNotFound")
        );
        let ok = provider_config(Some(&later), Some(1), Ok(()), "2026-01-01T00:07:00Z");
        assert_eq!(ok.failing_since, None);
        let stalled = ok.conditions.iter().find(|c| c.type_ == STALLED).expect("Stalled");
        assert_eq!(stalled.status, "False");
    }

    #[test]
    fn human_only_reasons_are_stalled_at_once_and_start_no_clock() {
        let bad = Failure::stalled(Reason::InvalidSpec, "spec.externalName: too long");
        let mut s = next(None, Some(1), "b", &Outcome::Failed(&bad), T0);
        assert_eq!(s.failing_since, None);
        assert_eq!(get(&s, STALLED).status, "True");
        assert!(!escalate(&mut s, &bad, T1, Duration::ZERO));
    }

    #[test]
    fn drift_left_in_place_is_a_drifted_condition_that_keeps_its_first_sighting() {
        let o = outputs();
        let drift = vec![FieldDrift {
            detected_at: None,
            field: "tags.team".into(),
            desired: "\"a\"".into(),
            observed: "\"b\"".into(),
        }];
        let report = |old: Option<&ManagedStatus>, drifted: bool, drift: Vec<FieldDrift>, now: &str| {
            next(
                old,
                Some(1),
                "b",
                &Outcome::InSync {
                    outputs: &o,
                    drift,
                    drifted,
                    changed: false,
                },
                now,
            )
        };
        let first = report(None, true, drift.clone(), T0);
        assert_eq!(get(&first, DRIFTED).status, "True");
        assert_eq!(get(&first, DRIFTED).reason, "DriftDetected");
        assert!(
            get(&first, DRIFTED)
                .message
                .as_deref()
                .is_some_and(|m| m.contains("tags.team"))
        );
        assert_eq!(get(&first, READY).status, "True", "a drifted resource is still usable");
        // The next resync finds the same: nothing to write.
        assert_eq!(report(Some(&first), true, drift.clone(), T1), first);
        // Set back by hand: in sync again, the last drift still readable.
        let back = report(Some(&first), false, vec![], T1);
        assert_eq!(get(&back, DRIFTED).status, "False");
        assert_eq!(back.drift[0].detected_at.as_deref(), Some(T0));
        // Corrected by the controller: False, saying what was set back.
        let corrected = report(None, false, drift, T0);
        assert_eq!(get(&corrected, DRIFTED).reason, "DriftCorrected");
        // A resource changed wholesale: status stays bounded.
        let many: Vec<FieldDrift> = (0..30)
            .map(|i| FieldDrift {
                detected_at: None,
                field: format!("tags.k{i:02}"),
                desired: "\"a\"".into(),
                observed: "\"b\"".into(),
            })
            .collect();
        let wholesale = report(None, true, many, T0);
        assert_eq!(wholesale.drift.len(), 20);
        let message = get(&wholesale, DRIFTED).message.clone().unwrap_or_default();
        assert!(message.ends_with("tags.k09, and 20 more"), "{message}");
    }

    #[test]
    fn a_new_generation_clears_old_drift() {
        let o = outputs();
        let drift = vec![FieldDrift {
            detected_at: None,
            field: "tags.a".into(),
            desired: "1".into(),
            observed: "2".into(),
        }];
        let drifted = next(
            None,
            Some(1),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift,
                drifted: false,
                changed: true,
            },
            T0,
        );
        let updated = next(
            Some(&drifted),
            Some(2),
            "b",
            &Outcome::InSync {
                outputs: &o,
                drift: vec![],
                drifted: false,
                changed: true,
            },
            T1,
        );
        assert!(updated.drift.is_empty());
    }

    #[test]
    fn creating_records_the_name_first() {
        let s = next(None, Some(1), "b", &Outcome::Creating, T0);
        assert_eq!(s.external_name.as_deref(), Some("b"));
        assert_eq!(get(&s, RECONCILING).status, "True");
        assert_eq!(get(&s, READY).reason, "Creating");
    }
}
