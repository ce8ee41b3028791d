//! Crash anywhere: the controller is killed (SIGKILL) at a random moment of a create, an
//! update and a delete, 20 rounds, and every time the cloud ends up holding exactly what
//! the manifests still ask for: no duplicate, no orphan, nothing lost, every object Ready.
//!
//! Each round has a namespace, ProviderConfig and controller of its own (a new
//! `Harness`) and five objects: two Buckets, a Table, and a Queue whose dead-letter queue
//! is another Queue (a reference, so the dependency order is in play). Then:
//!
//! 1. create: the five are applied in a random order and the controller is killed 0–400 ms
//!    after the first write; a new one is started;
//! 2. update: tags (and the queues' visibility timeout) change, killed 0–400 ms after;
//!    restarted;
//! 3. delete: a random subset is deleted (the dead-letter queue only with its user), killed
//!    0–400 ms after; restarted.
//!
//! Every write is made with the controller up and its caches filled (`/readyz`), so the
//! kill lands inside the work the write started. In "settled" rounds each phase also waits
//! for the previous one to converge, so the kill hits that operation alone; in the others
//! the phases overlap (an update of an object still being created, a delete of one still
//! being updated). Then: every remaining object Ready at generation 2, every deleted one
//! gone from the API, and moto holds, under the round's prefix, exactly the remaining
//! objects' resources with the updated settings.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use cloudkit_crds::{Bucket, Managed, Queue, Table};
use cloudkit_e2e::{Harness, condition, ready_at_generation};
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::{Value, json};

const ROUNDS: usize = 20;
/// Rounds run side by side, each in its own namespace with its own controller.
const LANES: usize = 1;
const MAX_KILL_DELAY_MS: u64 = 400;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// A phase that takes longer to converge is reported with what it waited for.
const SLOW: Duration = Duration::from_secs(4);
const PENDING: &str = "cloudkit.dev/create-pending";
const EXTERNAL_NAME: &str = "cloudkit.dev/external-name";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Bucket,
    Queue,
    Table,
}

#[derive(Clone, Debug)]
struct Obj {
    kind: Kind,
    short: &'static str,
    name: String,
}

/// What the API says about one object.
struct Seen {
    generation: Option<i64>,
    ready: bool,
    recorded: bool,
    pending: bool,
    status: String,
}

async fn seen<K: Managed>(api: Api<K>, name: &str) -> Option<Seen> {
    let o = api.get_opt(name).await.expect("get object")?;
    let status = o.managed_status();
    let ready = condition(status, "Ready");
    Some(Seen {
        generation: o.meta().generation,
        ready: ready_at_generation(&o),
        recorded: o
            .meta()
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(EXTERNAL_NAME)),
        pending: o.meta().annotations.as_ref().is_some_and(|a| a.contains_key(PENDING)),
        status: format!(
            "generation {:?}, observed {:?}, Ready {} {}: {}, deleting: {}",
            o.meta().generation,
            status.and_then(|s| s.observed_generation),
            ready.map_or("-", |c| c.status.as_str()),
            ready.map_or("-", |c| c.reason.as_str()),
            ready.and_then(|c| c.message.as_deref()).unwrap_or(""),
            o.meta().deletion_timestamp.is_some(),
        ),
    })
}

impl Obj {
    async fn seen(&self, client: &Client, ns: &str) -> Option<Seen> {
        match self.kind {
            Kind::Bucket => seen::<Bucket>(Api::namespaced(client.clone(), ns), &self.name).await,
            Kind::Queue => seen::<Queue>(Api::namespaced(client.clone(), ns), &self.name).await,
            Kind::Table => seen::<Table>(Api::namespaced(client.clone(), ns), &self.name).await,
        }
    }

    async fn apply(&self, client: &Client, ns: &str, spec: Value) {
        let kind = format!("{:?}", self.kind);
        let body = json!({
            "apiVersion": "cloudkit.dev/v1alpha1", "kind": kind, "metadata": {"name": self.name}, "spec": spec
        });
        let params = kube::api::PatchParams::apply("cloudkit-e2e").force();
        let patch = kube::api::Patch::Apply(&body);
        let result = match self.kind {
            Kind::Bucket => Api::<Bucket>::namespaced(client.clone(), ns)
                .patch(&self.name, &params, &patch)
                .await
                .map(drop),
            Kind::Queue => Api::<Queue>::namespaced(client.clone(), ns)
                .patch(&self.name, &params, &patch)
                .await
                .map(drop),
            Kind::Table => Api::<Table>::namespaced(client.clone(), ns)
                .patch(&self.name, &params, &patch)
                .await
                .map(drop),
        };
        result.unwrap_or_else(|e| panic!("apply {kind}/{}: {e}", self.name));
    }

