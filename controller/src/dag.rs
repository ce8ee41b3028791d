//! The dependency graph of CloudKit objects: which must be Ready before which, in waves,
//! and the cycles that make an order impossible. `cloudkit plan` and `cloudkit graph` build
//! it from manifests; the controller keeps one for the whole cluster, updated object by
//! object from its watch events. References are namespace-local.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use cloudkit_crds::Reference;
use cloudkit_crds::common::Kind;
use petgraph::Direction::Incoming;
use petgraph::algo::tarjan_scc;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

#[cfg(test)]
mod bench;

/// One object: `Kind/namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A reference to an object that is not in the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dangling {
    pub from: Key,
    pub reference: Reference,
}

/// An object that references another, and the field of its spec that does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependent {
    pub key: Key,
    pub field: String,
}

/// The object `r`, written in `from`'s spec, names: references are namespace-local.
fn target(from: &Key, r: &Reference) -> Key {
    Key {
        kind: r.kind,
        namespace: from.namespace.clone(),
        name: r.name.clone(),
    }
}

/// Whether `r` names `key` (the namespace is the referrer's own).
fn names(r: &Reference, key: &Key) -> bool {
    r.kind == key.kind && r.name == key.name
}

struct Object {
    node: NodeIndex,
    refs: Vec<Reference>,
}

/// Objects and what they reference, kept up to date one object at a time.
#[derive(Default)]
pub struct Graph {
    /// Edges point from a dependency to the objects that reference it; only objects present
    /// are nodes. Stable indices: removing one object leaves every other index valid.
    graph: StableDiGraph<Key, ()>,
    /// Every object present, with what it references in spec order.
    objects: BTreeMap<Key, Object>,
    /// Who references each key, present or not: the edges it gets when it is added.
    referrers: HashMap<Key, BTreeSet<Key>>,
}

impl Graph {
    /// The graph of `objects` and their references (the last entry of a key wins), and the
    /// references to objects not among them.
    pub fn build(objects: impl IntoIterator<Item = (Key, Vec<Reference>)>) -> (Self, Vec<Dangling>) {
        let mut graph = Self::default();
        for (key, refs) in objects {
            graph.upsert(key, refs);
        }
        let dangling = graph.dangling();
        (graph, dangling)
    }

    /// Adds `key`, or replaces what it references. A reference to an object not present
    /// is kept, and becomes an edge when that object is added.
    pub fn upsert(&mut self, key: Key, refs: Vec<Reference>) {
        let node = match self.objects.remove(&key) {
            // Most watch events are status writes: nothing to redo.
            Some(old) if old.refs == refs => {
                self.objects.insert(key, old);
                return;
            }
            Some(old) => {
                self.unregister(&key, &old.refs);
                // Its dependencies are read again below; its dependents keep their edges.
                let stale: Vec<EdgeIndex> = self.graph.edges_directed(old.node, Incoming).map(|e| e.id()).collect();
                for e in stale {
                    self.graph.remove_edge(e);
                }
                old.node
            }
            None => {
                let node = self.graph.add_node(key.clone());
                // Objects already naming this one depend on it from now on.
                for from in self.referrers.get(&key).into_iter().flatten() {
                    if let Some(o) = self.objects.get(from) {
                        self.graph.update_edge(node, o.node, ());
                    }
                }
                node
            }
        };
        for r in &refs {
            let to = target(&key, r);
            // `key` itself is out of `objects` until the end: a self-reference is found here.
            let dependency = if to == key {
                Some(node)
            } else {
                self.objects.get(&to).map(|o| o.node)
            };
            if let Some(dependency) = dependency {
                self.graph.update_edge(dependency, node, ());
            }
            self.referrers.entry(to).or_default().insert(key.clone());
        }
        self.objects.insert(key, Object { node, refs });
    }

    /// Takes `key` out, and returns what it referenced. References to it are kept,
    /// dangling, for when it comes back.
    pub fn remove(&mut self, key: &Key) -> Option<Vec<Reference>> {
        let old = self.objects.remove(key)?;
        self.unregister(key, &old.refs);
        self.graph.remove_node(old.node);
        Some(old.refs)
    }

    fn unregister(&mut self, key: &Key, refs: &[Reference]) {
        for r in refs {
            let to = target(key, r);
            if let Some(from) = self.referrers.get_mut(&to) {
                from.remove(key);
                if from.is_empty() {
                    self.referrers.remove(&to);
                }
            }
        }
    }

