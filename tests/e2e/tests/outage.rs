//! Outages: the cloud unreachable for a minute (`CLOUDKIT_E2E_OUTAGE_SECS`, default 60),
//! then back. Every object goes `Ready=False` with a transient reason and `Reconciling=True`
//! (never `Stalled` before `--stall-after`), retries go on with a growing, capped backoff,
//! and after the restore everything is Ready again at its generation with no manual step,
//! and no cloud resource was made twice.
//!
//! The test runs a moto of its own (the shared one serves the other tests) behind a TCP
//! proxy it controls. Stopping the proxy instead of moto keeps moto's state (it lives in
//! memory), so "no duplicate" is checked against the resources made before the outage.
//! While down, the proxy accepts each connection, reads the request (to learn which object
//! it was for), and closes it unanswered: every attempt is counted and timed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use cloudkit_crds::common::ManagedStatus;
use cloudkit_crds::{Bucket, Managed, Queue};
use cloudkit_e2e::{Harness, condition, http_get};
use kube::ResourceExt;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The retry backoff's ceiling (docs/design.md, "Errors": 2 s doubling to 5 min).
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The controller's default `--stall-after`; the harness starts it without the flag.
const STALL_AFTER: Duration = Duration::from_secs(300);
/// Every AWS call with its retries is bounded by the controller's operation timeout.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The SDK's standard retry mode: at most this many attempts per call.
const SDK_ATTEMPTS: usize = 3;
/// `scripts/dev-env.sh` pins it: `scripts/moto_server.py` patches a moto internal.
const MOTO_VERSION: &str = "5.2.5";

/// How long the cloud is unreachable: `CLOUDKIT_E2E_OUTAGE_SECS`, default 60 s (the issue's).
fn outage_length() -> Duration {
    let secs = std::env::var("CLOUDKIT_E2E_OUTAGE_SECS")
        .ok()
        .map(|s| s.parse().expect("CLOUDKIT_E2E_OUTAGE_SECS is a number of seconds"))
        .unwrap_or(60);
    Duration::from_secs(secs)
}

// --- a moto of our own -----------------------------------------------------------------

/// moto started the way `scripts/dev-env.sh` starts it, on a free loopback port.
struct Moto {
    child: Child,
    port: u16,
    url: String,
    log: PathBuf,
}

