//! The scale benchmark (issue 14): N objects (Buckets, or a mix of kinds) against the real
//! kube-apiserver and moto, measured from outside the controller. It prints figures, it does not judge them: the
//! `cloudkit-bench` binary runs it at the sizes asked for, and `tests/scale.rs` runs the
//! smallest size so that the benchmark itself keeps working.
//!
//! Every figure comes from something the bench can see without trusting the controller's
//! own account of itself where avoidable: object times from a watch of the namespace, RSS
//! and CPU from `/proc/<pid>`, Kubernetes requests from kube-apiserver's own
//! `apiserver_request_total`, cloud calls from the controller's `cloudkit_cloud_calls_total`
//! (moto keeps no per-request count).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cloudkit_crds::{Bucket, Function, Managed, ProviderConfig, Queue, Table, Topic};
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::{Harness, ready_at_generation};

/// What one run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Objects to create.
    pub n: usize,
    /// The ProviderConfig's `resyncInterval` during the run.
    pub resync: Duration,
    /// How long the quiet window lasts (no object changes): resyncs, writes, requests.
    pub idle: Duration,
    /// New objects created one at a time while N exist, for first-reconcile latency.
    pub probes: usize,
    /// Requests the bench itself keeps in flight when creating and deleting.
    pub client_parallel: usize,
    /// Tasks in flight when measuring the emulator's floor (the controller's `--concurrency`).
    pub concurrency: usize,
    /// The kinds made, in turn (object i is `kinds[i % len]`); probes are of the first.
    pub kinds: Vec<BenchKind>,
}

/// The kinds the bench makes. Functions share one IAM role, made per run, and carry a
/// one-line handler as their archive (moto runs no code, so it never unpacks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchKind {
    Bucket,
    Queue,
    Topic,
    Table,
    Function,
}

/// `def handler(e, c):\n    return 1\n`, base64: a Function's code.
const FUNCTION_CODE: &str = "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMQo=";

impl BenchKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "bucket" | "buckets" => Some(Self::Bucket),
            "queue" | "queues" => Some(Self::Queue),
            "topic" | "topics" => Some(Self::Topic),
            "table" | "tables" => Some(Self::Table),
            "function" | "functions" => Some(Self::Function),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bucket => "Bucket",
            Self::Queue => "Queue",
            Self::Topic => "Topic",
            Self::Table => "Table",
            Self::Function => "Function",
        }
    }

    /// The smallest spec of the kind: what a user would write first. `role`: the run's IAM
    /// role, for Functions.
    fn spec(self, role: &str) -> Value {
        match self {
            Self::Table => json!({"partitionKey": {"name": "id", "type": "String"}}),
            Self::Function => json!({
                "runtime": "python3.12", "handler": "app.handler",
                "code": {"zipBase64": FUNCTION_CODE}, "aws": {"roleArn": role}
            }),
            _ => json!({}),
        }
    }

    pub const ALL: [Self; 5] = [Self::Bucket, Self::Queue, Self::Topic, Self::Table, Self::Function];
}

/// The kinds of a run, as the table shows them.
pub fn kinds_label(kinds: &[BenchKind]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("+")
}

impl Options {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            resync: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            probes: 20,
            client_parallel: 32,
            concurrency: 128,
            kinds: vec![BenchKind::Bucket],
        }
    }
}

