//! References between CloudKit objects: every kind's watch cache, and the resolution of a
//! spec's references into the outputs its desired state reads. An object waits (no cloud
//! call) until everything it references exists and is Ready at its current generation.

use std::collections::HashMap;
use std::time::Duration;

use cloudkit_crds::common::{Kind, ManagedStatus};
use cloudkit_crds::validation::FieldError;
use cloudkit_crds::{Bucket, Function, Managed, Queue, Reference, Table, Topic};
use cloudkit_reconcilers::Dependencies;
use futures::Stream;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::broadcast;

use crate::error::Failure;
use crate::status::{self, READY};

/// How soon an object waiting for a dependency looks again if no event wakes it first.
pub const DEPENDENCY_RECHECK: Duration = Duration::from_secs(10);

/// An object that became usable, or whose outputs changed: its dependents look again now.
#[derive(Clone, Debug)]
pub struct Readied {
    kind: Kind,
    namespace: String,
    name: String,
}

/// The outputs dependents read (ARN, URL, external name).
type Published = (Option<String>, Option<String>, Option<String>);

/// What dependents read of an object: its outputs while Ready at its generation, else `None`.
fn usable<K: Managed>(o: &K) -> Option<Published> {
    let s = o.managed_status()?;
    let ready = status::condition(Some(s), READY).is_some_and(|c| c.status == "True");
    (ready && s.observed_generation == o.meta().generation)
        .then(|| (s.arn.clone(), s.url.clone(), s.external_name.clone()))
}

/// Watches one kind's objects go by and announces each that turns Ready or changes its
/// outputs. Objects seen for the first time (the initial list, a restart) are only noted:
/// their dependents are reconciled at start-up anyway.
pub fn announcer<K: Managed>(tx: broadcast::Sender<Readied>, kind: Kind) -> impl FnMut(&K) {
    let mut seen: HashMap<(String, String), Option<Published>> = HashMap::new();
    move |o: &K| {
        let key = (o.namespace().unwrap_or_default(), o.name_any());
        if o.meta().deletion_timestamp.is_some() {
            seen.remove(&key);
            return;
        }
        let now = usable(o);
        if let Some(before) = seen.insert(key.clone(), now.clone())
            && now.is_some()
            && before != now
        {
            // No receiver only means no kind is running yet: nothing waits.
            let _ = tx.send(Readied {
                kind,
                namespace: key.0,
                name: key.1,
            });
        }
    }
}

/// The objects of kind `K` that reference an announced object, as reconcile triggers.
pub fn dependents<K: Managed>(rx: broadcast::Receiver<Readied>, store: Store<K>) -> impl Stream<Item = ObjectRef<K>> {
    let announced = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(readied) => return Some((readied, rx)),
                // Missed announcements are covered by the waiting objects' own recheck.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures::StreamExt::flat_map(announced, move |r| {
        let waiting: Vec<ObjectRef<K>> = store
            .state()
            .into_iter()
            .filter(|o| {
                o.namespace().as_deref() == Some(r.namespace.as_str())
                    && o.references().iter().any(|x| x.kind == r.kind && x.name == r.name)
            })
            .map(|o| ObjectRef::from_obj(&*o))
            .collect();
        futures::stream::iter(waiting)
    })
}

/// The watch caches of every managed kind, filled by each kind's controller.
#[derive(Clone)]
pub struct Stores {
    pub buckets: Store<Bucket>,
    pub tables: Store<Table>,
    pub queues: Store<Queue>,
    pub topics: Store<Topic>,
    pub functions: Store<Function>,
}

/// What a reference found in the cache.
struct Found {
    generation: Option<i64>,
    deleting: bool,
    status: Option<ManagedStatus>,
}

fn found<K: Managed>(store: &Store<K>, namespace: &str, name: &str) -> Option<Found> {
    store.get(&ObjectRef::new(name).within(namespace)).map(|o| Found {
        generation: o.meta().generation,
        deleting: o.meta().deletion_timestamp.is_some(),
        status: o.managed_status().cloned(),
    })
}