/// A python that runs moto's server: `python3` if it has the pinned moto, else the venv
/// `scripts/dev-env.sh up` installs under `$CLOUDKIT_CACHE` (default ~/.cache/cloudkit).
fn moto_python() -> PathBuf {
    let usable = |py: &PathBuf| {
        Command::new(py)
            .args([
                "-c",
                &format!("import sys, moto, moto.server; sys.exit(moto.__version__ != '{MOTO_VERSION}')"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if usable(&system) {
        return system;
    }
    let cache = std::env::var_os("CLOUDKIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/cloudkit"));
    let venv = cache.join("venv/bin/python");
    assert!(
        usable(&venv),
        "no python with moto {MOTO_VERSION} (tried python3 and {}): run scripts/dev-env.sh up",
        venv.display()
    );
    venv
}

impl Moto {
    async fn start(tag: &str) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto_server.py");
        assert!(script.exists(), "{} is missing", script.display());
        let python = moto_python();
        // A free port now; taken by moto a moment later (as the harness does for metrics).
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let log = std::env::temp_dir().join(format!("cloudkit-{tag}-moto.log"));
        let out = std::fs::File::create(&log).expect("moto log file");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("log handle")))
            .stderr(Stdio::from(out))
            // Its own process group, as dev-env.sh's setsid: nothing of ours reaches it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{} {} starts: {e}", python.display(), script.display()));
        let started = Instant::now();
        while http_get(port, "/moto-api/").await.0 != 200 {
            if let Ok(Some(exit)) = child.try_wait() {
                panic!("moto exited during startup ({exit}); log: {}", log.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto not ready on port {port} after 60 s; log: {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// S3 and SQS clients straight on our moto (not through the proxy), to check the cloud.
async fn cloud_clients(endpoint: &str) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "e2e"))
        .http_client(http)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    (s3, aws_sdk_sqs::Client::new(&sdk))
}

// --- the proxy that makes the cloud unreachable ----------------------------------------

/// A connection the proxy turned away while down: when, and the request it carried.
struct Attempt {
    at: Instant,
    request: String,
}

/// The shared proxy in front of moto; while down, it reads each request it turns away and
/// records it.
struct Proxy {
    url: String,
    inner: cloudkit_e2e::proxy::Proxy,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        let inner =
            cloudkit_e2e::proxy::Proxy::start(upstream, move |client, at| turn_away(client, at, seen.clone())).await;
        Self {
            url: format!("http://127.0.0.1:{}", inner.port),
            inner,
            attempts,
        }
    }

    fn set_up(&self, up: bool) {
        self.inner.set_up(up);
    }

    /// The attempts turned away so far, oldest first, as (when, request text).
    fn attempts(&self) -> Vec<(Instant, String)> {
        let mut all: Vec<_> = self
            .attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| (a.at, a.request.clone()))
            .collect();
        all.sort_by_key(|(at, _)| *at);
        all
    }
}

async fn turn_away(mut client: TcpStream, at: Instant, attempts: Arc<Mutex<Vec<Attempt>>>) {
    let request = read_request(&mut client).await;
    attempts.lock().unwrap_or_else(|p| p.into_inner()).push(Attempt {
        at,
        request: String::from_utf8_lossy(&request).into_owned(),
    });
    drop(client);
}

/// One HTTP/1.1 request (head and Content-Length body), or what came within 3 s.
async fn read_request(socket: &mut TcpStream) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        if let Some(end) = head_end
            && buf.len() >= end + content_length(&buf[..end])
        {
            return buf;
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return buf,
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

// --- the objects, as seen in the cluster -----------------------------------------------

/// One object's state at a poll.
#[derive(Clone, Debug)]
struct Snap {
    /// `Kind/name`.
    id: String,
    name: String,
    generation: Option<i64>,
    status: Option<ManagedStatus>,
    annotations: BTreeMap<String, String>,
}

impl Snap {
    fn condition(&self, type_: &str) -> Option<(&str, &str, &str)> {
        condition(self.status.as_ref(), type_)
            .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_deref().unwrap_or("")))
    }

    fn is(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|(s, _, _)| s == "True")
    }

    fn ready_reason(&self) -> &str {
        self.condition("Ready").map(|(_, r, _)| r).unwrap_or("")
    }

    fn ready_at_generation(&self) -> bool {
        self.is("Ready") && self.status.as_ref().and_then(|s| s.observed_generation) == self.generation
    }

    /// One line for reports: Ready/Reconciling/Stalled, reason, generation.
    fn summary(&self) -> String {
        let c = |t| self.condition(t).map(|(s, _, _)| s).unwrap_or("-");
        format!(
            "{}: Ready={} ({}) Reconciling={} Stalled={} generation {:?} observed {:?}: {}",
            self.id,
            c("Ready"),
            self.ready_reason(),
            c("Reconciling"),
            c("Stalled"),
            self.generation,
            self.status.as_ref().and_then(|s| s.observed_generation),
            self.condition("Ready").map(|(_, _, m)| m).unwrap_or("")
        )
    }
}

async fn snaps_of<K: Managed>(h: &Harness) -> Vec<Snap> {
    let kind = K::kind(&());
    h.api::<K>()
        .list(&Default::default())
        .await
        .expect("list objects")
        .items
        .into_iter()
        .map(|o| Snap {
            id: format!("{kind}/{}", o.name_any()),
            name: o.name_any(),
            generation: o.meta().generation,
            status: o.managed_status().cloned(),
            annotations: o.annotations().clone(),
        })
        .collect()
}

/// Every Bucket and Queue in the test's namespace, by `Kind/name`.
async fn snapshot(h: &Harness) -> BTreeMap<String, Snap> {
    let mut all = snaps_of::<Bucket>(h).await;
    all.extend(snaps_of::<Queue>(h).await);
    all.into_iter().map(|s| (s.id.clone(), s)).collect()
}

