//! Figures for the controller's graph at the size of a large cluster: a full build, one
//! object's update, the creation order, the cycles, the memory. A benchmark that prints, not
//! a timed test; `scripts/bench.sh` runs it in a release build:
//! `cargo test --release -p cloudkit --bin cloudkit -- --ignored --nocapture --exact dag::bench::graph_of_10k_objects`

use std::time::{Duration, Instant};

use super::*;

const OBJECTS: usize = 10_000;
const NAMESPACES: usize = 4;
const SAMPLES: usize = 10_000;

/// Apps of five objects each: a Bucket for the code, a dead-letter Queue, a Queue that uses
/// it, a Function triggered by that Queue (its code in the Bucket, another app's Bucket in
/// its env) and a Topic that feeds the Queue and the Function.
fn cluster(rng: &mut fastrand::Rng) -> Vec<(Key, Vec<Reference>)> {
    let apps = OBJECTS / 5;
    let mut objects = Vec::with_capacity(OBJECTS);
    for app in 0..apps {
        let team = app % NAMESPACES;
        let key = |kind, name: String| Key {
            kind,
            namespace: format!("team-{team}"),
            name,
        };
        // Another app of the same namespace: references do not cross namespaces.
        let other = rng.usize(..apps / NAMESPACES) * NAMESPACES + team;
        objects.push((key(Kind::Bucket, format!("code-{app}")), Vec::new()));
        objects.push((key(Kind::Queue, format!("dlq-{app}")), Vec::new()));
        objects.push((
            key(Kind::Queue, format!("jobs-{app}")),
            vec![Reference::new(
                Kind::Queue,
                &format!("dlq-{app}"),
                "spec.deadLetter.queueRef",
            )],
        ));
        objects.push((
            key(Kind::Function, format!("worker-{app}")),
            vec![
                Reference::new(Kind::Bucket, &format!("code-{other}"), "spec.env[0].valueFrom"),
                Reference::new(Kind::Bucket, &format!("code-{app}"), "spec.code.object.bucket"),
                Reference::new(Kind::Queue, &format!("jobs-{app}"), "spec.triggers[0].queueRef"),
            ],
        ));
        objects.push((
            key(Kind::Topic, format!("events-{app}")),
            vec![
                Reference::new(Kind::Queue, &format!("jobs-{app}"), "spec.subscriptions[0].queueRef"),
                Reference::new(
                    Kind::Function,
                    &format!("worker-{app}"),
                    "spec.subscriptions[1].functionRef",
                ),
            ],
        ));
    }
    objects
}

/// Resident memory of this process in KiB, from /proc (Linux only).
fn rss_kib() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

fn mean_p99(mut times: Vec<Duration>) -> String {
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(u32::MAX);
    let p99 = times.get(times.len() * 99 / 100).copied().unwrap_or_default();
    format!("mean {mean:.2?}, p99 {p99:.2?}")
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

#[test]
#[ignore = "a benchmark that prints figures: scripts/bench.sh runs it in a release build"]
fn graph_of_10k_objects() {
    let mut rng = fastrand::Rng::with_seed(1);
    let objects = cluster(&mut rng);
    let references: usize = objects.iter().map(|(_, refs)| refs.len()).sum();
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("graph bench: {OBJECTS} objects in {NAMESPACES} namespaces, {references} references, {profile} build");

    let input = objects.clone();
    let rss_before = rss_kib();
    let ((mut graph, dangling), first) = timed(|| Graph::build(input));
    let memory = match (rss_before, rss_kib()) {
        (Some(before), Some(after)) => format!("{:.1} MiB", (after - before) as f64 / 1024.0),
        _ => "unknown (no /proc)".into(),
    };
    assert!(dangling.is_empty(), "every reference names an object of the cluster");
    let builds: Vec<Duration> = (0..5)
        .map(|_| {
            let input = objects.clone();
            timed(|| Graph::build(input)).1
        })
        .collect();
    println!(
        "graph bench: full build {first:.2?} (first), {:.2?} (median of 5); memory +{memory} RSS",
        median(builds)
    );

    // One Function's env now names another Bucket of its namespace.
    let functions: Vec<&Key> = objects
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.kind == Kind::Function)
        .collect();
    let (mut changed, mut unchanged) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let key = functions[rng.usize(..functions.len())].clone();
        let mut refs = graph.objects.get(&key).map(|o| o.refs.clone()).unwrap_or_default();
        let other = rng.usize(..OBJECTS / 5 / NAMESPACES) * NAMESPACES;
        let team: usize = key.namespace["team-".len()..].parse().expect("a team namespace");
        refs[0] = Reference::new(Kind::Bucket, &format!("code-{}", other + team), "spec.env[0].valueFrom");
        changed.push(timed(|| graph.upsert(key.clone(), refs)).1);
        // A status write: the same references again.
        let again = functions[rng.usize(..functions.len())].clone();
        let same = graph.objects.get(&again).map(|o| o.refs.clone()).unwrap_or_default();
        unchanged.push(timed(|| graph.upsert(again, same)).1);
    }
    println!(
        "graph bench: upsert, references changed: {} ({SAMPLES} times)",
        mean_p99(changed)
    );
    println!(
        "graph bench: upsert, references unchanged (a status write): {} ({SAMPLES} times)",
        mean_p99(unchanged)
    );

    // Any object goes and comes back: its dependents' edges go and come back with it.
    let (mut removals, mut additions) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let key = &objects[rng.usize(..objects.len())].0;
        let (refs, took) = timed(|| graph.remove(key));
        removals.push(took);
        let refs = refs.expect("the object is present");
        additions.push(timed(|| graph.upsert(key.clone(), refs)).1);
    }
    println!(
        "graph bench: remove: {}; add back: {} ({SAMPLES} times)",
        mean_p99(removals),
        mean_p99(additions)
    );

    let waves = median((0..5).map(|_| timed(|| graph.waves()).1).collect());
    let cycles = median((0..5).map(|_| timed(|| graph.cycles()).1).collect());
    let order = graph.waves().expect("the cluster has no cycle");
    println!(
        "graph bench: creation order {waves:.2?} ({} waves), all cycles {cycles:.2?} (median of 5)",
        order.len()
    );
    let (mut through, mut dependents) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let key = &objects[rng.usize(..objects.len())].0;
        through.push(timed(|| graph.cycle_through(key)).1);
        dependents.push(timed(|| graph.dependents(key)).1);
    }
    println!(
        "graph bench: cycle through one object: {}; dependents of one object: {} ({SAMPLES} times)",
        mean_p99(through),
        mean_p99(dependents)
    );

    // After 30,000 updates the graph kept up to date is still the one a rebuild gives.
    let present: Vec<(Key, Vec<Reference>)> = graph.objects.iter().map(|(k, o)| (k.clone(), o.refs.clone())).collect();
    let (rebuilt, _) = Graph::build(present);
    assert_eq!(graph.graph.edge_count(), rebuilt.graph.edge_count());
    assert_eq!(graph.waves(), rebuilt.waves());
}