impl Stores {
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Found> {
        match kind {
            Kind::Bucket => found(&self.buckets, namespace, name),
            Kind::Table => found(&self.tables, namespace, name),
            Kind::Queue => found(&self.queues, namespace, name),
            Kind::Topic => found(&self.topics, namespace, name),
            Kind::Function => found(&self.functions, namespace, name),
        }
    }
}

/// A reference to the object itself can never be satisfied: a spec error.
pub fn self_references(kind: Kind, name: &str, refs: &[Reference]) -> Vec<FieldError> {
    refs.iter()
        .filter(|r| r.kind == kind && r.name == name)
        .map(|r| FieldError {
            field: r.field.clone(),
            message: format!("refers to this {kind} itself: name another {}", r.kind),
        })
        .collect()
}

/// The status of every referenced object, or a Waiting failure naming each blocker.
pub fn resolve(stores: &Stores, namespace: &str, refs: &[Reference]) -> Result<Dependencies, Failure> {
    let mut deps = Dependencies::default();
    let mut missing = Vec::new();
    let mut not_ready = Vec::new();
    for r in refs {
        let at = format!("{}/{} ({})", r.kind, r.name, r.field);
        match stores.get(r.kind, namespace, &r.name) {
            None => missing.push(format!(
                "{at} does not exist in namespace '{namespace}': create it or fix the name"
            )),
            Some(f) if f.deleting => not_ready.push(format!("{at} is being deleted")),
            Some(f) => match blocker(&f) {
                Some(why) => not_ready.push(format!("{at} is not Ready: {why}")),
                None => deps.insert(r.kind, &r.name, f.status.unwrap_or_default()),
            },
        }
    }
    if missing.is_empty() && not_ready.is_empty() {
        return Ok(deps);
    }
    let reason = if missing.is_empty() {
        "DependencyNotReady"
    } else {
        "DependencyNotFound"
    };
    missing.extend(not_ready);
    Err(Failure::waiting(
        reason,
        format!("waiting for {}", missing.join("; ")),
        DEPENDENCY_RECHECK,
    ))
}

/// Why a found object cannot be used yet, or `None` when it is Ready for its generation.
fn blocker(f: &Found) -> Option<String> {
    let Some(s) = &f.status else {
        return Some("not reconciled yet".into());
    };
    let ready = status::condition(Some(s), READY);
    match ready {
        Some(c) if c.status == "True" && s.observed_generation == f.generation => None,
        Some(c) if c.status == "True" => Some("its latest change is not applied yet".into()),
        Some(c) => Some(match &c.message {
            Some(m) => format!("{}: {m}", c.reason),
            None => c.reason.clone(),
        }),
        None => Some("not reconciled yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use cloudkit_crds::common::Condition;

    use super::*;

    fn found(ready: Option<(&str, &str)>, generation: i64, observed: i64) -> Found {
        Found {
            generation: Some(generation),
            deleting: false,
            status: Some(ManagedStatus {
                observed_generation: Some(observed),
                conditions: ready
                    .map(|(status, reason)| Condition {
                        type_: READY.into(),
                        status: status.into(),
                        reason: reason.into(),
                        message: Some("details".into()),
                        last_transition_time: "2026-01-01T00:00:00Z".into(),
                        observed_generation: Some(observed),
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ready_at_its_generation_unblocks() {
        assert_eq!(blocker(&found(Some(("True", "Available")), 2, 2)), None);
        assert!(blocker(&found(Some(("True", "Available")), 3, 2)).is_some());
        assert_eq!(
            blocker(&found(Some(("False", "ProviderError")), 1, 1)).as_deref(),
            Some("ProviderError: details")
        );
        assert!(blocker(&found(None, 1, 1)).is_some());
    }

    #[test]
    fn self_reference_is_a_spec_error() {
        let refs = [Reference::new(Kind::Queue, "q", "spec.deadLetter.queueRef")];
        let errors = self_references(Kind::Queue, "q", &refs);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.deadLetter.queueRef");
        assert!(self_references(Kind::Queue, "other", &refs).is_empty());
    }
}
