//! The dependency graph of a set of CloudKit objects: which must be Ready before which,
//! in waves, and the cycles that make an order impossible. Pure: `cloudkit plan` and
//! `cloudkit graph` feed it manifests; references are namespace-local.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cloudkit_crds::Reference;
use cloudkit_crds::common::Kind;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

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

pub struct Graph {
    /// Edges point from a dependency to the objects that reference it.
    graph: DiGraph<Key, ()>,
    index: BTreeMap<Key, NodeIndex>,
    /// What each object references, by field.
    refs: BTreeMap<Key, Vec<Reference>>,
}

impl Graph {
    /// The graph of `objects` and their references; references to objects not among them
    /// are returned apart, and left out of the graph.
    pub fn build(objects: impl IntoIterator<Item = (Key, Vec<Reference>)>) -> (Self, Vec<Dangling>) {
        let objects: Vec<(Key, Vec<Reference>)> = objects.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for (key, _) in &objects {
            index.entry(key.clone()).or_insert_with(|| graph.add_node(key.clone()));
        }
        let mut dangling = Vec::new();
        for (key, refs) in &objects {
            for r in refs {
                let target = Key {
                    kind: r.kind,
                    namespace: key.namespace.clone(),
                    name: r.name.clone(),
                };
                match index.get(&target) {
                    Some(&dependency) => {
                        graph.update_edge(dependency, index[key], ());
                    }
                    None => dangling.push(Dangling {
                        from: key.clone(),
                        reference: r.clone(),
                    }),
                }
            }
        }
        let refs = objects.into_iter().collect();
        (Self { graph, index, refs }, dangling)
    }

    /// Every cycle, each spelled from its smallest member back to it.
    pub fn cycles(&self) -> Vec<Vec<Key>> {
        let mut cycles: Vec<Vec<Key>> = tarjan_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.graph.contains_edge(scc[0], scc[0]))
            .filter_map(|scc| {
                let members: BTreeSet<&Key> = scc.iter().map(|i| &self.graph[*i]).collect();
                let start = (*members.iter().next()?).clone();
                // Walk dependent → dependency inside the component back to the start.
                let path = crate::references::cycle_through((start.kind, start.name.clone()), |kind, name| {
                    let from = Key {
                        kind,
                        namespace: start.namespace.clone(),
                        name: name.to_owned(),
                    };
                    self.refs
                        .get(&from)
                        .into_iter()
                        .flatten()
                        .map(|r| (r.kind, r.name.clone()))
                        .filter(|(k, n)| {
                            members.contains(&Key {
                                kind: *k,
                                namespace: start.namespace.clone(),
                                name: n.clone(),
                            })
                        })
                        .collect()
                })?;
                Some(
                    path.into_iter()
                        .map(|(kind, name)| Key {
                            kind,
                            namespace: start.namespace.clone(),
                            name,
                        })
                        .collect(),
                )
            })
            .collect();
        cycles.sort();
        cycles
    }

    /// Creation order: wave 1 references nothing (in the graph), each later wave only what
    /// earlier ones hold. Deletion goes in reverse. `None` when there is a cycle.
    pub fn waves(&self) -> Option<Vec<Vec<Key>>> {
        let order = petgraph::algo::toposort(&self.graph, None).ok()?;
        let mut wave: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        for node in order {
            let level = self
                .graph
                .neighbors_directed(node, petgraph::Direction::Incoming)
                .map(|dependency| wave.get(&dependency).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            wave.insert(node, level);
        }
        let mut waves: Vec<Vec<Key>> = vec![Vec::new(); wave.values().max().map_or(0, |m| m + 1)];
        for (node, level) in wave {
            waves[level].push(self.graph[node].clone());
        }
        for w in &mut waves {
            w.sort();
        }
        Some(waves)
    }

    /// The objects `key` references that are in the graph, sorted.
    pub fn dependencies(&self, key: &Key) -> Vec<Key> {
        let Some(&node) = self.index.get(key) else {
            return Vec::new();
        };
        let mut deps: Vec<Key> = self
            .graph
            .neighbors_directed(node, petgraph::Direction::Incoming)
            .map(|d| self.graph[d].clone())
            .collect();
        deps.sort();
        deps
    }

    /// Every object, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.index.keys()
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
                assert_eq!(cycle.first(), cycle.last(), "a cycle ends where it starts");
                for pair in cycle.windows(2) {
                    let (a, b) = (&pair[0].name[1..], &pair[1].name[1..]);
                    let (a, b): (usize, usize) = (a.parse().expect("index"), b.parse().expect("index"));
                    assert!(edges.contains(&(a, b)), "round {round}: {a}→{b} is not an edge");
                }
            }
        }
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
}