    async fn merge_spec(&self, client: &Client, ns: &str, spec: Value) {
        let params = kube::api::PatchParams::default();
        let body = json!({"spec": spec});
        let patch = kube::api::Patch::Merge(&body);
        let result = match self.kind {
            Kind::Bucket => Api::<Bucket>::namespaced(client.clone(), ns)
                .patch(&self.name, &params, &patch)
                .await
                .map(drop),
            Kind::Queue => Api::<Queue>::namespaced(client.clone(), ns)
                .patch(&self.name, &params, &patch)
                .await
                .map(drop),
            Kind::Table => Api::<Table>::namespaced(client.clone(), ns)
                .patch(&self.name, &params, &patch)
                .await
                .map(drop),
        };
        result.unwrap_or_else(|e| panic!("patch {:?}/{}: {e}", self.kind, self.name));
    }

    async fn delete(&self, client: &Client, ns: &str) {
        let params = DeleteParams::default();
        let result = match self.kind {
            Kind::Bucket => Api::<Bucket>::namespaced(client.clone(), ns)
                .delete(&self.name, &params)
                .await
                .map(drop),
            Kind::Queue => Api::<Queue>::namespaced(client.clone(), ns)
                .delete(&self.name, &params)
                .await
                .map(drop),
            Kind::Table => Api::<Table>::namespaced(client.clone(), ns)
                .delete(&self.name, &params)
                .await
                .map(drop),
        };
        result.unwrap_or_else(|e| panic!("delete {:?}/{}: {e}", self.kind, self.name));
    }
}

/// The five objects of a round, by short name.
fn objects(h: &Harness) -> Vec<Obj> {
    [
        (Kind::Bucket, "b1"),
        (Kind::Bucket, "b2"),
        (Kind::Queue, "dlq"),
        (Kind::Queue, "q"),
        (Kind::Table, "t"),
    ]
    .into_iter()
    .map(|(kind, short)| Obj {
        kind,
        short,
        name: h.bucket_name(short),
    })
    .collect()
}

fn create_spec(o: &Obj, h: &Harness) -> Value {
    let tags = json!({"phase": "create", "object": o.short});
    match o.short {
        "b1" => json!({"versioning": true, "tags": tags}),
        "b2" => json!({"tags": tags}),
        "dlq" => json!({"visibilityTimeoutSeconds": 30, "messageRetentionSeconds": 1209600, "tags": tags}),
        "q" => json!({
            "visibilityTimeoutSeconds": 30, "tags": tags,
            "deadLetter": {"queueRef": {"name": h.bucket_name("dlq")}, "maxReceiveCount": 3}
        }),
        "t" => json!({
            "partitionKey": {"name": "id", "type": "String"}, "billing": {"mode": "OnDemand"}, "tags": tags
        }),
        other => unreachable!("{other}"),
    }
}

fn update_spec(o: &Obj) -> Value {
    match o.kind {
        Kind::Queue => json!({"visibilityTimeoutSeconds": 60, "tags": {"phase": "update"}}),
        _ => json!({"tags": {"phase": "update"}}),
    }
}

