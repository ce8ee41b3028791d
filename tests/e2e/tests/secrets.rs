//! Credentials never leak: one run of the controller with `--log-format json` and one with
//! `--log-format pretty`, both at `RUST_LOG=debug`, through the paths that handle them (a
//! Bucket made and deleted, a connection Secret written, a Secret missing a key, a cloud that
//! refuses or drops the connection); then neither log, nor any Event, nor any object's status,
//! nor any Secret the controller wrote holds any of the credential values, whole or in part.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudkit_crds::{Bucket, ProviderConfig};
use cloudkit_e2e::{CountingEndpoint, Harness, condition, eventually, ready_at_generation};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The credentials of this run: distinctive, so any occurrence anywhere is a leak.
struct Creds {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
}

impl Creds {
    /// Random alphanumerics (moto accepts any credentials): no character that JSON or a
    /// terminal would escape, so a leak cannot hide behind an escape sequence.
    fn new() -> Self {
        let random = |n: usize| -> String { (0..n).map(|_| fastrand::alphanumeric()).collect() };
        Self {
            access_key_id: format!("AKIA{}", (0..16).map(|_| fastrand::uppercase()).collect::<String>()),
            secret_access_key: random(40),
            session_token: format!("IQoJb3JpZ2luX2Vj{}", random(120)),
        }
    }

