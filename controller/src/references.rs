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
use kube::runtime::watcher;
use tokio::sync::broadcast;

use crate::error::Failure;
use crate::status::{self, READY};

/// How soon an object waiting for a dependency looks again if no event wakes it first.
pub const DEPENDENCY_RECHECK: Duration = Duration::from_secs(10);

/// What one kind's watch tells the others.
#[derive(Clone, Debug)]
pub enum Signal {
    /// An object became usable, or its outputs changed: the objects referencing it look again.
    Readied {
        kind: Kind,
        namespace: String,
        name: String,
    },
    /// An object that referenced this one is gone: it may now be deleted itself.
    Released {
        kind: Kind,
        namespace: String,
        name: String,
    },
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

/// Watches one kind's events go by and signals the other objects they concern. Objects seen
/// for the first time (the initial list, a restart) are only noted: every object is
/// reconciled at start-up anyway.
pub fn announcer<K: Managed>(tx: broadcast::Sender<Signal>, kind: Kind) -> impl FnMut(&watcher::Event<K>) {
    let mut seen: HashMap<(String, String), Option<Published>> = HashMap::new();
    // No receiver only means no kind is running yet: nothing waits.
    move |event: &watcher::Event<K>| match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            let key = (o.namespace().unwrap_or_default(), o.name_any());
            let now = usable(o);
            if let Some(before) = seen.insert(key.clone(), now.clone())
                && now.is_some()
                && before != now
            {
                let _ = tx.send(Signal::Readied {
                    kind,
                    namespace: key.0,
                    name: key.1,
                });
            }
        }
        watcher::Event::Delete(o) => {
            let namespace = o.namespace().unwrap_or_default();
            seen.remove(&(namespace.clone(), o.name_any()));
            for r in o.references() {
                let _ = tx.send(Signal::Released {
                    kind: r.kind,
                    namespace: namespace.clone(),
                    name: r.name,
                });
            }
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

/// The objects of kind `K` a signal concerns, as reconcile triggers.
pub fn triggers<K: Managed>(
    rx: broadcast::Receiver<Signal>,
    store: Store<K>,
    kind: Kind,
) -> impl Stream<Item = ObjectRef<K>> {
    let signals = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(signal) => return Some((signal, rx)),
                // Missed signals are covered by the waiting objects' own recheck.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures::StreamExt::flat_map(signals, move |signal| {
        let refs: Vec<ObjectRef<K>> = match signal {
            Signal::Readied {
                kind: of,
                namespace,
                name,
            } => store
                .state()
                .into_iter()
                .filter(|o| {
                    o.namespace().as_deref() == Some(namespace.as_str())
                        && o.references().iter().any(|r| r.kind == of && r.name == name)
                })
                .map(|o| ObjectRef::from_obj(&*o))
                .collect(),
            Signal::Released {
                kind: of,
                namespace,
                name,
            } if of == kind => vec![ObjectRef::new(&name).within(&namespace)],
            Signal::Released { .. } => Vec::new(),
        };
        futures::stream::iter(refs)
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
    refs: Vec<Reference>,
}

fn found<K: Managed>(store: &Store<K>, namespace: &str, name: &str) -> Option<Found> {
    store.get(&ObjectRef::new(name).within(namespace)).map(|o| Found {
        generation: o.meta().generation,
        deleting: o.meta().deletion_timestamp.is_some(),
        status: o.managed_status().cloned(),
        refs: o.references(),
    })
}

/// Every object of one kind in a namespace that references `kind`/`name`, with the field.
fn referring<K: Managed>(store: &Store<K>, namespace: &str, kind: Kind, name: &str) -> Vec<String> {
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .flat_map(|o| {
            o.references()
                .into_iter()
                .filter(|r| r.kind == kind && r.name == name)
                .map(|r| format!("{}/{} ({})", K::kind(&()), o.name_any(), r.field))
                .collect::<Vec<_>>()
        })
        .collect()
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

    /// The objects (any kind, same namespace) whose specs reference `kind`/`name`.
    pub fn referrers(&self, kind: Kind, namespace: &str, name: &str) -> Vec<String> {
        let mut all = referring(&self.buckets, namespace, kind, name);
        all.extend(referring(&self.tables, namespace, kind, name));
        all.extend(referring(&self.queues, namespace, kind, name));
        all.extend(referring(&self.topics, namespace, kind, name));
        all.extend(referring(&self.functions, namespace, kind, name));
        all
    }

    /// A cycle of references through `kind`/`name`, spelled `Queue/a → Queue/b → Queue/a`.
    pub fn cycle(&self, kind: Kind, namespace: &str, name: &str) -> Option<String> {
        let path = cycle_through((kind, name.to_owned()), |k, n| {
            self.get(k, namespace, n)
                .map(|f| f.refs.into_iter().map(|r| (r.kind, r.name)).collect())
                .unwrap_or_default()
        })?;
        Some(
            path.iter()
                .map(|(k, n)| format!("{k}/{n}"))
                .collect::<Vec<_>>()
                .join(" → "),
        )
    }
}

/// A path of references from `start` back to itself (start repeated at the end), if one
/// exists. Depth-first over `edges`, visiting each node once, so it ends on any graph.
pub fn cycle_through(
    start: (Kind, String),
    edges: impl Fn(Kind, &str) -> Vec<(Kind, String)>,
) -> Option<Vec<(Kind, String)>> {
    let mut visited = std::collections::HashSet::new();
    // Each frame: a node and the edges of it still to try.
    let mut stack = vec![(start.clone(), edges(start.0, &start.1))];
    while let Some((_, next)) = stack.last_mut() {
        let Some(child) = next.pop() else {
            stack.pop();
            continue;
        };
        if child == start {
            let mut path: Vec<(Kind, String)> = stack.iter().map(|(n, _)| n.clone()).collect();
            path.push(start);
            return Some(path);
        }
        if visited.insert(child.clone()) {
            let grandchildren = edges(child.0, &child.1);
            stack.push((child, grandchildren));
        }
    }
    None
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
        // A dependency waiting on its own dependencies says so by reason alone: quoting its
        // message would nest every level of the chain into this one.
        Some(c) if c.reason.starts_with("Dependency") => Some(c.reason.clone()),
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
            refs: Vec::new(),
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
        assert_eq!(
            blocker(&found(Some(("False", "DependencyNotReady")), 1, 1)).as_deref(),
            Some("DependencyNotReady"),
            "a chain of waits must not nest its messages"
        );
    }

    fn graph(edges: &[(&str, &str)]) -> impl Fn(Kind, &str) -> Vec<(Kind, String)> {
        let edges: Vec<(String, String)> = edges.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        move |_, from| {
            edges
                .iter()
                .filter(|(a, _)| a == from)
                .map(|(_, b)| (Kind::Queue, b.clone()))
                .collect()
        }
    }

    #[test]
    fn cycles_are_found_through_the_start_only() {
        let g = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]);
        let path = cycle_through((Kind::Queue, "a".into()), &g).expect("a is in a cycle");
        let names: Vec<&str> = path.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "a"]);
        assert_eq!(
            cycle_through((Kind::Queue, "d".into()), &g),
            None,
            "d only leads into a cycle"
        );
        let chain = graph(&[("a", "b"), ("b", "c"), ("a", "c")]);
        assert_eq!(cycle_through((Kind::Queue, "a".into()), &chain), None);
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