    /// References to objects not in the graph, by referring object, in spec order.
    pub fn dangling(&self) -> Vec<Dangling> {
        self.objects
            .iter()
            .flat_map(|(from, o)| {
                o.refs
                    .iter()
                    .filter(|r| !self.objects.contains_key(&target(from, r)))
                    .map(|r| Dangling {
                        from: from.clone(),
                        reference: r.clone(),
                    })
            })
            .collect()
    }

    /// The objects that reference `key`, whether it is present or not, each with the field
    /// that does; sorted by object.
    pub fn dependents(&self, key: &Key) -> Vec<Dependent> {
        let mut dependents = Vec::new();
        for from in self.referrers.get(key).into_iter().flatten() {
            for r in self.objects.get(from).into_iter().flat_map(|o| &o.refs) {
                if names(r, key) {
                    dependents.push(Dependent {
                        key: from.clone(),
                        field: r.field.clone(),
                    });
                }
            }
        }
        dependents
    }

    /// A path of references from `key` back to itself (`key` at both ends), if `key` is
    /// on a cycle.
    pub fn cycle_through(&self, key: &Key) -> Option<Vec<Key>> {
        let start = self.objects.get(key)?.node;
        let path = self.path_back(start, |_| true)?;
        Some(path.into_iter().map(|n| self.graph[n].clone()).collect())
    }