    fn values(&self) -> [(&'static str, &str); 3] {
        [
            ("accessKeyId", &self.access_key_id),
            ("secretAccessKey", &self.secret_access_key),
            ("sessionToken", &self.session_token),
        ]
    }
}

/// Any window this long of a credential counts as a leak: a truncated or split value too.
const WINDOW: usize = 16;

/// Every way a credential could show up in `text`: a 16-character window of the value, or
/// the whole value base64-encoded (a Secret's `data` as the API serves it). Finds nothing
/// when `text` is clean, else one line per finding with the surrounding text.
fn leaks(creds: &Creds, text: &str) -> Vec<String> {
    let text = strip_ansi(text);
    let mut found = Vec::new();
    for (key, value) in creds.values() {
        let base64 = serde_json::to_string(&ByteString(value.as_bytes().to_vec())).expect("base64");
        let base64 = base64.trim_matches('"').to_owned();
        let windows = (0..=value.len() - WINDOW).map(|i| value[i..i + WINDOW].to_owned());
        for needle in windows.chain([base64]) {
            if let Some(at) = text.find(&needle) {
                let start = text.floor_char_boundary(at.saturating_sub(200));
                let end = text.ceil_char_boundary((at + needle.len() + 200).min(text.len()));
                found.push(format!("{key} ({needle:?}) in: …{}…", &text[start..end]));
                break;
            }
        }
    }
    found
}

/// The pretty format colours field names: drop the escape sequences so they cannot split a
/// value.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The controller under test, with its own log file and filter; SIGKILLed if the test
/// panics first.
struct Controller {
    child: Option<Child>,
    log: PathBuf,
}

impl Controller {
    fn start(h: &Harness, format: &str) -> Self {
        let bin = std::env::var("CLOUDKIT_BIN").expect("CLOUDKIT_BIN");
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let log = std::env::temp_dir().join(format!("cloudkit-{}-{format}.log", h.ns));
        let file = File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(["controller", "--namespace", &h.ns, "--log-format", format])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            // Everything the controller and its libraries say at debug, where request and
            // response details show up.
            .env("RUST_LOG", "debug")
            .env_remove("CLOUDKIT_LOG_FORMAT")
            .stdout(Stdio::from(file.try_clone().expect("log handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("cloudkit starts");
        Self {
            child: Some(child),
            log,
        }
    }

    /// SIGTERM, so the shutdown path logs too, and SIGKILL if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn apply_json<K>(api: &Api<K>, name: &str, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("cloudkit-e2e").force(), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

async fn secret(h: &Harness, name: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    apply_json(
        &secrets,
        name,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}),
    )
    .await;
}

async fn provider_config(h: &Harness, name: &str, secret: &str, endpoint: &str) {
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    apply_json(
        &configs,
        name,
        json!({
            "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name},
            "spec": {
                "provider": "aws", "region": "us-east-1", "endpoint": endpoint, "resyncInterval": "2s",
                "credentials": {"source": "Secret", "secretRef": {"name": secret}}
            }
        }),
    )
    .await;
}

/// Waits until the ProviderConfig's Ready condition has `status` and `reason`.
async fn wait_config(h: &Harness, name: &str, status: &str, reason: &str) {
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    let started = Instant::now();
    loop {
        let config = configs.get(name).await.expect("get ProviderConfig");
        let ready = config
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if ready.is_some_and(|c| c.status == status && c.reason == reason) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ProviderConfig/{name}: not Ready={status} ({reason}): {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_reason(h: &Harness, name: &str, reason: &str) -> Bucket {
    h.wait_bucket(name, reason, |b| {
        condition(b.status.as_ref(), "Ready").is_some_and(|c| c.reason == reason)
    })
    .await
}

fn secret_data(s: &Secret) -> String {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", String::from_utf8_lossy(&v.0)))
        .collect()
}

/// One controller run in `format` through every path that reads or uses the credentials.
/// The objects of earlier runs stay, so a later run reconciles them all again.
async fn exercise(h: &Harness, creds: &Creds, format: &str, dropping: &CountingEndpoint) -> Controller {
    let controller = Controller::start(h, format);

    // Made, with its outputs in a connection Secret.
    let ready = h.bucket_name(&format!("ready-{format}"));
    let conn = format!("conn-{format}");
    h.apply_bucket(
        &ready,
        json!({"providerConfigRef": {"name": "good"}, "versioning": true, "writeConnectionSecretToRef": {"name": conn}}),
    )
    .await;
    // A Secret missing a key, either key.
    let no_secret_key = h.bucket_name(&format!("no-secret-key-{format}"));
    h.apply_bucket(&no_secret_key, json!({"providerConfigRef": {"name": "no-secret-key"}}))
        .await;
    let no_access_key = h.bucket_name(&format!("no-access-key-{format}"));
    h.apply_bucket(&no_access_key, json!({"providerConfigRef": {"name": "no-access-key"}}))
        .await;
    // A cloud that refuses the connection, and one that accepts and drops it.
    let refused = h.bucket_name(&format!("refused-{format}"));
    h.apply_bucket(&refused, json!({"providerConfigRef": {"name": "refused"}}))
        .await;
    let dropped = h.bucket_name(&format!("dropped-{format}"));
    h.apply_bucket(&dropped, json!({"providerConfigRef": {"name": "dropped"}}))
        .await;

    h.wait_bucket(&ready, "Ready", ready_at_generation).await;
    h.wait_stalled(&no_secret_key, "CredentialsInvalid").await;
    h.wait_stalled(&no_access_key, "CredentialsInvalid").await;
    wait_reason(h, &refused, "ProviderError").await;
    wait_reason(h, &dropped, "ProviderError").await;
    let first = dropping.connections();
    eventually("a retry on the dropping endpoint", || async {
        dropping.connections() > first
    })
    .await;
    wait_config(h, "good", "True", "Valid").await;
    wait_config(h, "no-secret-key", "False", "CredentialsInvalid").await;
    wait_config(h, "no-access-key", "False", "CredentialsInvalid").await;

    // The connection Secret holds outputs, not credentials.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let written = secrets.get(&conn).await.expect("connection Secret written");
    let data = secret_data(&written);
    assert!(data.contains(&format!("name={ready}")), "{data}");
    let found = leaks(creds, &data);
    assert!(found.is_empty(), "connection Secret {conn}:\n{}", found.join("\n"));

    // Deletion reads the credentials too.
    h.delete_bucket(&ready).await;
    h.wait_gone(&ready).await;
    assert!(!h.bucket_exists(&ready).await);
    controller
}

/// Everything the cluster holds about the run, but the Secrets the test wrote itself.
async fn cluster_text(h: &Harness, own: &[&str]) -> Vec<(String, String)> {
    let lp = ListParams::default();
    let mut texts = Vec::new();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(h.client.clone(), &h.ns);
    let events = events.list(&lp).await.expect("list events.k8s.io/v1 Events");
    assert!(!events.items.is_empty(), "no Events recorded");
    texts.push((
        "Events (events.k8s.io/v1)".to_owned(),
        serde_json::to_string(&events).expect("json"),
    ));
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(h.client.clone(), &h.ns);
    let core = core.list(&lp).await.expect("list v1 Events");
    texts.push(("Events (v1)".to_owned(), serde_json::to_string(&core).expect("json")));
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    for c in configs.list(&lp).await.expect("list ProviderConfigs") {
        let name = format!("ProviderConfig/{}", c.metadata.name.clone().unwrap_or_default());
        texts.push((name, serde_json::to_string(&c).expect("json")));
    }
    for b in h.buckets.list(&lp).await.expect("list Buckets") {
        let name = format!("Bucket/{}", b.metadata.name.clone().unwrap_or_default());
        texts.push((name, serde_json::to_string(&b).expect("json")));
    }
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    for s in secrets.list(&lp).await.expect("list Secrets") {
        let name = s.metadata.name.clone().unwrap_or_default();
        if own.contains(&name.as_str()) {
            continue;
        }
        let text = format!("{}\n{}", serde_json::to_string(&s).expect("json"), secret_data(&s));
        texts.push((format!("Secret/{name}"), text));
    }
    texts
}

fn read_log(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Where a log line comes from: level and target (`aws_sdk_s3::endpoint_auth`), from the
/// JSON fields or, in the pretty format, the first `crate::module:` token after the level.
fn origin(line: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return format!(
            "{} {}",
            v["level"].as_str().unwrap_or("?"),
            v["target"].as_str().unwrap_or("?")
        );
    }
    let line = strip_ansi(line);
    let mut words = line.split_whitespace().skip(1);
    let level = words.next().unwrap_or("?");
    let target = words
        .find(|w| w.ends_with(':') && w.contains("::"))
        .map(|w| w.trim_end_matches(':'));
    format!("{level} {}", target.unwrap_or("?"))
}

/// The leaks in one log, line by line: each (credential, level and target) once with its
/// count and first line, so a failure says which code logs what.
fn log_leaks(creds: &Creds, format: &str, path: &Path) -> Vec<String> {
    let log = read_log(path);
    let mut seen: std::collections::BTreeMap<(String, String), (usize, usize, String)> = Default::default();
    for (n, line) in log.lines().enumerate() {
        for finding in leaks(creds, line) {
            let key = finding.split(' ').next().unwrap_or("?").to_owned();
            let entry = seen.entry((key, origin(line))).or_insert((0, n + 1, finding));
            entry.0 += 1;
        }
    }
    seen.into_iter()
        .map(|((key, origin), (count, first, finding))| {
            format!(
                "{format} log {}: {key} on {count} line(s) from {origin}, first line {first}: {finding}",
                path.display()
            )
        })
        .collect()
}

#[tokio::test]
async fn credentials_reach_no_log_event_or_status() {
    let mut h = Harness::new("secrets").await;
    // The harness's controller runs at info with json logs only: this test runs its own.
    h.kill_controller();
    let creds = Creds::new();
    let own = ["aws", "creds", "no-secret-key", "no-access-key"];
    secret(
        &h,
        "creds",
        &[
            ("accessKeyId", &creds.access_key_id),
            ("secretAccessKey", &creds.secret_access_key),
            ("sessionToken", &creds.session_token),
        ],
    )
    .await;
    // The values are there, under keys the controller does not read.
    secret(
        &h,
        "no-secret-key",
        &[
            ("accessKeyId", &creds.access_key_id),
            ("secret_access_key", &creds.secret_access_key),
            ("sessionToken", &creds.session_token),
        ],
    )
    .await;
    secret(
        &h,
        "no-access-key",
        &[
            ("access_key_id", &creds.access_key_id),
            ("secretAccessKey", &creds.secret_access_key),
            ("sessionToken", &creds.session_token),
        ],
    )
    .await;
    let dropping = CountingEndpoint::start().await;
    provider_config(&h, "good", "creds", &h.endpoint).await;
    provider_config(&h, "no-secret-key", "no-secret-key", &h.endpoint).await;
    provider_config(&h, "no-access-key", "no-access-key", &h.endpoint).await;
    provider_config(&h, "refused", "creds", "http://127.0.0.1:1").await;
    provider_config(&h, "dropped", "creds", &dropping.url).await;

    let started = Instant::now();
    let mut logs = Vec::new();
    for format in ["json", "pretty"] {
        let mut controller = exercise(&h, &creds, format, &dropping).await;
        controller.stop();
        logs.push((format, controller.log.clone()));
    }
    println!("two controller runs took {:.1} s", started.elapsed().as_secs_f64());

    // The searches work: the test's own Secret holds the values, base64-encoded as served.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let own_secret = secrets.get("creds").await.expect("the test's Secret");
    let own_text = serde_json::to_string(&own_secret).expect("json");
    assert_eq!(
        leaks(&creds, &own_text).len(),
        3,
        "the search finds nothing: {own_text}"
    );
    assert_eq!(leaks(&creds, &secret_data(&own_secret)).len(), 3);

    let mut found = Vec::new();
    for (format, path) in &logs {
        let log = read_log(path);
        let lines = log.lines().count();
        println!("{format} log: {} ({lines} lines, {} bytes)", path.display(), log.len());
        // The logs are the ones asked for, in depth: debug lines, the failures, each format.
        assert!(
            log.contains("DEBUG"),
            "{format} log has no debug line: {}",
            path.display()
        );
        assert!(
            log.contains("lacks secretAccessKey") && log.contains("lacks accessKeyId"),
            "{format} log does not report the incomplete Secrets: {}",
            path.display()
        );
        let json_lines = log.lines().filter(|l| serde_json::from_str::<Value>(l).is_ok()).count();
        match *format {
            "json" => assert_eq!(json_lines, lines, "lines that are not JSON in {}", path.display()),
            _ => assert_eq!(json_lines, 0, "JSON lines in the pretty log {}", path.display()),
        }
        found.extend(log_leaks(&creds, format, path));
    }
    let texts = cluster_text(&h, &own).await;
    for (what, text) in &texts {
        found.extend(leaks(&creds, text).into_iter().map(|l| format!("{what}: {l}")));
    }
    assert!(
        texts
            .iter()
            .any(|(what, text)| what.starts_with("Events") && text.contains("CredentialsInvalid")),
        "no CredentialsInvalid Event"
    );
    assert!(
        texts
            .iter()
            .any(|(what, text)| what.starts_with("Bucket/") && text.contains("ProviderError")),
        "no ProviderError status"
    );
    assert!(found.is_empty(), "credential values leaked:\n{}", found.join("\n\n"));
}