/// Every figure of one run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub n: usize,
    /// `Bucket`, or the mix (`Bucket+Queue+Topic+Table`).
    pub kinds: String,
    /// `kubectl create` equivalent: from the first create sent to the last answered.
    pub create_secs: f64,
    /// From the first create sent to the last object Ready.
    pub converge_secs: f64,
    /// The emulator's floor: N × calls per object ÷ the call rate the bench itself gets
    /// from the emulator with `concurrency` tasks in flight.
    pub t_min_secs: f64,
    pub emulator_calls_per_sec: f64,
    pub emulator_call_latency_ms: f64,
    pub rss_peak_mib: f64,
    pub rss_settled_mib: f64,
    /// CPU seconds from start until all Ready, and over the whole run.
    pub cpu_converge_secs: f64,
    pub cpu_total_secs: f64,
    pub calls_per_object: f64,
    pub calls_per_resync: f64,
    pub resyncs_in_idle: u64,
    /// The most reconciles in one second of the idle window, and N ÷ interval.
    pub resync_peak_per_sec: u64,
    pub resync_fair_per_sec: f64,
    pub cpu_ms_per_resync: f64,
    /// Kubernetes writes (anything but GET, LIST, WATCH) by the controller, per object.
    pub k8s_writes_per_object: f64,
    /// Kubernetes reads (GET, LIST) by the controller while converging, per object.
    pub k8s_reads_per_object: f64,
    pub k8s_writes_idle: u64,
    /// Requests other than WATCH during the idle window, by `VERB resource`.
    pub k8s_requests_idle: BTreeMap<String, u64>,
    /// Requests while converging, by `VERB resource[/sub]`.
    pub k8s_requests_converge: BTreeMap<String, u64>,
    pub first_reconcile_p50_ms: f64,
    pub first_reconcile_p99_ms: f64,
    pub probe_ready_p50_ms: f64,
    pub probe_ready_p99_ms: f64,
    pub delete_secs: f64,
    pub delete_calls_per_object: f64,
    pub left_in_cloud: usize,
    pub left_in_cluster: usize,
    /// /proc/loadavg (1, 5, 15 minutes) at the start, after converging, and at the end.
    pub load: Vec<String>,
    pub not_ready: usize,
}

/// When the watch saw each object reach each step.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    finalizer: Option<Instant>,
    ready: Option<Instant>,
    gone: Option<Instant>,
}

type Tracker = Arc<Mutex<HashMap<String, Seen>>>;

fn lock(t: &Tracker) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An object of the run: its kind and name, and its key in the tracker (`Kind/name`).
#[derive(Clone, Debug)]
struct Object {
    kind: BenchKind,
    name: String,
}

impl Object {
    fn key(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }
}

fn keys(objects: &[Object]) -> Vec<String> {
    objects.iter().map(Object::key).collect()
}

/// Watches the namespace's objects of each kind and stamps each one's first finalizer,
/// first Ready at its generation, and its removal.
fn track(h: &Harness, kinds: &[BenchKind]) -> (Tracker, Vec<tokio::task::JoinHandle<()>>) {
    let tracker: Tracker = Arc::default();
    let tasks = kinds
        .iter()
        .map(|kind| match kind {
            BenchKind::Bucket => track_kind::<Bucket>(h.api(), tracker.clone()),
            BenchKind::Queue => track_kind::<Queue>(h.api(), tracker.clone()),
            BenchKind::Topic => track_kind::<Topic>(h.api(), tracker.clone()),
            BenchKind::Table => track_kind::<Table>(h.api(), tracker.clone()),
            BenchKind::Function => track_kind::<Function>(h.api(), tracker.clone()),
        })
        .collect();
    (tracker, tasks)
}

fn track_kind<K: Managed>(api: Api<K>, t: Tracker) -> tokio::task::JoinHandle<()> {
    let kind = K::kind(&()).to_string();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            let now = Instant::now();
            let Ok(event) = event else { continue };
            let mut seen = lock(&t);
            match event {
                watcher::Event::Apply(b) | watcher::Event::InitApply(b) => {
                    let s = seen.entry(format!("{kind}/{}", b.name_any())).or_default();
                    if s.finalizer.is_none() && !b.finalizers().is_empty() {
                        s.finalizer = Some(now);
                    }
                    if s.ready.is_none() && ready_at_generation(&b) {
                        s.ready = Some(now);
                    }
                }
                watcher::Event::Delete(b) => {
                    seen.entry(format!("{kind}/{}", b.name_any())).or_default().gone = Some(now);
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    })
}

