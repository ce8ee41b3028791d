//! Bad input: every manifest of `tests/bad-manifests/` is either refused at apply by the CRD
//! schema (`# expect: schema <part of the error>`) or ends `Stalled=True`, `Ready=False`,
//! with a Warning Event and a message naming each field (`# expect: stalled <field>...`),
//! and the controller makes no cloud call for any of them, not even to release them.
//! Files marked `# known-bug:` are skipped and listed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloudkit_crds::{Bucket, Function, ProviderConfig, Queue, Table, Topic};
use cloudkit_e2e::Harness;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject};
use serde_json::Value;

/// How long every stalled object together may take to be judged, and released.
const WAIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
enum Expect {
    /// Refused at apply; the error contains this text.
    Schema(String),
    /// Stored, then `Stalled=True` with a message naming each of these fields.
    Stalled(Vec<String>),
}

#[derive(Debug, Clone)]
struct Case {
    file: PathBuf,
    kind: String,
    name: String,
    expect: Expect,
    known_bug: Option<String>,
}

impl Case {
    fn label(&self) -> String {
        format!(
            "{} ({}/{})",
            self.file.file_name().unwrap_or_default().to_string_lossy(),
            self.kind,
            self.name
        )
    }

    /// The Ready reason a stalled object of this kind must show.
    fn reason(&self) -> &'static str {
        if self.kind == "ProviderConfig" {
            "InvalidProviderConfig"
        } else {
            "InvalidSpec"
        }
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bad-manifests")
}

/// Reads the header comments and the object's kind and name; the corpus keeps to one
/// object per file, top-level `kind:`, `metadata:` then `  name:`, and no namespace.
fn parse(file: &Path) -> Case {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let shown = file.display();
    let mut expect = None;
    let mut known_bug = None;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# expect: ") {
            expect = Some(match rest.split_once(' ') {
                Some(("schema", text)) if !text.trim().is_empty() => Expect::Schema(text.trim().to_owned()),
                Some(("stalled", fields)) if !fields.trim().is_empty() => {
                    Expect::Stalled(fields.split_whitespace().map(str::to_owned).collect())
                }
                _ => panic!("{shown}: `# expect: schema <text>` or `# expect: stalled <field>...`, not {rest:?}"),
            });
        } else if let Some(rest) = line.strip_prefix("# known-bug: ") {
            known_bug = Some(rest.trim().to_owned());
        }
    }
    let expect = expect.unwrap_or_else(|| panic!("{shown}: no `# expect:` line in the header comments"));
    let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_owned();
    let kinds: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(unquote)
        .collect();
    assert_eq!(kinds.len(), 1, "{shown}: one object per file, with one top-level kind");
    let name = text
        .lines()
        .skip_while(|l| *l != "metadata:")
        .find_map(|l| l.strip_prefix("  name: "))
        .map(unquote)
        .unwrap_or_else(|| panic!("{shown}: no metadata.name"));
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("namespace:")),
        "{shown}: objects have no namespace; the test sets it"
    );
    Case {
        file: file.to_owned(),
        kind: kinds[0].clone(),
        name,
        expect,
        known_bug,
    }
}

fn corpus() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/bad-manifests/ is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|f| parse(f)).collect()
}

fn resource(kind: &str) -> ApiResource {
    match kind {
        "Bucket" => ApiResource::erase::<Bucket>(&()),
        "Table" => ApiResource::erase::<Table>(&()),
        "Queue" => ApiResource::erase::<Queue>(&()),
        "Topic" => ApiResource::erase::<Topic>(&()),
        "Function" => ApiResource::erase::<Function>(&()),
        "ProviderConfig" => ApiResource::erase::<ProviderConfig>(&()),
        other => panic!("{other} is not a CloudKit kind"),
    }
}

fn dynamic(h: &Harness, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(h.client.clone(), &h.ns, &resource(kind))
}

fn conditions(o: &DynamicObject) -> BTreeMap<String, Value> {
    o.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["type"].as_str()?.to_owned(), c.clone())))
        .collect()
}