    /// Every cycle, each spelled from its smallest member back to it.
    pub fn cycles(&self) -> Vec<Vec<Key>> {
        let mut cycles: Vec<Vec<Key>> = tarjan_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.graph.contains_edge(scc[0], scc[0]))
            .filter_map(|scc| {
                let members: HashSet<NodeIndex> = scc.iter().copied().collect();
                let start = scc.iter().copied().min_by_key(|n| &self.graph[*n])?;
                let path = self.path_back(start, |n| members.contains(&n))?;
                Some(path.into_iter().map(|n| self.graph[n].clone()).collect())
            })
            .collect();
        cycles.sort();
        cycles
    }

    /// A path from `start` along references (to nodes `within` admits) back to `start`.
    /// Depth-first, visiting each node once, so it ends on any graph.
    fn path_back(&self, start: NodeIndex, within: impl Fn(NodeIndex) -> bool) -> Option<Vec<NodeIndex>> {
        // In spec order rather than edge order: the path must not depend on the order the
        // objects were added in.
        let dependencies = |n: NodeIndex| -> Vec<NodeIndex> {
            let from = &self.graph[n];
            self.objects
                .get(from)
                .into_iter()
                .flat_map(|o| &o.refs)
                .filter_map(|r| self.objects.get(&target(from, r)).map(|o| o.node))
                .filter(|d| within(*d))
                .collect()
        };
        let mut visited = HashSet::new();
        // Each frame: a node and the dependencies of it still to try.
        let mut stack = vec![(start, dependencies(start))];
        while let Some((_, next)) = stack.last_mut() {
            let Some(child) = next.pop() else {
                stack.pop();
                continue;
            };
            if child == start {
                let mut path: Vec<NodeIndex> = stack.iter().map(|(n, _)| *n).collect();
                path.push(start);
                return Some(path);
            }
            if visited.insert(child) {
                let grandchildren = dependencies(child);
                stack.push((child, grandchildren));
            }
        }
        None
    }

    /// Creation order: wave 1 references nothing (in the graph), each later wave only what
    /// earlier ones hold. Deletion goes in reverse. `None` when there is a cycle.
    pub fn waves(&self) -> Option<Vec<Vec<Key>>> {
        let order = petgraph::algo::toposort(&self.graph, None).ok()?;
        let mut wave: HashMap<NodeIndex, usize> = HashMap::with_capacity(order.len());
        let mut waves: Vec<Vec<Key>> = Vec::new();
        for node in order {
            let level = self
                .graph
                .neighbors_directed(node, Incoming)
                .map(|dependency| wave.get(&dependency).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            wave.insert(node, level);
            if waves.len() <= level {
                waves.resize_with(level + 1, Vec::new);
            }
            waves[level].push(self.graph[node].clone());
        }
        for w in &mut waves {
            w.sort();
        }
        Some(waves)
    }

    /// The objects `key` references that are in the graph, sorted.
    pub fn dependencies(&self, key: &Key) -> Vec<Key> {
        let Some(o) = self.objects.get(key) else {
            return Vec::new();
        };
        let mut deps: Vec<Key> = self
            .graph
            .neighbors_directed(o.node, Incoming)
            .map(|d| self.graph[d].clone())
            .collect();
        deps.sort();
        deps
    }

    /// Every object, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.objects.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            kind: Kind::Queue,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        // (a, b): a references b.
        Graph::build((0..n).map(|a| {
            let refs = edges
                .iter()
                .filter(|(from, _)| *from == a)
                .map(|(_, to)| Reference::new(Kind::Queue, &format!("q{to}"), "spec.deadLetter.queueRef"))
                .collect();
            (key(&format!("q{a}")), refs)
        }))
        .0
    }

    /// Brute force: is there a path of length ≥ 1 from `a` back to `a`?
    fn on_cycle(n: usize, edges: &[(usize, usize)], a: usize) -> bool {
        let mut seen = vec![false; n];
        let mut todo: Vec<usize> = edges.iter().filter(|(f, _)| *f == a).map(|(_, t)| *t).collect();
        while let Some(x) = todo.pop() {
            if x == a {
                return true;
            }
            if !std::mem::replace(&mut seen[x], true) {
                todo.extend(edges.iter().filter(|(f, _)| *f == x).map(|(_, t)| *t));
            }
        }
        false
    }

    /// Each step of `cycle` is an edge of `edges`.
    fn assert_path(cycle: &[Key], edges: &[(usize, usize)], round: usize) {
        assert_eq!(cycle.first(), cycle.last(), "a cycle ends where it starts");
        for pair in cycle.windows(2) {
            let (a, b) = (&pair[0].name[1..], &pair[1].name[1..]);
            let (a, b): (usize, usize) = (a.parse().expect("index"), b.parse().expect("index"));
            assert!(edges.contains(&(a, b)), "round {round}: {a}→{b} is not an edge");
        }
    }

    /// Random graphs: every order respects every edge, and a cycle is reported iff one exists.
    #[test]
    fn random_graphs_order_and_cycles() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..500 {
            let n = rng.usize(1..12);
            let acyclic = round % 2 == 0;
            let edges: Vec<(usize, usize)> = (0..rng.usize(0..n * 2))
                .map(|_| (rng.usize(..n), rng.usize(..n)))
                // Acyclic rounds only point from higher to lower numbers.
                .filter(|(a, b)| !acyclic || a > b)
                .collect();
            let g = graph(n, &edges);
            let has_cycle = (0..n).any(|a| on_cycle(n, &edges, a));
            assert_eq!(!g.cycles().is_empty(), has_cycle, "round {round}: {edges:?}");
            match g.waves() {
                None => assert!(has_cycle, "round {round}"),
                Some(waves) => {
                    let level: BTreeMap<String, usize> = waves
                        .iter()
                        .enumerate()
                        .flat_map(|(i, w)| w.iter().map(move |k| (k.name.clone(), i)))
                        .collect();
                    assert_eq!(level.len(), n);
                    for (a, b) in &edges {
                        assert!(
                            level[&format!("q{a}")] > level[&format!("q{b}")],
                            "round {round}: {a}→{b}"
                        );
                    }
                }
            }
            for cycle in g.cycles() {
                assert_path(&cycle, &edges, round);
            }
            for a in 0..n {
                let through = g.cycle_through(&key(&format!("q{a}")));
                assert_eq!(
                    through.is_some(),
                    on_cycle(n, &edges, a),
                    "round {round}: q{a} in {edges:?}"
                );
                if let Some(cycle) = through {
                    assert_eq!(cycle[0].name, format!("q{a}"));
                    assert_path(&cycle, &edges, round);
                }
            }
        }
    }

    #[test]
    fn cycles_are_found_through_the_start_only() {
        let g = graph(4, &[(0, 1), (1, 2), (2, 0), (3, 0)]);
        let path = g.cycle_through(&key("q0")).expect("q0 is in a cycle");
        let names: Vec<&str> = path.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["q0", "q1", "q2", "q0"]);
        assert_eq!(g.cycle_through(&key("q3")), None, "q3 only leads into a cycle");
        let chain = graph(3, &[(0, 1), (1, 2), (0, 2)]);
        assert_eq!(chain.cycle_through(&key("q0")), None);
        assert_eq!(chain.cycle_through(&key("absent")), None);
    }

    #[test]
    fn dangling_references_are_reported() {
        let (g, dangling) = Graph::build([(
            key("a"),
            vec![Reference::new(Kind::Queue, "missing", "spec.deadLetter.queueRef")],
        )]);
        assert_eq!(dangling.len(), 1);
        assert_eq!(g.waves().map(|w| w.len()), Some(1));
    }

    #[test]
    fn a_reference_becomes_an_edge_while_its_target_is_present() {
        let f = Key {
            kind: Kind::Function,
            namespace: "ns".into(),
            name: "f".into(),
        };
        let trigger = Reference::new(Kind::Queue, "q", "spec.triggers[0].queueRef");
        let mut g = Graph::default();
        g.upsert(f.clone(), vec![trigger.clone()]);
        assert_eq!(g.dangling().len(), 1);
        assert!(g.dependencies(&f).is_empty());

        g.upsert(key("q"), Vec::new());
        assert!(g.dangling().is_empty());
        assert_eq!(g.dependencies(&f), [key("q")]);
        let by_f = [Dependent {
            key: f.clone(),
            field: trigger.field.clone(),
        }];
        assert_eq!(g.dependents(&key("q")), by_f);
        let elsewhere = Key {
            namespace: "other".into(),
            ..key("q")
        };
        g.upsert(elsewhere.clone(), Vec::new());
        assert!(g.dependents(&elsewhere).is_empty(), "references are namespace-local");

        assert_eq!(g.remove(&key("q")), Some(Vec::new()));
        assert_eq!(
            g.dangling(),
            [Dangling {
                from: f.clone(),
                reference: trigger
            }]
        );
        assert_eq!(
            g.dependents(&key("q")),
            by_f,
            "the reference stays for when q comes back"
        );
        g.upsert(f.clone(), Vec::new());
        assert!(g.dependents(&key("q")).is_empty());
    }

    /// Every edge, as (dependency, dependent).
    fn edges(g: &Graph) -> BTreeSet<(Key, Key)> {
        let edges: BTreeSet<(Key, Key)> = g
            .graph
            .edge_indices()
            .filter_map(|e| g.graph.edge_endpoints(e))
            .map(|(from, to)| (g.graph[from].clone(), g.graph[to].clone()))
            .collect();
        assert_eq!(edges.len(), g.graph.edge_count(), "no edge twice");
        edges
    }

    /// Random sequences of upserts (new objects, changed and unchanged references) and
    /// removals (of referenced objects too, and of absent ones): after every step the graph
    /// kept up to date answers every query as one rebuilt from the objects present.
    #[test]
    fn incremental_updates_equal_a_rebuild() {
        let mut rng = fastrand::Rng::with_seed(11);
        let kinds = [Kind::Queue, Kind::Function];
        let names = ["a", "b", "c", "d", "e"];
        let mut universe = Vec::new();
        for namespace in ["ns1", "ns2"] {
            for kind in kinds {
                for name in names {
                    universe.push(Key {
                        kind,
                        namespace: namespace.into(),
                        name: name.into(),
                    });
                }
            }
        }
        let (mut with_cycle, mut without) = (0, 0);
        for round in 0..300 {
            let mut g = Graph::default();
            let mut present: BTreeMap<Key, Vec<Reference>> = BTreeMap::new();
            for step in 0..40 {
                let key = universe[rng.usize(..universe.len())].clone();
                match rng.u8(..8) {
                    0 | 1 => assert_eq!(g.remove(&key), present.remove(&key)),
                    // A status write: the same references again.
                    2 => {
                        let refs = present.get(&key).cloned().unwrap_or_default();
                        present.insert(key.clone(), refs.clone());
                        g.upsert(key, refs);
                    }
                    _ => {
                        let refs: Vec<Reference> = (0..rng.usize(0..4))
                            .map(|i| {
                                Reference::new(
                                    kinds[rng.usize(..kinds.len())],
                                    names[rng.usize(..names.len())],
                                    format!("spec.refs[{i}]"),
                                )
                            })
                            .collect();
                        present.insert(key.clone(), refs.clone());
                        g.upsert(key, refs);
                    }
                }
                let at = format!("round {round}, step {step}");
                let (rebuilt, dangling) = Graph::build(present.clone());
                assert_eq!(g.graph.node_count(), present.len(), "{at}");
                assert!(g.keys().eq(rebuilt.keys()), "{at}");
                assert_eq!(edges(&g), edges(&rebuilt), "{at}");
                assert_eq!(g.referrers, rebuilt.referrers, "{at}");
                assert_eq!(g.dangling(), dangling, "{at}");
                assert_eq!(g.cycles(), rebuilt.cycles(), "{at}");
                assert_eq!(g.waves(), rebuilt.waves(), "{at}");
                for k in &universe {
                    assert_eq!(g.dependents(k), rebuilt.dependents(k), "{at}: {k}");
                    assert_eq!(g.dependencies(k), rebuilt.dependencies(k), "{at}: {k}");
                    assert_eq!(g.cycle_through(k), rebuilt.cycle_through(k), "{at}: {k}");
                }
                if g.waves().is_some() {
                    without += 1;
                } else {
                    with_cycle += 1;
                }
            }
        }
        assert!(
            with_cycle > 1000 && without > 1000,
            "{with_cycle} steps with a cycle, {without} without"
        );
    }
}