/// Waits until `done` holds for every name, or `limit` passes; the names it does not hold for.
async fn wait_all(t: &Tracker, names: &[String], limit: Duration, done: impl Fn(&Seen) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let missing: Vec<String> = {
            let seen = lock(t);
            names
                .iter()
                .filter(|n| !seen.get(*n).is_some_and(&done))
                .cloned()
                .collect()
        };
        if missing.is_empty() || started.elapsed() > limit {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// VmRSS and VmHWM (peak) of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds `pid` has used (clock ticks of 1/100 s on Linux).
fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state`, field 3.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14, stime 15: indices 11 and 12 counting from `state`.
    (tick(11) + tick(12)) / 100.0
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The resources the controller reads or writes (leases: with `--leader-elect` only).
const TOUCHED: [&str; 9] = [
    "buckets",
    "tables",
    "queues",
    "topics",
    "functions",
    "providerconfigs",
    "secrets",
    "events",
    "leases",
];

/// kube-apiserver's `apiserver_request_total` for the resources the controller touches,
/// summed by `VERB resource[/subresource]`.
pub async fn apiserver_requests(client: &kube::Client) -> BTreeMap<String, u64> {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = client.request_text(request).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
        // Only what the controller (or the bench) touches: kube-apiserver's own bootstrap
        // controllers read namespaces, services, endpoints and flow schemas all the time,
        // and non-resource requests (this scrape, /readyz) are nobody's load.
        if !TOUCHED.contains(&resource.as_str()) {
            continue;
        }
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    }
    out
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn is_read(key: &str) -> bool {
    key.starts_with("GET ") || key.starts_with("LIST ")
}

fn is_write(key: &str) -> bool {
    !is_read(key) && !key.starts_with("WATCH ")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The emulator's throughput for the calls a Bucket costs, with `concurrency` tasks each
/// creating and reading buckets like the controller does: (calls per second, mean latency).
/// Its buckets are deleted afterwards, untimed.
async fn emulator_rate(h: &Harness, buckets: usize, concurrency: usize) -> (f64, f64) {
    let names: Vec<String> = (0..buckets).map(|i| h.bucket_name(&format!("floor{i}"))).collect();
    let started = Instant::now();
    let latencies: Vec<(u32, Duration)> = futures::stream::iter(names.clone())
        .map(|name| {
            let s3 = h.s3.clone();
            async move {
                let t = Instant::now();
                let _ = s3.head_bucket().bucket(&name).send().await;
                let _ = s3.create_bucket().bucket(&name).send().await;
                let _ = s3.head_bucket().bucket(&name).send().await;
                let _ = tokio::join!(
                    s3.get_bucket_versioning().bucket(&name).send(),
                    s3.get_bucket_tagging().bucket(&name).send(),
                    s3.get_public_access_block().bucket(&name).send(),
                    s3.get_bucket_encryption().bucket(&name).send(),
                );
                let tag = aws_sdk_s3::types::Tag::builder()
                    .key("k")
                    .value("v")
                    .build()
                    .expect("tag");
                let tagging = aws_sdk_s3::types::Tagging::builder()
                    .tag_set(tag)
                    .build()
                    .expect("tagging");
                let _ = s3.put_bucket_tagging().bucket(&name).tagging(tagging).send().await;
                let block = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build();
                let _ = s3
                    .put_public_access_block()
                    .bucket(&name)
                    .public_access_block_configuration(block)
                    .send()
                    .await;
                let _ = s3.head_bucket().bucket(&name).send().await;
                // 10 calls, 7 of them one after another.
                (10, t.elapsed() / 7)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = started.elapsed().as_secs_f64();
    let calls: u32 = latencies.iter().map(|(c, _)| c).sum();
    let mean = latencies.iter().map(|(_, l)| l.as_secs_f64()).sum::<f64>() / latencies.len().max(1) as f64;
    futures::stream::iter(names)
        .for_each_concurrent(concurrency, |name| {
            let s3 = h.s3.clone();
            async move {
                let _ = s3.delete_bucket().bucket(&name).send().await;
            }
        })
        .await;
    (f64::from(calls) / took, mean * 1000.0)
}

/// Errors an overloaded apiserver or etcd gives that a retry may not.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        _ => true,
    }
}

/// Creates the objects, `parallel` requests in flight in all.
async fn create_all(h: &Harness, objects: &[Object], role: &str, parallel: usize) {
    futures::stream::iter(objects.iter().cloned())
        .map(|o| async move {
            match o.kind {
                BenchKind::Bucket => create::<Bucket>(h.api(), o, role).await,
                BenchKind::Queue => create::<Queue>(h.api(), o, role).await,
                BenchKind::Topic => create::<Topic>(h.api(), o, role).await,
                BenchKind::Table => create::<Table>(h.api(), o, role).await,
                BenchKind::Function => create::<Function>(h.api(), o, role).await,
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<()>>()
        .await;
}

async fn create<K: Managed>(api: Api<K>, o: Object, role: &str) {
    let name = o.name;
    let object: K = serde_json::from_value(json!({
        "apiVersion": "cloudkit.dev/v1alpha1", "kind": o.kind.as_str(),
        "metadata": {"name": name}, "spec": o.kind.spec(role)
    }))
    .expect("a valid object");
    // An overloaded etcd answers 500 "request timed out" (seen at N = 10,000 on a loaded
    // machine), possibly after storing the object: retry, and take AlreadyExists after a
    // failed attempt as done.
    let mut tries = 0;
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && tries > 0 => break,
            Err(e) if tries < 5 && transient(&e) => tries += 1,
            Err(e) => panic!("create {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Deletes an object, retrying what an overloaded apiserver refuses.
async fn delete<K: Managed>(api: Api<K>, name: String) {
    let mut tries = 0;
    loop {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 404 && tries > 0 => break,
            Err(e) if tries < 5 && transient(&e) => tries += 1,
            Err(e) => panic!("delete {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reconciles the controller has run, of every kind of the run.
async fn reconciles(h: &Harness, kinds: &[BenchKind]) -> u64 {
    let mut total = 0;
    for kind in kinds {
        total += h.reconciles(kind.as_str()).await;
    }
    total
}

/// What the run left in the cloud: resources of its kinds named after its namespace.
async fn left_in_cloud(h: &Harness, kinds: &[BenchKind]) -> usize {
    let prefix = format!("{}-", h.ns);
    let mut left = 0;
    for kind in kinds {
        left += match kind {
            BenchKind::Bucket => {
                let listed = h.s3.list_buckets().send().await.expect("ListBuckets");
                listed
                    .buckets()
                    .iter()
                    .filter(|b| b.name().is_some_and(|n| n.starts_with(&prefix)))
                    .count()
            }
            BenchKind::Queue => {
                let mut pages = h.sqs.list_queues().queue_name_prefix(&prefix).into_paginator().send();
                let mut n = 0;
                while let Some(page) = pages.next().await {
                    n += page.expect("ListQueues").queue_urls().len();
                }
                n
            }
            BenchKind::Topic => {
                let mut pages = h.sns.list_topics().into_paginator().send();
                let mut n = 0;
                while let Some(page) = pages.next().await {
                    n += page
                        .expect("ListTopics")
                        .topics()
                        .iter()
                        .filter(|t| {
                            t.topic_arn()
                                .and_then(|a| a.rsplit(':').next())
                                .is_some_and(|name| name.starts_with(&prefix))
                        })
                        .count();
                }
                n
            }
            BenchKind::Table => {
                let mut pages = h.dynamodb.list_tables().into_paginator().send();
                let mut n = 0;
                while let Some(page) = pages.next().await {
                    n += page
                        .expect("ListTables")
                        .table_names()
                        .iter()
                        .filter(|t| t.starts_with(&prefix))
                        .count();
                }
                n
            }
            BenchKind::Function => {
                let mut pages = h.lambda.list_functions().into_paginator().send();
                let mut n = 0;
                while let Some(page) = pages.next().await {
                    n += page
                        .expect("ListFunctions")
                        .functions()
                        .iter()
                        .filter(|f| f.function_name().is_some_and(|name| name.starts_with(&prefix)))
                        .count();
                }
                n
            }
        };
    }
    left
}

/// Runs the benchmark once. Panics when objects do not reach Ready or are not released in
/// time: a benchmark that did not finish has no figures.
pub async fn run(opts: &Options) -> Figures {
    let mut f = Figures {
        n: opts.n,
        kinds: kinds_label(&opts.kinds),
        load: vec![loadavg()],
        ..Default::default()
    };
    let h = Harness::new("scale").await;
    let pid = h.controller_pid().expect("controller started");
    let resync = format!("{}s", opts.resync.as_secs());
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    configs
        .patch(
            "default",
            &PatchParams::apply("cloudkit-bench").force(),
            &Patch::Apply(json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "default"},
                "spec": {
                    "provider": "aws", "region": "us-east-1", "endpoint": h.endpoint, "resyncInterval": resync,
                    "credentials": {"source": "Secret", "secretRef": {"name": "aws"}}
                }
            })),
        )
        .await
        .expect("ProviderConfig");
    h.metrics_up().await;

    // The floor first, while the emulator holds none of the run's buckets.
    let (rate, latency) = emulator_rate(&h, opts.n.clamp(50, 500), opts.concurrency).await;
    f.emulator_calls_per_sec = rate;
    f.emulator_call_latency_ms = latency;

    let kinds = if opts.kinds.is_empty() {
        vec![BenchKind::Bucket]
    } else {
        opts.kinds.clone()
    };
    // One role for every Function of the run (no call when none is made).
    let role = if kinds.contains(&BenchKind::Function) {
        h.iam_role().await
    } else {
        String::new()
    };
    let (tracker, watches) = track(&h, &kinds);
    let objects: Vec<Object> = (0..opts.n)
        .map(|i| Object {
            kind: kinds[i % kinds.len()],
            name: h.bucket_name(&format!("b{i:05}")),
        })
        .collect();
    let names = keys(&objects);
    let calls0 = h.cloud_call_total().await;
    let k8s0 = apiserver_requests(&h.client).await;
    let started = Instant::now();
    create_all(&h, &objects, &role, opts.client_parallel).await;
    f.create_secs = started.elapsed().as_secs_f64();
    // Generous: a slow machine still finishes; the figure says how slow.
    let limit = Duration::from_secs(120) + Duration::from_millis(200 * opts.n as u64);
    let missing = wait_all(&tracker, &names, limit, |s| s.ready.is_some()).await;
    f.not_ready = missing.len();
    assert!(
        missing.is_empty(),
        "{} of {} objects not Ready after {limit:?} (e.g. {:?}); controller log: {}",
        missing.len(),
        opts.n,
        missing.first(),
        h.log.display()
    );
    let last_ready = {
        let seen = lock(&tracker);
        names.iter().filter_map(|n| seen.get(n)?.ready).max()
    };
    f.converge_secs = last_ready.map_or(f64::NAN, |t| (t - started).as_secs_f64());
    f.cpu_converge_secs = cpu_secs(pid);
    let calls1 = h.cloud_call_total().await;
    let k8s1 = apiserver_requests(&h.client).await;
    f.load.push(loadavg());
    f.calls_per_object = (calls1 - calls0) as f64 / opts.n as f64;
    f.t_min_secs = opts.n as f64 * f.calls_per_object / rate;
    let converge = delta(&k8s1, &k8s0);
    // The bench's own creates are not the controller's writes.
    let creates: Vec<String> = kinds
        .iter()
        .map(|k| format!("POST {}s", k.as_str().to_ascii_lowercase()))
        .collect();
    let writes: u64 = converge
        .iter()
        .filter(|(k, _)| is_write(k) && !creates.contains(k))
        .map(|(_, v)| v)
        .sum();
    let reads: u64 = converge.iter().filter(|(k, _)| is_read(k)).map(|(_, v)| v).sum();
    f.k8s_writes_per_object = writes as f64 / opts.n as f64;
    f.k8s_reads_per_object = reads as f64 / opts.n as f64;
    f.k8s_requests_converge = converge;

    // Settled: the creation burst is over; what the controller keeps for N objects.
    tokio::time::sleep(Duration::from_secs(10)).await;
    f.rss_settled_mib = rss_mib(pid).0;

    // The quiet window: nothing changes, only resyncs run.
    let (calls2, k8s2, cpu2) = (
        h.cloud_call_total().await,
        apiserver_requests(&h.client).await,
        cpu_secs(pid),
    );
    let runs2 = reconciles(&h, &kinds).await;
    let mut last = runs2;
    let mut peak = 0;
    let idle_started = Instant::now();
    while idle_started.elapsed() < opts.idle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = reconciles(&h, &kinds).await;
        peak = peak.max(now - last);
        last = now;
    }
    let (calls3, k8s3, cpu3) = (
        h.cloud_call_total().await,
        apiserver_requests(&h.client).await,
        cpu_secs(pid),
    );
    f.resyncs_in_idle = last - runs2;
    f.resync_peak_per_sec = peak;
    f.resync_fair_per_sec = opts.n as f64 / opts.resync.as_secs_f64();
    if f.resyncs_in_idle > 0 {
        f.calls_per_resync = (calls3 - calls2) as f64 / f.resyncs_in_idle as f64;
        f.cpu_ms_per_resync = (cpu3 - cpu2) * 1000.0 / f.resyncs_in_idle as f64;
    }
    let idle: BTreeMap<String, u64> = delta(&k8s3, &k8s2)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("WATCH "))
        .collect();
    f.k8s_writes_idle = idle.iter().filter(|(k, _)| is_write(k)).map(|(_, v)| v).sum();
    f.k8s_requests_idle = idle;

    // A new object's first reconcile while N exist, one at a time.
    let mut probes = Vec::new();
    let mut first = Vec::new();
    let mut ready = Vec::new();
    for i in 0..opts.probes {
        let probe = Object {
            kind: kinds[0],
            name: h.bucket_name(&format!("p{i:03}")),
        };
        let key = probe.key();
        let sent = Instant::now();
        create_all(&h, std::slice::from_ref(&probe), &role, 1).await;
        let missing = wait_all(&tracker, std::slice::from_ref(&key), Duration::from_secs(60), |s| {
            s.ready.is_some()
        })
        .await;
        assert!(missing.is_empty(), "probe {key} not Ready; log {}", h.log.display());
        let seen = lock(&tracker).get(&key).copied().unwrap_or_default();
        first.push(seen.finalizer.map_or(f64::NAN, |t| (t - sent).as_secs_f64() * 1000.0));
        ready.push(seen.ready.map_or(f64::NAN, |t| (t - sent).as_secs_f64() * 1000.0));
        probes.push(probe);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    first.sort_by(f64::total_cmp);
    ready.sort_by(f64::total_cmp);
    f.first_reconcile_p50_ms = percentile(&first, 50.0);
    f.first_reconcile_p99_ms = percentile(&first, 99.0);
    f.probe_ready_p50_ms = percentile(&ready, 50.0);
    f.probe_ready_p99_ms = percentile(&ready, 99.0);

    // Delete everything; timed from the first delete sent to the last object gone, as the
    // watch sees it (not `kubectl delete --wait`, which polls each object in turn).
    let everything: Vec<Object> = objects.iter().chain(&probes).cloned().collect();
    let all = keys(&everything);
    let calls4 = h.cloud_call_total().await;
    let started = Instant::now();
    futures::stream::iter(everything)
        .for_each_concurrent(opts.client_parallel, |o| {
            let h = &h;
            async move {
                match o.kind {
                    BenchKind::Bucket => delete::<Bucket>(h.api(), o.name).await,
                    BenchKind::Queue => delete::<Queue>(h.api(), o.name).await,
                    BenchKind::Topic => delete::<Topic>(h.api(), o.name).await,
                    BenchKind::Table => delete::<Table>(h.api(), o.name).await,
                    BenchKind::Function => delete::<Function>(h.api(), o.name).await,
                }
            }
        })
        .await;
    let limit = Duration::from_secs(120) + Duration::from_millis(100 * all.len() as u64);
    let missing = wait_all(&tracker, &all, limit, |s| s.gone.is_some()).await;
    f.left_in_cluster = missing.len();
    let last_gone = {
        let seen = lock(&tracker);
        all.iter().filter_map(|n| seen.get(n)?.gone).max()
    };
    f.delete_secs = last_gone.map_or(f64::NAN, |t| (t - started).as_secs_f64());
    f.delete_calls_per_object = (h.cloud_call_total().await - calls4) as f64 / all.len() as f64;
    f.left_in_cloud = left_in_cloud(&h, &kinds).await;
    f.cpu_total_secs = cpu_secs(pid);
    // The high-water mark of the whole run: deleting everything at once is the peak.
    f.rss_peak_mib = rss_mib(pid).1;
    f.load.push(loadavg());
    for watch in watches {
        watch.abort();
    }
    f
}

impl Figures {
    /// The markdown table's header; one `row()` per run follows it.
    pub fn header() -> &'static str {
        "| N | kinds | create | all Ready | T_min (emulator) | RSS peak / settled | CPU converge / total | \
         calls/object | calls/quiet resync | resyncs in idle (peak/s vs N/interval) | CPU/resync | \
         k8s writes/object (reads) | k8s requests idle (writes) | first reconcile p50/p99 | new object Ready p50/p99 | \
         delete all (calls/object) | left cloud/cluster | load 1/5/15 start · converged · end |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    }

    pub fn row(&self) -> String {
        let idle_requests: u64 = self.k8s_requests_idle.values().sum();
        format!(
            "| {} | {} | {:.1} s | {:.1} s | {:.1} s ({:.0} calls/s, {:.1} ms/call) | {:.1} / {:.1} MiB | {:.1} / {:.1} s | \
             {:.2} | {:.2} | {} ({} vs {:.1}) | {:.2} ms | {:.2} ({:.2}) | {} ({}) | {:.0} / {:.0} ms | {:.0} / {:.0} ms | \
             {:.1} s ({:.2}) | {} / {} | {} |",
            self.n,
            self.kinds,
            self.create_secs,
            self.converge_secs,
            self.t_min_secs,
            self.emulator_calls_per_sec,
            self.emulator_call_latency_ms,
            self.rss_peak_mib,
            self.rss_settled_mib,
            self.cpu_converge_secs,
            self.cpu_total_secs,
            self.calls_per_object,
            self.calls_per_resync,
            self.resyncs_in_idle,
            self.resync_peak_per_sec,
            self.resync_fair_per_sec,
            self.cpu_ms_per_resync,
            self.k8s_writes_per_object,
            self.k8s_reads_per_object,
            idle_requests,
            self.k8s_writes_idle,
            self.first_reconcile_p50_ms,
            self.first_reconcile_p99_ms,
            self.probe_ready_p50_ms,
            self.probe_ready_p99_ms,
            self.delete_secs,
            self.delete_calls_per_object,
            self.left_in_cloud,
            self.left_in_cluster,
            self.load.join(" · "),
        )
    }

    /// Kubernetes requests by verb and resource, converging and idle, for the notes.
    pub fn requests(&self) -> String {
        let show = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        format!(
            "N={} {}: converging: {}; idle: {}",
            self.n,
            self.kinds,
            show(&self.k8s_requests_converge),
            if self.k8s_requests_idle.is_empty() {
                "none".to_owned()
            } else {
                show(&self.k8s_requests_idle)
            }
        )
    }
}