/// Polls until every object satisfies `done` or `limit` passes: when (since `from`) each
/// first did, and the last snapshot. `watch` sees every snapshot, for invariants.
async fn wait_all(
    h: &Harness,
    ids: &[String],
    from: Instant,
    limit: Duration,
    done: impl Fn(&Snap) -> bool,
    mut watch: impl FnMut(&BTreeMap<String, Snap>),
) -> (BTreeMap<String, Duration>, BTreeMap<String, Snap>) {
    let started = Instant::now();
    let mut when = BTreeMap::new();
    loop {
        let snaps = snapshot(h).await;
        watch(&snaps);
        for id in ids {
            if !when.contains_key(id) && snaps.get(id).is_some_and(&done) {
                when.insert(id.clone(), from.elapsed());
            }
        }
        if when.len() == ids.len() || started.elapsed() > limit {
            return (when, snaps);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A metric family from the controller's /metrics, by its label text.
async fn metric(h: &Harness, family: &str) -> BTreeMap<String, f64> {
    let (_, body) = h.http_get("/metrics").await;
    body.lines()
        .filter_map(|line| line.strip_prefix(family))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// Create calls the controller has attempted (any service).
fn creates(calls: &BTreeMap<String, f64>) -> f64 {
    calls
        .iter()
        .filter(|(labels, _)| labels.contains("operation=\"Create"))
        .map(|(_, v)| v)
        .sum()
}

/// The controller's log lines that mention `needle`, the last `n` of them.
fn log_lines(h: &Harness, needle: &str, n: usize) -> String {
    let text = std::fs::read_to_string(&h.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cloud_then_back_heals_without_duplicates() {
    let outage = outage_length();
    let h = Harness::new("outage").await;
    let moto = Moto::start(&h.ns).await;
    let proxy = Proxy::start(moto.port).await;
    let (s3, sqs) = cloud_clients(&moto.url).await;
    h.provider_config("outage", &proxy.url).await;
    println!(
        "outage test: namespace {}, moto {} (log {}), proxy {}, controller log {}",
        h.ns,
        moto.url,
        moto.log.display(),
        proxy.url,
        h.log.display()
    );

    // --- before: several objects on the proxied cloud, all Ready -------------------------
    let on_outage = json!({"name": "outage"});
    let buckets: Vec<String> = ["assets", "logs", "media"].iter().map(|s| h.bucket_name(s)).collect();
    let queues: Vec<String> = ["orders", "events", "dead", "work"]
        .iter()
        .map(|s| h.bucket_name(s))
        .collect();
    let (dead, work) = (&queues[2], &queues[3]);
    for b in &buckets {
        h.apply::<Bucket>(b, json!({"providerConfigRef": on_outage, "tags": {"phase": "before"}}))
            .await;
    }
    for q in &queues {
        let mut spec = json!({"providerConfigRef": on_outage, "tags": {"phase": "before"}});
        if q == work {
            spec["deadLetter"] = json!({"queueRef": {"name": dead}, "maxReceiveCount": 3});
        }
        h.apply::<Queue>(q, spec).await;
    }
    let ids: Vec<String> = buckets
        .iter()
        .map(|b| format!("Bucket/{b}"))
        .chain(queues.iter().map(|q| format!("Queue/{q}")))
        .collect();
    let created_at = Instant::now();
    let (ready, before) = wait_all(
        &h,
        &ids,
        created_at,
        Duration::from_secs(120),
        Snap::ready_at_generation,
        |_| {},
    )
    .await;
    assert_eq!(
        ready.len(),
        ids.len(),
        "not all Ready before the outage:\n{}\ncontroller log: {}",
        before.values().map(Snap::summary).collect::<Vec<_>>().join("\n"),
        h.log.display()
    );
    println!("all {} objects Ready in {}", ids.len(), secs(created_at.elapsed()));
    let calls_before = metric(&h, "cloudkit_cloud_calls_total").await;
    let failures_before = metric(&h, "cloudkit_reconcile_failures_total").await;
    assert_eq!(
        creates(&calls_before),
        ids.len() as f64,
        "one create call per object: {calls_before:#?}"
    );

    let mut problems: Vec<String> = Vec::new();
    // Stalled before --stall-after (counted from the outage's start) is a bug at any point.
    let mut stalled_seen: BTreeMap<String, String> = BTreeMap::new();

    // --- the outage ---------------------------------------------------------------------
    proxy.set_up(false);
    let t0 = Instant::now();
    println!("outage: cloud unreachable for {}", secs(outage));
    let stall_check = |snaps: &BTreeMap<String, Snap>, seen: &mut BTreeMap<String, String>| {
        if t0.elapsed() < STALL_AFTER {
            for s in snaps.values().filter(|s| s.is("Stalled")) {
                seen.entry(s.id.clone())
                    .or_insert_with(|| format!("{} at {} into the outage", s.summary(), secs(t0.elapsed())));
            }
        }
    };
    let (went_down, snaps) = wait_all(
        &h,
        &ids,
        t0,
        Duration::from_secs(60).min(outage),
        |s| !s.is("Ready") && s.is("Reconciling"),
        |snaps| stall_check(snaps, &mut stalled_seen),
    )
    .await;
    for id in &ids {
        match went_down.get(id) {
            Some(after) => println!(
                "  {id}: Ready=False after {} ({})",
                secs(*after),
                snaps[id].ready_reason()
            ),
            None => problems.push(format!(
                "{} did not go Ready=False/Reconciling=True within {} of the outage",
                snaps[id].summary(),
                secs(Duration::from_secs(60).min(outage))
            )),
        }
    }

    // A spec change during the outage: its reconcile must reach the cloud, and fails.
    let (changed_bucket, changed_queue) = (&buckets[0], &queues[0]);
    h.merge_spec::<Bucket>(changed_bucket, json!({"tags": {"phase": "during-outage"}}))
        .await;
    h.merge_spec::<Queue>(changed_queue, json!({"tags": {"phase": "during-outage"}}))
        .await;
    let changed = [format!("Bucket/{changed_bucket}"), format!("Queue/{changed_queue}")];
    let change_at = t0.elapsed();
    let remaining = outage.saturating_sub(t0.elapsed());
    let (noticed, snaps) = wait_all(
        &h,
        &changed,
        t0,
        remaining.min(Duration::from_secs(30)),
        |s| {
            s.generation == Some(2)
                && s.status.as_ref().and_then(|st| st.observed_generation) == Some(2)
                && !s.is("Ready")
                && s.is("Reconciling")
        },
        |snaps| stall_check(snaps, &mut stalled_seen),
    )
    .await;
    for id in &changed {
        match noticed.get(id) {
            Some(at) => println!(
                "  {id}: spec changed at {}, generation 2 failing ({}) at {}",
                secs(change_at),
                snaps[id].ready_reason(),
                secs(*at)
            ),
            None => problems.push(format!(
                "{}: the generation changed during the outage was not reported as failing",
                snaps[id].summary()
            )),
        }
    }

    // Hold the outage, looking every half second.
    let (_, at_end) = wait_all(
        &h,
        &ids,
        t0,
        outage.saturating_sub(t0.elapsed()),
        |_| false,
        |snaps| stall_check(snaps, &mut stalled_seen),
    )
    .await;
    let attempts = proxy.attempts();
    let calls_during = delta(&metric(&h, "cloudkit_cloud_calls_total").await, &calls_before);
    let failures_during = delta(&metric(&h, "cloudkit_reconcile_failures_total").await, &failures_before);
    proxy.set_up(true);
    let outage_measured = t0.elapsed();
    let t1 = Instant::now();

    // What each object said at the end of the outage.
    println!("at the end of the outage ({}):", secs(outage_measured));
    for id in &ids {
        let s = &at_end[id];
        println!("  {}", s.summary());
        let depends = id == &format!("Queue/{work}");
        let reason = s.ready_reason();
        let reason_ok = reason == "ProviderError" || (depends && reason == "DependencyNotReady");
        // Past --stall-after (a long CLOUDKIT_E2E_OUTAGE_SECS) Stalled=True replaces Reconciling.
        let progressing = s.is("Reconciling") || (outage_measured >= STALL_AFTER && s.is("Stalled"));
        if s.is("Ready") || !progressing || !reason_ok {
            problems.push(format!(
                "at the end of the outage, want Ready=False (ProviderError{}) and Reconciling=True: {}",
                if depends { " or DependencyNotReady" } else { "" },
                s.summary()
            ));
        }
        if outage_measured < STALL_AFTER && s.is("Stalled") {
            problems.push(format!("Stalled before --stall-after: {}", s.summary()));
        }
        if reason == "ProviderError" && s.status.as_ref().and_then(|st| st.failing_since.as_ref()).is_none() {
            problems.push(format!("no status.failingSince while failing: {}", s.summary()));
        }
    }

    // Retries at the proxy: every object kept trying, with a backoff that grows and is
    // capped, never in a hot loop.
    let names: Vec<(&String, String)> = at_end.values().map(|s| (&s.name, s.id.clone())).collect();
    let mut per_object: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    let mut unattributed = 0;
    for (at, request) in &attempts {
        // The longest name in the request is the object's (none contains another here).
        match names
            .iter()
            .filter(|(name, _)| request.contains(name.as_str()))
            .max_by_key(|(name, _)| name.len())
        {
            Some((_, id)) => per_object.entry(id.clone()).or_default().push(*at),
            None => unattributed += 1,
        }
    }
    let d = outage.as_secs_f64();
    let reconciles_bound = (d.min(BACKOFF_CAP.as_secs_f64()) + 1.0).log2().ceil() as usize
        + (d / (BACKOFF_CAP.as_secs_f64() / 2.0)).ceil() as usize
        + 3;
    let attempts_bound = SDK_ATTEMPTS * reconciles_bound;
    let growth = (BACKOFF_CAP / 2).min(outage / 8);
    let gap_bound = BACKOFF_CAP + OPERATION_TIMEOUT;
    println!(
        "attempts during the outage: {} connections at the proxy ({} not attributed), {} cloud calls counted by the controller",
        attempts.len(),
        unattributed,
        calls_during.values().sum::<f64>()
    );
    println!("  reconcile failures by kind and reason: {failures_during:?}");
    for id in &ids {
        let times = per_object.get(id).cloned().unwrap_or_default();
        let offsets: Vec<String> = times
            .iter()
            .map(|t| format!("{:.1}", (*t - t0).as_secs_f64()))
            .collect();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let max_gap = gaps.iter().max().copied().unwrap_or_default();
        println!(
            "  {id}: {} attempts, largest gap {}, at [{}] s",
            times.len(),
            secs(max_gap),
            offsets.join(" ")
        );
        // The DLQ's user waits on it (DependencyNotReady, no cloud call) once it is down.
        if id == &format!("Queue/{work}") {
            continue;
        }
        if times.len() < 2 {
            problems.push(format!(
                "{id}: {} attempt(s) during the outage: retries stopped",
                times.len()
            ));
        }
        if times.len() > attempts_bound {
            problems.push(format!(
                "{id}: {} attempts in {} (bound {attempts_bound}: {SDK_ATTEMPTS} per call, {reconciles_bound} backed-off reconciles): a hot retry loop",
                times.len(),
                secs(outage)
            ));
        }
        if max_gap > gap_bound {
            problems.push(format!(
                "{id}: {} between two attempts, above the {} cap (+{} for the call itself)",
                secs(max_gap),
                secs(BACKOFF_CAP),
                secs(OPERATION_TIMEOUT)
            ));
        }
        if outage >= Duration::from_secs(40) && max_gap < growth {
            problems.push(format!(
                "{id}: the largest gap between attempts is {}, under {}: the backoff does not grow",
                secs(max_gap),
                secs(growth)
            ));
        }
    }
    let last_attempt = attempts.last().map(|(at, _)| (*at - t0).as_secs_f64());
    if last_attempt.is_none_or(|t| t < d / 2.0) {
        problems.push(format!(
            "no attempt in the second half of the outage (last at {last_attempt:?} s): retries stopped"
        ));
    }

    // --- the restore: everything back, no manual step ------------------------------------
    // The next retry comes at most one backoff delay after the restore: a delay is under
    // twice the time already failing, and under the cap.
    let recovery_bound = BACKOFF_CAP.min((outage_measured + Duration::from_secs(2)) * 2) + Duration::from_secs(30);
    println!(
        "restored after {}: waiting up to {} for every object to be Ready at its generation",
        secs(outage_measured),
        secs(recovery_bound)
    );
    let (healed, after) = wait_all(&h, &ids, t1, recovery_bound, Snap::ready_at_generation, |snaps| {
        stall_check(snaps, &mut stalled_seen)
    })
    .await;
    let recovered = healed.values().max().copied();
    for id in &ids {
        match healed.get(id) {
            Some(at) => println!("  {id}: Ready after {}", secs(*at)),
            None => problems.push(format!(
                "not Ready {} after the restore: {}",
                secs(recovery_bound),
                after[id].summary()
            )),
        }
    }
    for (id, first) in &stalled_seen {
        problems.push(format!("{id} went Stalled before --stall-after: {first}"));
    }

    if healed.len() == ids.len() {
        // A few resyncs (every 2 s) later: exactly one of each, nothing created again.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let calls_after = delta(&metric(&h, "cloudkit_cloud_calls_total").await, &calls_before);
        if creates(&calls_after) != 0.0 {
            problems.push(format!(
                "create calls after the outage began (resources already existed): {calls_after:?}"
            ));
        }
        let in_cloud: Vec<String> = s3
            .list_buckets()
            .send()
            .await
            .expect("ListBuckets")
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .filter(|n| n.starts_with(&h.ns))
            .collect();
        let want: BTreeSet<&String> = buckets.iter().collect();
        if in_cloud.len() != buckets.len() || in_cloud.iter().collect::<BTreeSet<_>>() != want {
            problems.push(format!("buckets in moto: {in_cloud:?}, want exactly {buckets:?}"));
        }
        let urls: Vec<String> = sqs
            .list_queues()
            .queue_name_prefix(&h.ns)
            .send()
            .await
            .expect("ListQueues")
            .queue_urls()
            .to_vec();
        let mut in_cloud: Vec<String> = urls
            .iter()
            .filter_map(|u| u.rsplit('/').next().map(str::to_owned))
            .collect();
        in_cloud.sort();
        let mut want = queues.clone();
        want.sort();
        if in_cloud != want {
            problems.push(format!("queues in moto: {in_cloud:?}, want exactly {want:?}"));
        }
        // The same resources, recorded the same way.
        let now = snapshot(&h).await;
        for id in &ids {
            let record = |s: &Snap| {
                (
                    s.status.as_ref().and_then(|st| st.external_name.clone()),
                    s.status.as_ref().and_then(|st| st.arn.clone()),
                    s.annotations.get("cloudkit.dev/external-name").cloned(),
                    s.annotations.get("cloudkit.dev/create-succeeded").cloned(),
                )
            };
            if record(&before[id]) != record(&now[id]) {
                problems.push(format!(
                    "{id}: identity changed across the outage: {:?} → {:?}",
                    record(&before[id]),
                    record(&now[id])
                ));
            }
        }
        // The change made during the outage reached the cloud.
        let tagging = s3
            .get_bucket_tagging()
            .bucket(changed_bucket)
            .send()
            .await
            .expect("GetBucketTagging");
        let bucket_tags: Vec<(&str, &str)> = tagging.tag_set().iter().map(|t| (t.key(), t.value())).collect();
        if !bucket_tags.contains(&("phase", "during-outage")) {
            problems.push(format!("{changed_bucket} tags in moto: {bucket_tags:?}"));
        }
        let url = |name: &String| {
            urls.iter()
                .find(|u| u.ends_with(&format!("/{name}")))
                .cloned()
                .unwrap_or_default()
        };
        let queue_tags = sqs
            .list_queue_tags()
            .queue_url(url(changed_queue))
            .send()
            .await
            .expect("ListQueueTags");
        let phase = queue_tags.tags().and_then(|t| t.get("phase")).map(String::as_str);
        if phase != Some("during-outage") {
            problems.push(format!("{changed_queue} tags in moto: {:?}", queue_tags.tags()));
        }
        // The dead-letter link survived.
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url(work))
            .attribute_names(Attr::RedrivePolicy)
            .send()
            .await
            .expect("GetQueueAttributes");
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&Attr::RedrivePolicy))
            .cloned()
            .unwrap_or_default();
        let dead_arn = now[&format!("Queue/{dead}")]
            .status
            .as_ref()
            .and_then(|s| s.arn.clone())
            .unwrap_or_default();
        if dead_arn.is_empty() || !policy.contains(&dead_arn) {
            problems.push(format!("{work}'s redrive policy {policy:?} does not name {dead_arn:?}"));
        }
    }

    println!(
        "timings: outage {}, all Ready {} after the restore (bound {}), {} attempts at the proxy during the outage",
        secs(outage_measured),
        recovered.map(secs).unwrap_or_else(|| "never".into()),
        secs(recovery_bound),
        attempts.len()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}\ncontroller log {}; its warnings:\n{}",
        problems.len(),
        problems.join("\n- "),
        h.log.display(),
        log_lines(&h, "\"WARN\"", 30)
    );
}
