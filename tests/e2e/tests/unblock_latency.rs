//! How soon objects waiting for a dependency go on once it turns Ready: N queues name one
//! dead-letter queue that does not exist yet; then it is created. Prints p50/p99/max of the
//! time from the dependency's Ready to each dependent's first status change and to its
//! Ready, as a client watching the apiserver sees them (upper bounds on when their
//! reconciles start: they include their own cloud calls), and the controller's own
//! `cloudkit_dependency_unblock_seconds` (the dependency's Ready seen by the watch → the
//! dependent's reconcile starting). N is `CLOUDKIT_BENCH_DEPENDENTS` (default 20;
//! `scripts/bench.sh` uses 100). Checks that all go Ready and that every dependent was
//! woken by the dependency (not by a recheck timer); the figures are for reading.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cloudkit_crds::Queue;
use cloudkit_e2e::{Harness, ready_at_generation, ready_reason};
use futures::TryStreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

#[tokio::test]
async fn dependents_go_on_when_their_dependency_turns_ready() {
    let n: usize = std::env::var("CLOUDKIT_BENCH_DEPENDENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let h = Harness::new("unblock").await;
    let dlq = h.bucket_name("shared-dlq");
    let names: Vec<String> = (0..n).map(|i| h.bucket_name(&format!("d{i}"))).collect();
    for name in &names {
        h.apply::<Queue>(
            name,
            json!({"deadLetter": {"queueRef": {"name": dlq}, "maxReceiveCount": 2}}),
        )
        .await;
    }
    for name in &names {
        h.wait(name, "DependencyNotFound", |q: &Queue| {
            ready_reason(q).as_deref() == Some("DependencyNotFound")
        })
        .await;
    }

    // Watch before creating the dependency, and note when each object is first seen Ready.
    let events = watcher(h.api::<Queue>(), watcher::Config::default()).applied_objects();
    let started = Instant::now();
    h.apply::<Queue>(&dlq, json!({})).await;
    let mut ready_at: BTreeMap<String, Duration> = BTreeMap::new();
    // When each dependent's status first moves on from waiting: its reconcile has started
    // and made at most one cloud call (the look before creating).
    let mut started_at: BTreeMap<String, Duration> = BTreeMap::new();
    let mut events = std::pin::pin!(events);
    let deadline = Duration::from_secs(120);
    while ready_at.len() < n + 1 {
        let next = tokio::time::timeout(deadline.saturating_sub(started.elapsed()), events.try_next()).await;
        let Ok(Ok(Some(q))) = next else {
            panic!(
                "only {} of {} queues Ready after {:?}; controller log: {}",
                ready_at.len(),
                n + 1,
                started.elapsed(),
                h.log.display()
            );
        };
        let name = q.metadata.name.clone().unwrap_or_default();
        if ready_reason(&q).as_deref() != Some("DependencyNotFound") {
            started_at.entry(name).or_insert(started.elapsed());
        }
        if ready_at_generation(&q) {
            ready_at
                .entry(q.metadata.name.clone().unwrap_or_default())
                .or_insert(started.elapsed());
        }
    }
    let base = ready_at[&dlq];
    for (what, at) in [("reconcile started", &started_at), ("Ready", &ready_at)] {
        let mut lags: Vec<Duration> = names.iter().map(|n| at[n].saturating_sub(base)).collect();
        lags.sort();
        let pick = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
        println!(
            "unblock latency, {n} dependents, dependency Ready → dependent {what}: p50 {:?}, p99 {:?}, max {:?}",
            pick(0.50),
            pick(0.99),
            lags[lags.len() - 1]
        );
    }

    let buckets = h.histogram("cloudkit_dependency_unblock_seconds").await;
    let count = buckets.last().map_or(0, |(_, c)| *c);
    // At least: a dependency whose outputs change again wakes its dependents again.
    assert!(
        count as usize >= n,
        "every dependent's reconcile was woken by its dependency: {buckets:?}"
    );
    let within = |secs: f64| buckets.iter().find(|(le, _)| *le >= secs).map_or(0, |(_, c)| *c);
    // The smallest bucket bound holding 99 % (and 50 %) of the dependents.
    let bound = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c as f64 >= q * count as f64)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    println!(
        "unblock latency, {n} dependents, dependency Ready → dependent reconcile started (controller histogram): \
         p50 ≤ {}s, p99 ≤ {}s, {:.1}% within 1 s",
        bound(0.50),
        bound(0.99),
        100.0 * within(1.0) as f64 / count as f64
    );
}