async fn wait_ready_endpoint(h: &Harness) {
    let started = Instant::now();
    while h.http_get("/readyz").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "controller not ready; log: {}",
            h.log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `writes` and, `delay` after they start, kills the controller; then starts a new
/// one and waits until it serves. Returns whether the kill came before the writes ended.
async fn kill_during(
    h: &mut Harness,
    delay: Duration,
    writes: impl std::future::Future<Output = ()>,
    at_kill: impl AsyncFnOnce(&Harness) -> AtKill,
) -> (bool, AtKill) {
    let deadline = tokio::time::Instant::now() + delay;
    let mut writes = std::pin::pin!(writes);
    // Killed at `delay` exactly, whether or not the writes are done by then.
    let during = tokio::select! {
        _ = &mut writes => {
            tokio::time::sleep_until(deadline).await;
            false
        }
        _ = tokio::time::sleep_until(deadline) => true,
    };
    h.kill_controller();
    if during {
        writes.await;
    }
    let seen = at_kill(h).await;
    h.start_controller();
    wait_ready_endpoint(h).await;
    (during, seen)
}

/// What the killed controller left behind, read before the next one starts.
struct AtKill {
    text: String,
    /// Objects whose name was recorded and whose create had no recorded answer yet.
    pending: usize,
    /// Whether the phase's work was partly done: some objects through, some not.
    partial: bool,
}

async fn at_create_kill(h: &Harness, objs: &[Obj]) -> AtKill {
    let in_cloud = cloud(h).await;
    let (mut recorded, mut pending, mut ready) = (0, 0, 0);
    for o in objs {
        if let Some(s) = o.seen(&h.client, &h.ns).await {
            recorded += usize::from(s.recorded);
            pending += usize::from(s.pending);
            ready += usize::from(s.ready);
        }
    }
    let n = objs.len();
    AtKill {
        text: format!(
            "{{named {recorded}/{n}, create-pending {pending}, in moto {}/{n}, Ready {ready}/{n}}}",
            in_cloud.len()
        ),
        pending,
        partial: (!in_cloud.is_empty() && in_cloud.len() < n) || pending > 0 || (0 < ready && ready < n),
    }
}

async fn at_update_kill(h: &Harness, objs: &[Obj]) -> AtKill {
    let mut done = 0;
    let mut pending = 0;
    for o in objs {
        if let Some(s) = o.seen(&h.client, &h.ns).await {
            done += usize::from(s.ready && s.generation == Some(2));
            pending += usize::from(s.pending);
        }
    }
    let n = objs.len();
    AtKill {
        text: format!("{{Ready at generation 2: {done}/{n}}}"),
        pending,
        partial: 0 < done && done < n,
    }
}

async fn at_delete_kill(h: &Harness, deleted: &[Obj]) -> AtKill {
    let in_cloud = cloud(h).await;
    let mut released = 0;
    let mut gone = 0;
    for o in deleted {
        released += usize::from(o.seen(&h.client, &h.ns).await.is_none());
        gone += usize::from(!in_cloud.iter().any(|(k, n)| *k == o.kind && *n == o.name));
    }
    let n = deleted.len();
    AtKill {
        text: format!("{{gone from moto {gone}/{n}, released {released}/{n}}}"),
        pending: 0,
        partial: (0 < gone && gone < n) || gone != released,
    }
}

/// Waits until every object in `remaining` is Ready at generation `generation` and every one in `deleted` is gone from the API: how long that
/// took, and when it took over `SLOW`, what the last ones were doing. On timeout, the
/// objects that did not get there, with what the API says about them.
async fn converge(h: &Harness, remaining: &[Obj], generation: i64, deleted: &[Obj]) -> Result<String, String> {
    let started = Instant::now();
    let mut last_late = Vec::new();
    loop {
        let mut late = Vec::new();
        for o in remaining {
            match o.seen(&h.client, &h.ns).await {
                Some(s) if s.ready && s.generation == Some(generation) => {}
                Some(s) => late.push(format!("{:?}/{} not Ready: {}", o.kind, o.short, s.status)),
                None => late.push(format!("{:?}/{} is missing from the API", o.kind, o.short)),
            }
        }
        for o in deleted {
            if let Some(s) = o.seen(&h.client, &h.ns).await {
                late.push(format!("{:?}/{} not released: {}", o.kind, o.short, s.status));
            }
        }
        if late.is_empty() {
            let took = started.elapsed();
            return Ok(if took > SLOW {
                format!("{:.1}s, last: {}", took.as_secs_f64(), last_late.join("; "))
            } else {
                format!("{:.1}s", took.as_secs_f64())
            });
        }
        if started.elapsed() > CONVERGE_TIMEOUT {
            return Err(late.join("\n  "));
        }
        last_late = late;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The round's resources in moto, by kind: every name under the namespace prefix.
async fn cloud(h: &Harness) -> Vec<(Kind, String)> {
    let prefix = format!("{}-", h.ns);
    let mut found = Vec::new();
    let buckets = h.s3.list_buckets().send().await.expect("ListBuckets");
    for b in buckets.buckets() {
        if let Some(n) = b.name().filter(|n| n.starts_with(&prefix)) {
            found.push((Kind::Bucket, n.to_owned()));
        }
    }
    let queues = h
        .sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .expect("ListQueues");
    for url in queues.queue_urls() {
        let n = url.rsplit('/').next().unwrap_or(url);
        found.push((Kind::Queue, n.to_owned()));
    }
    let mut start: Option<String> = None;
    loop {
        let page = h
            .dynamodb
            .list_tables()
            .set_exclusive_start_table_name(start.clone())
            .send()
            .await
            .expect("ListTables");
        for n in page.table_names() {
            if n.starts_with(&prefix) {
                found.push((Kind::Table, n.clone()));
            }
        }
        match page.last_evaluated_table_name() {
            Some(last) => start = Some(last.to_owned()),
            None => break,
        }
    }
    found.sort();
    found
}

/// What the updated spec asks for, checked on a remaining object's resource in moto.
async fn check_settings(h: &Harness, o: &Obj) -> Result<(), String> {
    let phase = |tags: Vec<(String, String)>| {
        let got = tags.iter().find(|(k, _)| k == "phase").map(|(_, v)| v.clone());
        if got.as_deref() == Some("update") {
            Ok(())
        } else {
            Err(format!("{:?}/{}: tags {tags:?}, want phase=update", o.kind, o.short))
        }
    };
    match o.kind {
        Kind::Bucket => {
            let out =
                h.s3.get_bucket_tagging()
                    .bucket(&o.name)
                    .send()
                    .await
                    .map_err(|e| format!("GetBucketTagging {}: {e:?}", o.name))?;
            phase(
                out.tag_set()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect(),
            )
        }
        Kind::Queue => {
            let url = h
                .sqs
                .get_queue_url()
                .queue_name(&o.name)
                .send()
                .await
                .map_err(|e| format!("GetQueueUrl {}: {e:?}", o.name))?
                .queue_url()
                .unwrap_or_default()
                .to_owned();
            let attrs = h
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(Attr::All)
                .send()
                .await
                .map_err(|e| format!("GetQueueAttributes {}: {e:?}", o.name))?
                .attributes()
                .cloned()
                .unwrap_or_default();
            let visibility = attrs.get(&Attr::VisibilityTimeout).map(String::as_str);
            if visibility != Some("60") {
                return Err(format!("Queue/{}: visibility {visibility:?}, want 60", o.short));
            }
            if o.short == "q" {
                let redrive = attrs.get(&Attr::RedrivePolicy).cloned().unwrap_or_default();
                let dlq = format!(":{}-dlq\"", h.ns);
                if !redrive.contains(&dlq) {
                    return Err(format!("Queue/q: redrive policy {redrive:?} does not name the dlq"));
                }
            }
            let tags = h
                .sqs
                .list_queue_tags()
                .queue_url(&url)
                .send()
                .await
                .map_err(|e| format!("ListQueueTags {}: {e:?}", o.name))?;
            phase(
                tags.tags()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        Kind::Table => {
            let table = h
                .dynamodb
                .describe_table()
                .table_name(&o.name)
                .send()
                .await
                .map_err(|e| format!("DescribeTable {}: {e:?}", o.name))?;
            let arn = table.table().and_then(|t| t.table_arn()).unwrap_or_default().to_owned();
            let tags = h
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(|e| format!("ListTagsOfResource {}: {e:?}", o.name))?;
            phase(
                tags.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect(),
            )
        }
    }
}

/// The controller's log lines about `names`, the last `n` of them, shortened.
fn log_lines(h: &Harness, names: &[&str], n: usize) -> String {
    let log = std::fs::read_to_string(&h.log).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| names.iter().any(|name| l.contains(name)))
        .collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    {}", l.chars().take(400).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Default)]
struct Totals {
    kills: usize,
    kills_mid_writes: usize,
    kills_mid_work: usize,
    kills_with_create_pending: usize,
    created: usize,
    deleted: usize,
    duplicates: usize,
    orphans: usize,
    missing: usize,
    wrong_settings: usize,
    unconverged: usize,
    pending_left: usize,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.kills += o.kills;
        self.kills_mid_writes += o.kills_mid_writes;
        self.kills_mid_work += o.kills_mid_work;
        self.kills_with_create_pending += o.kills_with_create_pending;
        self.created += o.created;
        self.deleted += o.deleted;
        self.duplicates += o.duplicates;
        self.orphans += o.orphans;
        self.missing += o.missing;
        self.wrong_settings += o.wrong_settings;
        self.unconverged += o.unconverged;
        self.pending_left += o.pending_left;
    }
}

struct Round {
    line: String,
    totals: Totals,
    failure: Option<String>,
}

async fn round(i: usize, seed: u64) -> Round {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(i as u64));
    let mut h = Harness::new(&format!("crash{i}")).await;
    wait_ready_endpoint(&h).await;
    let started = Instant::now();
    // Half the rounds let each phase finish before the next; the others overlap them.
    let settled = i.is_multiple_of(2);
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    let mut objs = objects(&h);
    rng.shuffle(&mut objs);
    let delays: Vec<u64> = (0..3).map(|_| rng.u64(0..=MAX_KILL_DELAY_MS)).collect();
    let (client, ns) = (h.client.clone(), h.ns.clone());
    let mut kills = Vec::new();

    // 1. Create.
    let specs: Vec<Value> = objs.iter().map(|o| create_spec(o, &h)).collect();
    kills.push(
        kill_during(
            &mut h,
            Duration::from_millis(delays[0]),
            async {
                for (o, spec) in objs.iter().zip(&specs) {
                    o.apply(&client, &ns, spec.clone()).await;
                }
            },
            async |h: &Harness| at_create_kill(h, &objs).await,
        )
        .await,
    );
    totals.created = objs.len();
    let mut settle = Vec::new();
    if settled {
        match converge(&h, &objs, 1, &[]).await {
            Ok(took) => settle.push(format!("create {took}")),
            Err(e) => failures.push(format!("after the create:\n  {e}")),
        }
    }

    // 2. Update.
    kills.push(
        kill_during(
            &mut h,
            Duration::from_millis(delays[1]),
            async {
                for o in &objs {
                    o.merge_spec(&client, &ns, update_spec(o)).await;
                }
            },
            async |h: &Harness| at_update_kill(h, &objs).await,
        )
        .await,
    );
    if settled {
        match converge(&h, &objs, 2, &[]).await {
            Ok(took) => settle.push(format!("update {took}")),
            Err(e) => failures.push(format!("after the update:\n  {e}")),
        }
    }

    // 3. Delete: each Bucket and the Table on a coin toss; the queue, or the queue and its
    // dead-letter queue, or neither. At least one object.
    let mut doomed: BTreeSet<&str> = ["b1", "b2", "t"].into_iter().filter(|_| rng.bool()).collect();
    match rng.u8(0..3) {
        0 => {}
        1 => {
            doomed.insert("q");
        }
        _ => {
            doomed.extend(["q", "dlq"]);
        }
    }
    if doomed.is_empty() {
        doomed.insert("b1");
    }
    let (deleted, remaining): (Vec<Obj>, Vec<Obj>) = objs.iter().cloned().partition(|o| doomed.contains(o.short));
    kills.push(
        kill_during(
            &mut h,
            Duration::from_millis(delays[2]),
            async {
                for o in &deleted {
                    o.delete(&client, &ns).await;
                }
            },
            async |h: &Harness| at_delete_kill(h, &deleted).await,
        )
        .await,
    );
    totals.kills = kills.len();
    totals.kills_mid_writes = kills.iter().filter(|(during, _)| *during).count();
    totals.kills_mid_work = kills.iter().filter(|(_, k)| k.partial || k.pending > 0).count();
    totals.kills_with_create_pending = kills.iter().filter(|(_, k)| k.pending > 0).count();
    totals.deleted = deleted.len();

    // 4. Converge, then look at the cloud.
    match converge(&h, &remaining, 2, &deleted).await {
        Ok(took) => settle.push(format!("end {took}")),
        Err(e) => {
            totals.unconverged += e.lines().count();
            failures.push(format!("never converged:\n  {e}"));
        }
    }
    let converged_in = started.elapsed();
    let found = cloud(&h).await;
    let mut wanted: Vec<(Kind, String)> = remaining.iter().map(|o| (o.kind, o.name.clone())).collect();
    wanted.sort();
    for (kind, name) in &found {
        if wanted.iter().any(|(k, n)| k == kind && n == name) {
            continue;
        }
        if deleted.iter().any(|o| o.kind == *kind && o.name == *name) {
            totals.orphans += 1;
            failures.push(format!(
                "orphan: {kind:?} '{name}' is left in moto, its object was deleted"
            ));
        } else {
            totals.duplicates += 1;
            failures.push(format!("duplicate: {kind:?} '{name}' in moto belongs to no object"));
        }
    }
    for (kind, name) in &wanted {
        if !found.iter().any(|(k, n)| k == kind && n == name) {
            totals.missing += 1;
            failures.push(format!(
                "missing: {kind:?} '{name}' is not in moto, its object is there"
            ));
        }
    }
    for o in &remaining {
        if found.iter().any(|(k, n)| *k == o.kind && *n == o.name)
            && let Err(e) = check_settings(&h, o).await
        {
            totals.wrong_settings += 1;
            failures.push(format!("not updated: {e}"));
        }
        // A create whose answer died with the controller is settled by the next one.
        if o.seen(&h.client, &h.ns).await.is_some_and(|s| s.pending) {
            totals.pending_left += 1;
            failures.push(format!("create-pending left on Ready {:?} '{}'", o.kind, o.name));
        }
    }

    let order: Vec<&str> = objs.iter().map(|o| o.short).collect();
    let gone: Vec<&str> = deleted.iter().map(|o| o.short).collect();
    let kill = |phase: usize| {
        let (during, seen) = &kills[phase];
        format!(
            "@{}ms{}{}",
            delays[phase],
            if *during { "(mid-writes)" } else { "" },
            seen.text
        )
    };
    let line = format!(
        "round {i:2} {}: order {order:?}; kill create{} update{} delete{}; deleted {gone:?}; converged ({}) in {:.1}s; \
         moto: {} as wanted, {} orphans, {} duplicates, {} missing{}",
        if settled { "settled" } else { "overlap" },
        kill(0),
        kill(1),
        kill(2),
        settle.join(", "),
        converged_in.as_secs_f64(),
        found.len() - totals.orphans - totals.duplicates,
        totals.orphans,
        totals.duplicates,
        totals.missing,
        if totals.pending_left > 0 {
            format!("; create-pending left on {} Ready objects", totals.pending_left)
        } else {
            String::new()
        },
    );
    let failure = (!failures.is_empty()).then(|| {
        let names: Vec<&str> = objs.iter().map(|o| o.name.as_str()).collect();
        let mut text = format!("{line}\n  namespace {}, seed {seed}\n  ", h.ns);
        text.push_str(&failures.join("\n  "));
        let _ = write!(
            text,
            "\n  moto under the prefix: {found:?}\n  controller log {} (last lines about these objects):\n{}",
            h.log.display(),
            log_lines(&h, &names, 40)
        );
        text
    });
    h.kill_controller();
    Round { line, totals, failure }
}

#[tokio::test]
async fn kill_anywhere_leaves_no_duplicate_and_no_orphan() {
    use futures::StreamExt;
    // CLOUDKIT_CRASH_SEED replays a run's choices (order, delays, what is deleted); the
    // timing of the controller itself is never the same twice.
    let seed = std::env::var("CLOUDKIT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash: seed {seed}");
    let started = Instant::now();
    let rounds: Vec<Round> = futures::stream::iter(0..ROUNDS)
        .map(|i| async move {
            let r = round(i, seed).await;
            println!("{}", r.line);
            r
        })
        .buffer_unordered(LANES)
        .collect()
        .await;
    let mut t = Totals::default();
    let mut failures = Vec::new();
    for r in rounds {
        t.add(&r.totals);
        failures.extend(r.failure);
    }
    println!(
        "crash: {ROUNDS} rounds in {:.1}s (seed {seed}): {} kills ({} before the writes were done, {} with work half done, \
         {} with a create in flight), {} objects created, {} deleted → {} duplicates, {} orphans, {} missing, \
         {} not updated, {} never converged; create-pending left on Ready objects: {}",
        started.elapsed().as_secs_f64(),
        t.kills,
        t.kills_mid_writes,
        t.kills_mid_work,
        t.kills_with_create_pending,
        t.created,
        t.deleted,
        t.duplicates,
        t.orphans,
        t.missing,
        t.wrong_settings,
        t.unconverged,
        t.pending_left,
    );
    assert!(
        failures.is_empty(),
        "{} rounds failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