/// Why `o` does not (yet) show what `case` expects, or `None` when it does.
fn stalled_problem(case: &Case, fields: &[String], o: &DynamicObject, events: &[Event]) -> Option<String> {
    let conditions = conditions(o);
    let get = |type_: &str, key: &str| conditions.get(type_).and_then(|c| c[key].as_str()).unwrap_or_default();
    if get("Stalled", "status") != "True" {
        return Some(format!("Stalled is not True; status: {}", o.data["status"]));
    }
    if (get("Ready", "status"), get("Ready", "reason")) != ("False", case.reason()) {
        return Some(format!(
            "Ready is not False/{}; status: {}",
            case.reason(),
            o.data["status"]
        ));
    }
    if get("Reconciling", "status") != "False" {
        return Some(format!("Reconciling is not False; status: {}", o.data["status"]));
    }
    let observed = o.data["status"]["observedGeneration"].as_i64();
    if observed != o.metadata.generation {
        return Some(format!(
            "status.observedGeneration {observed:?} is not metadata.generation {:?}",
            o.metadata.generation
        ));
    }
    for (type_, message) in [
        ("Stalled", get("Stalled", "message")),
        ("Ready", get("Ready", "message")),
    ] {
        let unnamed: Vec<&String> = fields.iter().filter(|f| !message.contains(&format!("{f}: "))).collect();
        if !unnamed.is_empty() {
            return Some(format!("the {type_} message does not name {unnamed:?}: {message}"));
        }
    }
    let warned = events.iter().any(|e| {
        let regarding = e.regarding.as_ref();
        regarding.and_then(|r| r.kind.as_deref()) == Some(case.kind.as_str())
            && regarding.and_then(|r| r.name.as_deref()) == Some(case.name.as_str())
            && e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some(case.reason())
            && fields
                .iter()
                .all(|f| e.note.as_deref().unwrap_or_default().contains(f.as_str()))
    });
    if !warned {
        return Some(format!("no Warning Event {} naming {fields:?}", case.reason()));
    }
    None
}

async fn events(h: &Harness) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(h.client.clone(), &h.ns);
    api.list(&Default::default()).await.expect("list events").items
}

