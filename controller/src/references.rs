//! References between CloudKit objects: every kind's watch cache, the graph of references
//! kept from the same watch events, and the resolution of a spec's references into the
//! outputs its desired state reads. An object waits (no cloud call) until everything it
//! references exists and is Ready at its current generation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cloudkit_crds::common::{Kind, ManagedStatus};
use cloudkit_crds::reason::Reason;
use cloudkit_crds::validation::FieldError;
use cloudkit_crds::{Bucket, Function, Managed, Queue, Reference, Table, Topic};
use cloudkit_reconcilers::Dependencies;
use futures::Stream;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::broadcast;

use crate::dag::{Graph, Key};
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
        /// When the watch saw it: dependents' unblock latency counts from here.
        at: Instant,
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

/// The graph every kind's announcer keeps, and reconciles read.
pub type SharedGraph = Arc<RwLock<Graph>>;

// A panic while the lock is held poisons it; the graph's updates never stop halfway short
// of running out of memory, so what it holds is still whole: read on rather than fail
// every reconcile from then on.
fn read(graph: &RwLock<Graph>) -> RwLockReadGuard<'_, Graph> {
    graph.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(graph: &RwLock<Graph>) -> RwLockWriteGuard<'_, Graph> {
    graph.write().unwrap_or_else(PoisonError::into_inner)
}

fn key_of<K: Managed>(o: &K, kind: Kind) -> Key {
    Key {
        kind,
        namespace: o.namespace().unwrap_or_default(),
        name: o.name_any(),
    }
}

/// How metrics name one object: `Kind/namespace/name`.
pub fn object_id(key: &Key) -> String {
    format!("{}/{}/{}", key.kind, key.namespace, key.name)
}

/// Tells the objects `refs` named that one referrer less holds them.
fn release(tx: &broadcast::Sender<Signal>, namespace: &str, refs: Vec<Reference>) {
    for r in refs {
        // No receiver only means no kind is running yet: nothing waits.
        let _ = tx.send(Signal::Released {
            kind: r.kind,
            namespace: namespace.to_owned(),
            name: r.name,
        });
    }
}

/// Watches one kind's events go by: keeps that kind's objects in `graph`, and signals the
/// other objects they concern. Objects seen for the first time (the initial list, a
/// restart) are only noted: every object is reconciled at start-up anyway.
pub fn announcer<K: Managed>(
    tx: broadcast::Sender<Signal>,
    kind: Kind,
    graph: SharedGraph,
) -> impl FnMut(&watcher::Event<K>) {
    let mut seen: HashMap<Key, Option<Published>> = HashMap::new();
    // The objects listed since the watch last (re)started.
    let mut listed: HashSet<Key> = HashSet::new();
    move |event: &watcher::Event<K>| match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            let key = key_of(o, kind);
            // Before any signal: the reconciles it starts read the graph.
            write(&graph).upsert(key.clone(), o.references());
            if matches!(event, watcher::Event::InitApply(_)) {
                listed.insert(key.clone());
            }
            let now = usable(o);
            if let Some(before) = seen.insert(key.clone(), now.clone())
                && now.is_some()
                && before != now
            {
                let _ = tx.send(Signal::Readied {
                    kind,
                    namespace: key.namespace,
                    name: key.name,
                    at: Instant::now(),
                });
            }
        }
        watcher::Event::Delete(o) => {
            let key = key_of(o, kind);
            write(&graph).remove(&key);
            seen.remove(&key);
            release(&tx, &key.namespace, o.references());
        }
        watcher::Event::Init => listed.clear(),
        watcher::Event::InitDone => {
            // Objects deleted while the watch was down get no Delete event: they are the
            // ones not listed again.
            let gone: Vec<(Key, Vec<Reference>)> = {
                let mut graph = write(&graph);
                let keys: Vec<Key> = graph
                    .keys()
                    .filter(|k| k.kind == kind && !listed.contains(*k))
                    .cloned()
                    .collect();
                keys.into_iter()
                    .filter_map(|k| graph.remove(&k).map(|refs| (k, refs)))
                    .collect()
            };
            listed = HashSet::new();
            for (key, refs) in gone {
                seen.remove(&key);
                release(&tx, &key.namespace, refs);
            }
        }
    }
}

