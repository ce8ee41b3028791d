//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use cloudkit_reconcilers::rate_budget::RateBudgets;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    pub kind: String,
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderConfigLabel {
    /// `namespace/name`.
    pub provider_config: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabel, Histogram>,
    cloud_calls: Family<CallLabels, Counter>,
    drift: Family<DriftLabels, Counter>,
    /// Objects whose drift is left in the cloud (`Drifted=True`), by `kind/namespace/name`.
    drifted: Mutex<std::collections::HashSet<String>>,
    drifted_objects: Gauge,
    unblock: Histogram,
    /// When each waiting object's dependency turned Ready, until its reconcile starts.
    woken: Mutex<HashMap<String, Instant>>,
    ready: AtomicBool,
    /// 1 while this replica holds the lease (or runs without an election), else 0.
    leader: Gauge,
    /// Whether replicas elect a leader (`--leader-elect`): `/readyz` then says which this is.
    electing: AtomicBool,
    budget_wait: Family<ProviderConfigLabel, Counter<f64, AtomicU64>>,
    budget_throttled: Family<ProviderConfigLabel, Counter>,
    budget_rate: Family<ProviderConfigLabel, Gauge<f64, AtomicU64>>,
    /// Read at each scrape for `budget_rate`: the rate recovers between events.
    budgets: OnceLock<Arc<RateBudgets>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cloudkit");
        let reconciles = Family::<KindLabel, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that did not reach Ready, by kind and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            duration.clone(),
        );
        let cloud_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "cloud_calls",
            "Requests sent to cloud APIs, retries included, by service and operation",
            cloud_calls.clone(),
        );
        let drift = Family::<DriftLabels, Counter>::default();
        registry.register(
            "drift_detected",
            "Changes made outside CloudKit found on cloud resources, by kind and provider",
            drift.clone(),
        );
        let drifted_objects = Gauge::default();
        registry.register(
            "drifted_objects",
            "Objects whose cloud resource differs from the manifest and is left so (Drifted=True)",
            drifted_objects.clone(),
        );
        // Fine around 1 s: the target is a dependent starting within 1 s, p99.
        let unblock = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "dependency_unblock_seconds",
            "Time from a dependency turning Ready (as the watch saw it) to the start of a dependent's reconcile",
            unblock.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (it holds the lease, or runs without an election), else 0",
            leader.clone(),
        );
        let budget_wait = Family::<ProviderConfigLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "rate_budget_wait_seconds",
            "Time reconciles were put off because their ProviderConfig's request budget was spent",
            budget_wait.clone(),
        );
        let budget_throttled = Family::<ProviderConfigLabel, Counter>::default();
        registry.register(
            "rate_budget_throttled",
            "Throttling answers from the cloud that slowed a ProviderConfig's request budget down",
            budget_throttled.clone(),
        );
        let budget_rate = Family::<ProviderConfigLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "rate_budget_requests_per_second",
            "A ProviderConfig's request budget now (absent: unlimited)",
            budget_rate.clone(),
        );
        Self {
            registry,
            budget_wait,
            budget_throttled,
            budget_rate,
            budgets: OnceLock::new(),
            reconciles,
            failures,
            duration,
            cloud_calls,
            drift,
            drifted: Mutex::new(Default::default()),
            drifted_objects,
            unblock,
            woken: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            leader,
            electing: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let label = KindLabel { kind: kind.to_owned() };
        self.reconciles.get_or_create(&label).inc();
        self.duration.get_or_create(&label).observe(took.as_secs_f64());
    }

    pub fn drift_detected(&self, kind: &str, provider: &str) {
        self.drift
            .get_or_create(&DriftLabels {
                kind: kind.to_owned(),
                provider: provider.to_owned(),
            })
            .inc();
    }

    /// Records whether `object` is drifted now.
    pub fn set_drifted(&self, object: &str, drifted: bool) {
        let mut set = self.drifted.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = if drifted {
            set.insert(object.to_owned())
        } else {
            set.remove(object)
        };
        if changed {
            self.drifted_objects.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        }
    }

    pub fn failed(&self, kind: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn cloud_call(&self, service: &str, operation: &str) {
        self.cloud_calls
            .get_or_create(&CallLabels {
                service: service.to_owned(),
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// `object` (`Kind/namespace/name`) waits for a dependency that turned Ready `at`; the
    /// earliest such moment counts until its reconcile starts.
    pub fn woken(&self, object: String, at: Instant) {
        self.woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(object)
            .or_insert(at);
    }

    /// `object`'s reconcile starts: if a dependency woke it, how long that took.
    pub fn reconcile_started(&self, object: &str) {
        let at = self.woken.lock().unwrap_or_else(PoisonError::into_inner).remove(object);
        if let Some(at) = at {
            self.unblock.observe(at.elapsed().as_secs_f64());
        }
    }

    /// Ready once the caches are filled and the controllers run.
    pub fn set_ready(&self) {
        if !self.electing.load(Ordering::Relaxed) {
            self.leader.set(1);
        }
        self.ready.store(true, Ordering::Relaxed);
    }

    /// A replica in an election is ready as a standby: it is doing its job, waiting.
    pub fn set_standby(&self) {
        self.electing.store(true, Ordering::Relaxed);
        self.leader.set(0);
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn set_leading(&self) {
        self.leader.set(1);
    }

    /// A reconcile on `provider_config` was put off for `wait`.
    pub fn budget_waited(&self, provider_config: &str, wait: Duration) {
        self.budget_wait
            .get_or_create(&ProviderConfigLabel {
                provider_config: provider_config.to_owned(),
            })
            .inc_by(wait.as_secs_f64());
    }

    pub fn budget_throttled(&self, provider_config: &str) {
        self.budget_throttled
            .get_or_create(&ProviderConfigLabel {
                provider_config: provider_config.to_owned(),
            })
            .inc();
    }

    /// The budgets whose rates each scrape reports.
    pub fn watch_budgets(&self, budgets: Arc<RateBudgets>) {
        let _ = self.budgets.set(budgets);
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        if let Some(budgets) = self.budgets.get() {
            self.budget_rate.clear();
            for (key, rate) in budgets.rates() {
                if let Some(rate) = rate {
                    self.budget_rate
                        .get_or_create(&ProviderConfigLabel { provider_config: key })
                        .set(rate);
                }
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Serves on an already bound listener, so a taken port fails start-up instead of leaving
/// a controller without probes.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app).await
}

async fn render(State(metrics): State<Arc<Metrics>>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let content_type = [(
        "content-type",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )];
    match metrics.render() {
        Ok(body) => (StatusCode::OK, content_type, body),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, content_type, String::new()),
    }
}

/// 200 once ready; with an election the body says whether this replica leads or stands by
/// (both are ready: a standby not Ready would stall a rolling update).
async fn ready(State(metrics): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if !metrics.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    let body = match (metrics.electing.load(Ordering::Relaxed), metrics.leader.get()) {
        (false, _) => "ok",
        (true, 1) => "leader",
        (true, _) => "standby",
    };
    (StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_kind_and_reason() {
        let m = Metrics::default();
        m.reconciled("Bucket", Duration::from_millis(20));
        m.failed("Bucket", "InvalidSpec");
        m.cloud_call("SQS", "GetQueueUrl");
        let text = m.render().expect("renders");
        assert!(text.contains("cloudkit_reconciles_total{kind=\"Bucket\"} 1"), "{text}");
        assert!(
            text.contains("cloudkit_reconcile_failures_total{kind=\"Bucket\",reason=\"InvalidSpec\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cloudkit_reconcile_duration_seconds_count{kind=\"Bucket\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cloudkit_cloud_calls_total{service=\"SQS\",operation=\"GetQueueUrl\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn unblock_latency_counts_from_the_first_wake_to_the_reconcile() {
        let m = Metrics::default();
        let long_ago = Instant::now() - Duration::from_secs(2);
        m.woken("Queue/ns/a".into(), long_ago);
        // A second dependency turning Ready does not restart the clock.
        m.woken("Queue/ns/a".into(), Instant::now());
        // Reconciles nothing woke are not counted.
        m.reconcile_started("Queue/ns/b");
        m.reconcile_started("Queue/ns/a");
        m.reconcile_started("Queue/ns/a");
        let text = m.render().expect("renders");
        assert!(text.contains("cloudkit_dependency_unblock_seconds_count 1"), "{text}");
        assert!(
            text.contains("cloudkit_dependency_unblock_seconds_bucket{le=\"1.5\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("cloudkit_dependency_unblock_seconds_bucket{le=\"3.0\"} 1"),
            "{text}"
        );
    }
}