fn stderr_and_stdout(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

#[tokio::test]
async fn bad_manifests_are_refused_or_stalled_without_cloud_calls() {
    let started = Instant::now();
    let cases = corpus();
    let kinds: BTreeSet<&str> = cases.iter().map(|c| c.kind.as_str()).collect();
    for kind in ["Bucket", "Table", "Queue", "Topic", "Function"] {
        assert!(kinds.contains(kind), "the corpus has no {kind}");
    }
    assert!(
        cases.len() >= 30,
        "the corpus has {} manifests, want at least 30",
        cases.len()
    );
    let names: BTreeSet<(&str, &str)> = cases.iter().map(|c| (c.kind.as_str(), c.name.as_str())).collect();
    assert_eq!(names.len(), cases.len(), "two manifests name the same object");

    let (known, cases): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.known_bug.is_some());
    for case in &known {
        println!(
            "SKIP (known bug) {}: {}",
            case.label(),
            case.known_bug.as_deref().unwrap_or_default()
        );
    }

    let h = Harness::new("bad-input").await;
    // The harness's `default` ProviderConfig Ready: the controller is up, its caches filled.
    // Checking a ProviderConfig reads its Secret and calls no cloud, so the count now is
    // what start-up cost, and nothing below may add to it.
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    let deadline = Instant::now() + WAIT;
    loop {
        let pc = configs.get_opt("default").await.expect("get ProviderConfig");
        let ready = pc
            .as_ref()
            .and_then(|pc| pc.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ProviderConfig default not Ready: {pc:?}\ncontroller log: {}",
            h.log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let baseline = h.cloud_call_total().await;
    println!("cloud calls once the ProviderConfig was Ready: {baseline}");

    let mut failures: Vec<String> = Vec::new();

    // Stored objects first, all in one apply, so that the controller judges them while the
    // schema cases run.
    let stalled: Vec<(&Case, &Vec<String>)> = cases
        .iter()
        .filter_map(|c| match &c.expect {
            Expect::Stalled(fields) => Some((c, fields)),
            Expect::Schema(_) => None,
        })
        .collect();
    let mut args: Vec<String> = vec!["apply".into()];
    for (case, _) in &stalled {
        args.push("-f".into());
        args.push(case.file.display().to_string());
    }
    let out = h.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    if !out.status.success() {
        failures.push(format!(
            "applying the manifests expected to stall failed:\n{}",
            stderr_and_stdout(&out)
        ));
    }

    let mut applied: Vec<&Case> = stalled.iter().map(|(c, _)| *c).collect();
    let mut schema_count = 0;
    for case in &cases {
        let Expect::Schema(text) = &case.expect else {
            continue;
        };
        schema_count += 1;
        let path = case.file.display().to_string();
        let out = h.kubectl(&["apply", "-f", &path]);
        let said = stderr_and_stdout(&out);
        if out.status.success() {
            failures.push(format!(
                "{}: applied, but the schema should refuse it: {said}",
                case.label()
            ));
            applied.push(case);
        } else if !said.contains(text.as_str()) {
            failures.push(format!(
                "{}: refused, but the error lacks {text:?}: {said}",
                case.label()
            ));
        }
    }

    // Every stalled object judged as expected, polled kind by kind.
    let mut pending: BTreeMap<(String, String), (&Case, &Vec<String>, String)> = stalled
        .iter()
        .map(|(c, f)| ((c.kind.clone(), c.name.clone()), (*c, *f, "not found".to_owned())))
        .collect();
    let deadline = Instant::now() + WAIT;
    while !pending.is_empty() && Instant::now() < deadline {
        let events = events(&h).await;
        let kinds: BTreeSet<String> = pending.keys().map(|(k, _)| k.clone()).collect();
        for kind in kinds {
            let objects = dynamic(&h, &kind)
                .list(&Default::default())
                .await
                .expect("list objects");
            for o in objects.items {
                let key = (kind.clone(), o.metadata.name.clone().unwrap_or_default());
                let Some((case, fields, _)) = pending.get(&key) else {
                    continue;
                };
                match stalled_problem(case, fields, &o, &events) {
                    None => {
                        pending.remove(&key);
                    }
                    Some(problem) => {
                        if let Some(entry) = pending.get_mut(&key) {
                            entry.2 = problem;
                        }
                    }
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for (case, _, problem) in pending.values() {
        failures.push(format!("{}: {problem}", case.label()));
    }
    let judged_in = started.elapsed();

    // Still nothing sent to a cloud, a few backoff rounds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_judging = h.cloud_call_total().await;
    if after_judging != baseline {
        failures.push(format!(
            "cloud calls went from {baseline} to {after_judging}: {:?}",
            h.cloud_calls().await
        ));
    }

    // An object that never got past its checks is released without a cloud call.
    for case in &applied {
        match dynamic(&h, &case.kind)
            .delete(&case.name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => failures.push(format!("{}: delete: {e}", case.label())),
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut left: Vec<&Case> = applied.clone();
    while !left.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for case in left {
            if dynamic(&h, &case.kind)
                .get_opt(&case.name)
                .await
                .expect("get object")
                .is_some()
            {
                still.push(case);
            }
        }
        left = still;
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for case in &left {
        failures.push(format!("{}: not released after deletion", case.label()));
    }
    let at_end = h.cloud_call_total().await;
    if at_end != baseline {
        failures.push(format!(
            "cloud calls went from {baseline} to {at_end} by the end: {:?}",
            h.cloud_calls().await
        ));
    }

    let (health, _) = h.http_get("/healthz").await;
    if health != 200 {
        failures.push(format!("the controller's /healthz answers {health}"));
    }
    let log = std::fs::read_to_string(&h.log).unwrap_or_default();
    if log.contains("panicked") {
        failures.push(format!("the controller panicked; see {}", h.log.display()));
    }

    println!(
        "{} manifests: {} refused by the schema, {} stalled (judged in {:.1}s), {} skipped as known bugs; \
         cloud calls {baseline} → {at_end}; {:.1}s in all",
        cases.len() + known.len(),
        schema_count,
        stalled.len(),
        judged_in.as_secs_f64(),
        known.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}\ncontroller log: {}",
        failures.len(),
        failures.join("\n"),
        h.log.display()
    );
}