/// What a broadcast receiver gets, as a stream; messages lost to a full channel are skipped
/// (each caller says why that is safe).
pub fn received<T: Clone + Send + 'static>(rx: broadcast::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(message) => return Some((message, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The objects of kind `K` a signal concerns, as reconcile triggers. `woken` hears of each
/// dependent a Readied signal wakes (`Kind/namespace/name`) and when its dependency turned Ready.
pub fn triggers<K: Managed>(
    rx: broadcast::Receiver<Signal>,
    graph: SharedGraph,
    kind: Kind,
    woken: impl Fn(String, Instant) + Send + 'static,
) -> impl Stream<Item = ObjectRef<K>> {
    // Missed signals are covered by the waiting objects' own recheck.
    let signals = received(rx);
    futures::StreamExt::flat_map(signals, move |signal| {
        let refs: Vec<ObjectRef<K>> = match signal {
            Signal::Readied {
                kind: of,
                namespace,
                name,
                at,
            } => {
                let dependents = read(&graph).dependents(&Key {
                    kind: of,
                    namespace,
                    name,
                });
                let mut keys: Vec<Key> = dependents
                    .into_iter()
                    .map(|d| d.key)
                    .filter(|k| k.kind == kind)
                    .collect();
                // Sorted: an object naming it in several fields comes once.
                keys.dedup();
                for k in &keys {
                    woken(object_id(k), at);
                }
                keys.iter()
                    .map(|k| ObjectRef::new(&k.name).within(&k.namespace))
                    .collect()
            }
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

/// The watch caches of every managed kind, filled by each kind's controller, and the graph
/// of their references.
#[derive(Clone)]
pub struct Stores {
    pub buckets: Store<Bucket>,
    pub tables: Store<Table>,
    pub queues: Store<Queue>,
    pub topics: Store<Topic>,
    pub functions: Store<Function>,
    graph: SharedGraph,
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

/// Every object of one kind in a store, with what it references.
fn entries<K: Managed>(store: &Store<K>, kind: Kind) -> impl Iterator<Item = (Key, Vec<Reference>)> {
    store
        .state()
        .into_iter()
        .map(move |o| (key_of(&*o, kind), o.references()))
}

fn users<'a, K: Managed>(
    store: &Store<K>,
    kind: Kind,
    namespace: &'a str,
    config: &'a str,
) -> impl Iterator<Item = String> + 'a {
    store
        .state()
        .into_iter()
        .filter(move |o| o.namespace().as_deref() == Some(namespace) && o.managed().provider_config_ref.name == config)
        .map(move |o| format!("{kind}/{}", o.name_any()))
}

impl Stores {
    /// The caches, and the graph of what they hold now. The controller's caches start empty:
    /// each kind's `announcer` then keeps the graph in step with its own.
    pub fn new(
        buckets: Store<Bucket>,
        tables: Store<Table>,
        queues: Store<Queue>,
        topics: Store<Topic>,
        functions: Store<Function>,
    ) -> Self {
        let (graph, _) = Graph::build(
            entries(&buckets, Kind::Bucket)
                .chain(entries(&tables, Kind::Table))
                .chain(entries(&queues, Kind::Queue))
                .chain(entries(&topics, Kind::Topic))
                .chain(entries(&functions, Kind::Function)),
        );
        Self {
            buckets,
            tables,
            queues,
            topics,
            functions,
            graph: Arc::new(RwLock::new(graph)),
        }
    }

    /// The graph, for the announcers to keep and the triggers to read.
    pub fn graph(&self) -> SharedGraph {
        self.graph.clone()
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Found> {
        match kind {
            Kind::Bucket => found(&self.buckets, namespace, name),
            Kind::Table => found(&self.tables, namespace, name),
            Kind::Queue => found(&self.queues, namespace, name),
            Kind::Topic => found(&self.topics, namespace, name),
            Kind::Function => found(&self.functions, namespace, name),
        }
    }

    /// Resolves once every kind's cache has its first full listing.
    pub async fn wait_until_ready(&self) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.buckets.wait_until_ready().await?;
        self.tables.wait_until_ready().await?;
        self.queues.wait_until_ready().await?;
        self.topics.wait_until_ready().await?;
        self.functions.wait_until_ready().await
    }

    /// The objects (any kind) in `namespace` whose `spec.providerConfigRef` names `config`,
    /// as `Bucket/assets`, sorted.
    pub fn users_of_provider_config(&self, namespace: &str, config: &str) -> Vec<String> {
        let mut users: Vec<String> = users(&self.buckets, Kind::Bucket, namespace, config)
            .chain(users(&self.tables, Kind::Table, namespace, config))
            .chain(users(&self.queues, Kind::Queue, namespace, config))
            .chain(users(&self.topics, Kind::Topic, namespace, config))
            .chain(users(&self.functions, Kind::Function, namespace, config))
            .collect();
        users.sort();
        users
    }

    /// Whether any object using the ProviderConfig is not Ready: someone a change of its
    /// credentials might help.
    pub fn provider_config_has_failing_users(&self, namespace: &str, config: &str) -> bool {
        fn failing<K: Managed>(store: &Store<K>, namespace: &str, config: &str) -> bool {
            store.state().iter().any(|o| {
                o.namespace().as_deref() == Some(namespace)
                    && o.managed().provider_config_ref.name == config
                    && status::condition(o.managed_status(), READY).is_none_or(|c| c.status != "True")
            })
        }
        failing(&self.buckets, namespace, config)
            || failing(&self.tables, namespace, config)
            || failing(&self.queues, namespace, config)
            || failing(&self.topics, namespace, config)
            || failing(&self.functions, namespace, config)
    }

    /// The objects (any kind, same namespace) whose specs reference `kind`/`name`, each
    /// with the field, e.g. `Function/f (spec.env[0].valueFrom)`.
    pub fn referrers(&self, kind: Kind, namespace: &str, name: &str) -> Vec<String> {
        let key = Key {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        read(&self.graph)
            .dependents(&key)
            .into_iter()
            .map(|d| format!("{} ({})", d.key, d.field))
            .collect()
    }

    /// A cycle of references through `kind`/`name`, spelled `Queue/a → Queue/b → Queue/a`.
    pub fn cycle(&self, kind: Kind, namespace: &str, name: &str) -> Option<String> {
        let key = Key {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let path = read(&self.graph).cycle_through(&key)?;
        Some(path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → "))
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
        Reason::DependencyNotReady
    } else {
        Reason::DependencyNotFound
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
    use kube::runtime::reflector;

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
        assert_eq!(
            blocker(&found(Some(("False", "DependencyNotReady")), 1, 1)).as_deref(),
            Some("DependencyNotReady"),
            "a chain of waits must not nest its messages"
        );
    }

    fn queue(name: &str, dead_letter: Option<&str>) -> Queue {
        let spec = match dead_letter {
            Some(dlq) => serde_json::json!({"deadLetter": {"queueRef": {"name": dlq}, "maxReceiveCount": 3}}),
            None => serde_json::json!({}),
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudkit.dev/v1alpha1",
            "kind": "Queue",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": spec,
        }))
        .expect("a valid Queue")
    }

    fn released(rx: &mut broadcast::Receiver<Signal>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|s| match s {
                Signal::Released { name, .. } => Some(name),
                Signal::Readied { .. } => None,
            })
            .collect()
    }

    /// The graph follows the watch events: cycles and referrers are read from it, and a
    /// restarted watch drops the objects it no longer lists.
    #[test]
    fn the_graph_follows_the_watch() {
        let stores = Stores::new(
            reflector::store().0,
            reflector::store().0,
            reflector::store().0,
            reflector::store().0,
            reflector::store().0,
        );
        let (tx, mut rx) = broadcast::channel(16);
        let mut announce = announcer::<Queue>(tx, Kind::Queue, stores.graph());
        announce(&watcher::Event::Init);
        announce(&watcher::Event::InitApply(queue("a", Some("b"))));
        announce(&watcher::Event::InitApply(queue("b", Some("a"))));
        announce(&watcher::Event::InitApply(queue("c", Some("a"))));
        announce(&watcher::Event::InitDone);
        assert_eq!(
            stores.cycle(Kind::Queue, "ns", "a").as_deref(),
            Some("Queue/a → Queue/b → Queue/a")
        );
        assert_eq!(stores.cycle(Kind::Queue, "ns", "c"), None);
        assert_eq!(
            stores.cycle(Kind::Queue, "other", "a"),
            None,
            "references are namespace-local"
        );
        assert_eq!(
            stores.referrers(Kind::Queue, "ns", "a"),
            [
                "Queue/b (spec.deadLetter.queueRef)",
                "Queue/c (spec.deadLetter.queueRef)"
            ]
        );

        announce(&watcher::Event::Delete(queue("c", Some("a"))));
        assert_eq!(released(&mut rx), ["a"]);
        assert_eq!(
            stores.referrers(Kind::Queue, "ns", "a"),
            ["Queue/b (spec.deadLetter.queueRef)"]
        );

        // b was deleted while the watch was down.
        announce(&watcher::Event::Init);
        announce(&watcher::Event::InitApply(queue("a", Some("b"))));
        announce(&watcher::Event::InitDone);
        assert_eq!(released(&mut rx), ["a"], "what b referenced is released");
        assert_eq!(stores.cycle(Kind::Queue, "ns", "a"), None);
        assert!(stores.referrers(Kind::Queue, "ns", "a").is_empty());
        assert_eq!(
            stores.referrers(Kind::Queue, "ns", "b"),
            ["Queue/a (spec.deadLetter.queueRef)"],
            "a still names b"
        );
        let keys: Vec<String> = read(&stores.graph).keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["Queue/a"]);
    }

    /// An object turning Ready wakes the objects of each kind that reference it, once each.
    #[tokio::test]
    async fn a_readied_object_wakes_its_dependents() {
        let graph = SharedGraph::default();
        let a = Key {
            kind: Kind::Queue,
            namespace: "ns".into(),
            name: "a".into(),
        };
        let both = vec![
            Reference::new(Kind::Queue, "a", "spec.deadLetter.queueRef"),
            Reference::new(Kind::Queue, "a", "spec.other"),
        ];
        write(&graph).upsert(
            Key {
                name: "b".into(),
                ..a.clone()
            },
            both,
        );
        write(&graph).upsert(
            Key {
                kind: Kind::Function,
                ..a.clone()
            },
            vec![Reference::new(Kind::Queue, "a", "spec.triggers[0].queueRef")],
        );
        let (tx, rx) = broadcast::channel(16);
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let woken = triggers::<Queue>(rx, graph, Kind::Queue, {
            let heard = heard.clone();
            move |object, _| heard.lock().expect("not poisoned").push(object)
        });
        tx.send(Signal::Readied {
            kind: a.kind,
            namespace: a.namespace,
            name: a.name,
            at: Instant::now(),
        })
        .expect("a receiver");
        drop(tx);
        let woken: Vec<ObjectRef<Queue>> = futures::StreamExt::collect(woken).await;
        assert_eq!(woken, [ObjectRef::new("b").within("ns")]);
        assert_eq!(*heard.lock().expect("not poisoned"), ["Queue/ns/b"]);
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
