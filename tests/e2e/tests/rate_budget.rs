//! A request budget per ProviderConfig (`spec.rateLimit`), shared by every kind using it:
//! the controller's requests towards one ProviderConfig stay within its rate whatever mix of
//! kinds asks, another ProviderConfig's objects are not held up by it, and a throttling
//! answer from the cloud halves the rate, which then grows back; SNS's, named only in the
//! XML body of a 400, included.
//!
//! Requests are counted by the controller's own `cloudkit_cloud_calls_total` (every attempt),
//! sampled while the objects converge and resync.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloudkit_crds::{Bucket, Managed, Queue, Topic};
use cloudkit_e2e::proxy::Proxy;
use cloudkit_e2e::{Harness, eventually, ready_at_generation, ready_reason};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A metric with one `provider_config` label, or `None` when absent.
async fn budget_metric(h: &Harness, metric: &str, config: &str) -> Option<f64> {
    h.metric(&format!("{metric}{{provider_config=\"{}/{config}\"}}", h.ns))
        .await
}

#[tokio::test]
async fn one_budget_per_provider_config_shared_by_every_kind() {
    const RATE: u64 = 8;
    let h = Harness::new("budget").await;
    h.provider_config_with(
        "limited",
        &h.endpoint,
        json!({"rateLimit": {"requestsPerSecond": RATE, "burst": RATE}}),
    )
    .await;
    h.metrics_up().await;

    // Two kinds on the limited ProviderConfig at once; the other ("default") has no objects
    // yet, so every request counted until they are Ready is the limited one's.
    let before = h.cloud_call_total().await;
    let started = Instant::now();
    let buckets: Vec<String> = (0..6).map(|i| h.bucket_name(&format!("lim{i}"))).collect();
    let queues: Vec<String> = (0..4).map(|i| format!("{}-q{i}", h.ns)).collect();
    for name in &buckets {
        h.apply::<Bucket>(
            name,
            json!({"providerConfigRef": {"name": "limited"}, "tags": {"a": "b"}}),
        )
        .await;
    }
    for name in &queues {
        h.apply::<Queue>(
            name,
            json!({"providerConfigRef": {"name": "limited"}, "tags": {"a": "b"}}),
        )
        .await;
    }
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    loop {
        samples.push((started.elapsed(), h.cloud_call_total().await - before));
        let mut ready = 0;
        for name in &buckets {
            let b = h.api::<Bucket>().get(name).await.expect("get bucket");
            ready += usize::from(ready_at_generation(&b));
        }
        for name in &queues {
            let q = h.api::<Queue>().get(name).await.expect("get queue");
            ready += usize::from(ready_at_generation(&q));
        }
        if ready == buckets.len() + queues.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not all Ready in 120 s; log: {}",
            h.log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    let total = samples.last().map(|s| s.1).unwrap_or_default();
    // The most requests in any 2 s: a burst plus two seconds' rate, and what one reconcile
    // admitted at the edge of the window may add (a bucket's create is 10 requests).
    let mut busiest = 0;
    for (i, (t0, c0)) in samples.iter().enumerate() {
        for (t1, c1) in &samples[i..] {
            if *t1 - *t0 <= Duration::from_secs(2) {
                busiest = busiest.max(c1 - c0);
            }
        }
    }
    let floor = Duration::from_secs_f64((total.saturating_sub(RATE)) as f64 / RATE as f64);
    println!("limited: {total} requests to Ready in {took:?} (floor at {RATE}/s: {floor:?}); busiest 2 s: {busiest}");
    assert!(total >= 60, "expected the 10 objects to cost 60+ requests, saw {total}");
    assert!(
        busiest <= 2 * RATE + RATE + 10,
        "{busiest} requests in 2 s over a budget of {RATE}/s"
    );
    assert!(
        took >= floor.mul_f64(0.8),
        "{total} requests in {took:?}: faster than {RATE}/s allows"
    );
    let waited = budget_metric(&h, "cloudkit_rate_budget_wait_seconds_total", "limited")
        .await
        .unwrap_or_default();
    assert!(waited > 0.0, "reconciles were put off, so time waiting is counted");
    assert_eq!(
        budget_metric(&h, "cloudkit_rate_budget_requests_per_second", "limited").await,
        Some(RATE as f64)
    );

    // The limited objects keep resyncing every 2 s, more than 8 requests a second asks for:
    // its budget stays spent. Objects on another ProviderConfig are not held up by it.
    let started = Instant::now();
    let free: Vec<String> = (0..4).map(|i| h.bucket_name(&format!("free{i}"))).collect();
    for name in &free {
        h.apply::<Bucket>(name, json!({"tags": {"a": "b"}})).await;
    }
    for name in &free {
        h.wait::<Bucket>(name, "Ready", ready_at_generation).await;
    }
    let free_took = started.elapsed();
    println!("unlimited ProviderConfig: 4 buckets Ready in {free_took:?} while the limited one is spent");
    assert!(
        free_took < Duration::from_secs(8),
        "another ProviderConfig's budget held these up: {free_took:?}"
    );
    assert_eq!(
        budget_metric(&h, "cloudkit_rate_budget_requests_per_second", "default").await,
        None,
        "no rateLimit: no limit"
    );
    // Being put off is not a failure: the limited objects stay Ready throughout.
    for name in &buckets {
        let b = h.api::<Bucket>().get(name).await.expect("get bucket");
        assert!(
            ready_at_generation(&b),
            "{name} left Ready while put off: {:#?}; log: {}",
            b.status,
            h.log.display()
        );
    }
}

/// Answers every request with S3's 503 SlowDown, counting them.
async fn slow_down(client: tokio::net::TcpStream, answered: Arc<AtomicUsize>) {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    answer(client, answered, "503 Slow Down", body).await;
}

/// Answers every request as SNS does when throttling: a 400 that names `Throttling` in its
/// XML body only (no error header).
async fn sns_throttling(client: tokio::net::TcpStream, answered: Arc<AtomicUsize>) {
    let body = "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Sender</Type>\
                <Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>e2e</RequestId></ErrorResponse>";
    answer(client, answered, "400 Bad Request", body).await;
}

async fn answer(mut client: tokio::net::TcpStream, answered: Arc<AtomicUsize>, status: &str, body: &str) {
    let mut buf = [0u8; 16 * 1024];
    // One read takes the head (and a small body): enough to answer.
    if client.read(&mut buf).await.unwrap_or(0) == 0 {
        return;
    }
    answered.fetch_add(1, Ordering::SeqCst);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// SNS names throttling only in the XML of a 400: the budget hears it too.
#[tokio::test]
async fn sns_throttling_in_the_body_slows_the_budget() {
    let h = Harness::new("snsthrottle").await;
    let answered = Arc::new(AtomicUsize::new(0));
    let proxy = Proxy::start(h.moto_port(), {
        let answered = answered.clone();
        move |client, _| sns_throttling(client, answered.clone())
    })
    .await;
    h.provider_config_with("sns", &format!("http://127.0.0.1:{}", proxy.port), json!({}))
        .await;
    h.metrics_up().await;
    let topic = format!("{}-t", h.ns);
    h.apply::<Topic>(&topic, json!({"providerConfigRef": {"name": "sns"}}))
        .await;
    h.wait::<Topic>(&topic, "Ready", ready_at_generation).await;
    proxy.set_up(false);
    eventually("SNS's Throttling counted", || async {
        budget_metric(&h, "cloudkit_rate_budget_throttled_total", "sns")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    println!(
        "{} requests answered SNS Throttling; the budget slowed",
        answered.load(Ordering::SeqCst)
    );
    // What the SDK parses is the same answer: the Topic says the cloud throttled it.
    let t = h
        .wait::<Topic>(&topic, "Ready=False", |t| {
            ready_reason(t).as_deref() == Some("ProviderError")
        })
        .await;
    let message = cloudkit_e2e::condition(t.managed_status(), "Ready")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("Throttling"), "{message}");
    proxy.set_up(true);
    h.wait::<Topic>(&topic, "Ready", ready_at_generation).await;
}

#[tokio::test]
async fn throttling_answers_slow_the_whole_budget_which_then_recovers() {
    const RATE: f64 = 20.0;
    let h = Harness::new("throttle").await;
    let moto_port = h.moto_port();
    let answered = Arc::new(AtomicUsize::new(0));
    let proxy = Proxy::start(moto_port, {
        let answered = answered.clone();
        move |client, _| slow_down(client, answered.clone())
    })
    .await;
    h.provider_config_with(
        "throttled",
        &format!("http://127.0.0.1:{}", proxy.port),
        json!({"rateLimit": {"requestsPerSecond": RATE as u32}}),
    )
    .await;
    h.metrics_up().await;
    let bucket = h.bucket_name("thr");
    let queue = format!("{}-q", h.ns);
    h.apply::<Bucket>(&bucket, json!({"providerConfigRef": {"name": "throttled"}}))
        .await;
    h.apply::<Queue>(&queue, json!({"providerConfigRef": {"name": "throttled"}}))
        .await;
    h.wait::<Bucket>(&bucket, "Ready", ready_at_generation).await;
    h.wait::<Queue>(&queue, "Ready", ready_at_generation).await;
    assert_eq!(
        budget_metric(&h, "cloudkit_rate_budget_requests_per_second", "throttled").await,
        Some(RATE)
    );

    // The cloud says "slow down" to everything for a while.
    proxy.set_up(false);
    eventually("a throttling answer counted", || async {
        budget_metric(&h, "cloudkit_rate_budget_throttled_total", "throttled")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    let slowed = budget_metric(&h, "cloudkit_rate_budget_requests_per_second", "throttled")
        .await
        .expect("a limited budget has a rate");
    println!("rate after a throttling answer: {slowed:.1}/s (limit {RATE}/s)");
    assert!(slowed <= RATE / 2.0 + 1.0, "the rate was not halved: {slowed}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let throttles = budget_metric(&h, "cloudkit_rate_budget_throttled_total", "throttled")
        .await
        .unwrap_or_default();
    println!(
        "{} requests answered SlowDown; {throttles} slowed the budget",
        answered.load(Ordering::SeqCst)
    );

    // Back: both kinds are Ready again, and the rate grows back to the limit.
    proxy.set_up(true);
    eventually("the rate back at its limit", || async {
        budget_metric(&h, "cloudkit_rate_budget_requests_per_second", "throttled").await == Some(RATE)
    })
    .await;
    h.wait::<Bucket>(&bucket, "Ready", ready_at_generation).await;
    h.wait::<Queue>(&queue, "Ready", ready_at_generation).await;
}
