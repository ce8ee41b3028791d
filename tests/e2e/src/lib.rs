#![forbid(unsafe_code)]
//! Harness for the end-to-end tests: a namespace of its own per test, the real `cloudkit`
//! binary as a child process, and an S3 client on the same endpoint to check the cloud.
//!
//! Needs a cluster (`KUBECONFIG`) with the CRDs installed, an S3 endpoint
//! (`CLOUDKIT_AWS_ENDPOINT`) and the binary (`CLOUDKIT_BIN`); `scripts/test.sh` sets all
//! three from `scripts/dev-env.sh`, or point them at any cluster and S3-compatible store.

pub mod bench;
pub mod entra;
pub mod gcp;
pub mod proxy;

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use cloudkit_crds::common::Condition;
use cloudkit_crds::{Bucket, Managed, ManagedStatus, ProviderConfig};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the e2e tests through scripts/test.sh, or export KUBECONFIG, CLOUDKIT_AWS_ENDPOINT and CLOUDKIT_BIN")
    })
}

pub struct Harness {
    pub client: Client,
    pub ns: String,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub endpoint: String,
    pub buckets: Api<Bucket>,
    controller: Option<Child>,
    /// The kubeconfig the controller is started with, when not the test's own (to put a
    /// proxy between it and the apiserver).
    pub controller_kubeconfig: Option<PathBuf>,
    pub log: PathBuf,
    pub metrics_port: u16,
    /// Extra environment for the controller started next (workload identity, TLS roots).
    pub controller_env: Vec<(String, String)>,
}

impl Harness {
    /// A fresh namespace with a `default` ProviderConfig on the S3 endpoint, resyncing every
    /// 2s so drift tests are quick, and a controller watching only that namespace.
    pub async fn new(test: &str) -> Self {
        let endpoint = required_env("CLOUDKIT_AWS_ENDPOINT");
        let client = Client::try_default().await.expect("KUBECONFIG reaches a cluster");
        let ns = format!("e2e-{test}-{}", fastrand::u32(..) % 100_000);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        apply(
            &namespaces,
            &ns,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        apply(
            &secrets,
            "aws",
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"},
                "stringData": {"accessKeyId": "testing", "secretAccessKey": "testing"}
            }),
        )
        .await;
        let log = std::env::temp_dir().join(format!("cloudkit-{ns}.log"));
        let sdk = sdk_config(&endpoint).await;
        let mut h = Self {
            buckets: Api::namespaced(client.clone(), &ns),
            s3: aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build()),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            client,
            ns,
            endpoint,
            controller: None,
            controller_kubeconfig: None,
            log,
            metrics_port: 0,
            controller_env: Vec::new(),
        };
        h.provider_config("default", &h.endpoint.clone()).await;
        h.start_controller();
        h
    }

    pub async fn provider_config(&self, name: &str, endpoint: &str) {
        self.provider_config_in_region(name, endpoint, "us-east-1").await;
    }

    /// A ProviderConfig for a cloud with no backend for some kinds yet, pointed at `endpoint`.
    pub async fn provider_config_for(&self, name: &str, provider: &str, endpoint: &str) {
        let api: Api<ProviderConfig> = Api::namespaced(self.client.clone(), &self.ns);
        apply(
            &api,
            name,
            json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name},
                "spec": {"provider": provider, "endpoint": endpoint, "resyncInterval": "2s"}
            }),
        )
        .await;
    }

    /// An AWS ProviderConfig as `provider_config` makes it, with the fields of `extra` added
    /// to its spec.
    pub async fn provider_config_with(&self, name: &str, endpoint: &str, extra: Value) {
        let mut spec = json!({
            "provider": "aws", "region": "us-east-1", "endpoint": endpoint, "resyncInterval": "2s",
            "credentials": {"source": "Secret", "secretRef": {"name": "aws"}}
        });
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        let api: Api<ProviderConfig> = Api::namespaced(self.client.clone(), &self.ns);
        apply(
            &api,
            name,
            json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name},
                "spec": spec
            }),
        )
        .await;
    }

    pub async fn provider_config_in_region(&self, name: &str, endpoint: &str, region: &str) {
        let api: Api<ProviderConfig> = Api::namespaced(self.client.clone(), &self.ns);
        apply(
            &api,
            name,
            json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name},
                "spec": {
                    "provider": "aws", "region": region, "endpoint": endpoint, "resyncInterval": "2s",
                    "credentials": {"source": "Secret", "secretRef": {"name": "aws"}}
                }
            }),
        )
        .await;
    }

    pub fn start_controller(&mut self) {
        self.start_controller_with(&[]);
    }

    /// Starts the controller with `extra` flags after the harness's own.
    pub fn start_controller_with(&mut self, extra: &[&str]) {
        let bin = required_env("CLOUDKIT_BIN");
        // A free port now; taken by the controller a moment later.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        self.metrics_port = probe.local_addr().expect("addr").port();
        drop(probe);
        let metrics_addr = format!("127.0.0.1:{}", self.metrics_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("controller log file");
        let mut command = Command::new(bin);
        if let Some(kubeconfig) = &self.controller_kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command
            .args([
                "controller",
                "--namespace",
                &self.ns,
                "--metrics-addr",
                &metrics_addr,
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("RUST_LOG", "info,kube=warn")
            // The ProviderConfigs here resync every 2s, below the controller's floor.
            .env("CLOUDKIT_MIN_RESYNC_INTERVAL", "1s")
            .envs(self.controller_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cloudkit binary starts");
        self.controller = Some(child);
    }

    /// GET `path` on the controller's metrics/health port: (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_port, path).await
    }

    /// The controller's `cloudkit_cloud_calls_total`, as (service, operation) → count.
    pub async fn cloud_calls(&self) -> std::collections::BTreeMap<(String, String), u64> {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .filter_map(|line| line.strip_prefix("cloudkit_cloud_calls_total{service=\""))
            .filter_map(|rest| {
                let (service, rest) = rest.split_once("\",operation=\"")?;
                let (operation, count) = rest.split_once("\"} ")?;
                Some(((service.to_owned(), operation.to_owned()), count.trim().parse().ok()?))
            })
            .collect()
    }

    /// All cloud calls the controller has made so far.
    pub async fn cloud_call_total(&self) -> u64 {
        self.cloud_calls().await.values().sum()
    }

    /// A histogram the controller exports (`name` without `_bucket`), as cumulative
    /// (upper bound, count) pairs, `+Inf` last.
    pub async fn histogram(&self, name: &str) -> Vec<(f64, u64)> {
        let (_, body) = self.http_get("/metrics").await;
        let prefix = format!("{name}_bucket{{le=\"");
        body.lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, count.trim().parse().ok()?))
            })
            .collect()
    }

    /// Reconciles of one kind the controller has run so far.
    pub async fn reconciles(&self, kind: &str) -> u64 {
        self.metric(&format!("cloudkit_reconciles_total{{kind=\"{kind}\"}}"))
            .await
            .map_or(0, |n| n as u64)
    }

    /// One series the controller exports, named with its labels as `/metrics` prints them
    /// (`cloudkit_reconciles_total{kind="Bucket"}`), or `None` when it has none.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await;
        let prefix = format!("{series} ");
        body.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Waits until the controller serves its metrics: it is up.
    pub async fn metrics_up(&self) {
        eventually("controller metrics", || async {
            std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).is_ok()
        })
        .await;
    }

    /// The port of the shared moto the harness's endpoint names, for relays in front of it.
    pub fn moto_port(&self) -> u16 {
        self.endpoint
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the moto endpoint has a port")
    }

    /// An IAM role in the emulator, named after the namespace, for Lambda functions to run
    /// as (moto's CreateFunction needs it to exist). The harness has no IAM client, and moto
    /// checks no signature: one form POST to its IAM query API does it.
    pub async fn iam_role(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let name = format!("{}-role", self.ns);
        let host = self.endpoint.trim_start_matches("http://").trim_end_matches('/');
        let body = format!(
            "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument=%7B%22Version%22%3A%222012-10-17%22%7D"
        );
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect to moto");
        stream.write_all(request.as_bytes()).await.expect("send CreateRole");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read CreateRole");
        // A second call in the same namespace finds the role there already.
        assert!(
            response.starts_with("HTTP/1.1 200") || response.contains("EntityAlreadyExists"),
            "CreateRole: {response}"
        );
        format!("arn:aws:iam::123456789012:role/{name}")
    }

    /// The running controller's process id (for its RSS and CPU in /proc).
    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }

    /// SIGKILL: no graceful shutdown, as after a crash or an evicted pod.
    pub fn kill_controller(&mut self) {
        if let Some(mut child) = self.controller.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The owner tag the controller (`--cluster-name` left at `default`) puts on what the
    /// object `kind`/`name` of this namespace manages.
    pub fn owner_tag(&self, kind: &str, name: &str) -> (String, String) {
        (
            "cloudkit.dev/owner".to_owned(),
            format!("default/{}/{kind}/{name}", self.ns),
        )
    }

    /// Prefixes names with the namespace so tests never share a bucket in the emulator.
    pub fn bucket_name(&self, short: &str) -> String {
        format!("{}-{short}", self.ns)
    }

    /// The API for a CloudKit kind in the test's namespace.
    pub fn api<K: Managed>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Server-side applies an object of kind `K` with `spec`, as `kubectl apply` would.
    pub async fn apply<K: Managed>(&self, name: &str, spec: Value) {
        let kind = K::kind(&());
        apply(
            &self.api::<K>(),
            name,
            json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec
            }),
        )
        .await;
    }

    /// JSON merge patch of the spec, as client-side `kubectl apply` or `kubectl patch --type
    /// merge` send it: the way to drop a whole block (`{"deadLetter": null}`), which
    /// kube-apiserver 1.20's server-side apply leaves half-removed on custom resources.
    pub async fn merge_spec<K: Managed>(&self, name: &str, spec: Value) {
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
            .await
            .unwrap_or_else(|e| panic!("patch {}/{name}: {e}", K::kind(&())));
    }

    /// Polls until the object's status satisfies `pred`, failing with the last status seen.
    pub async fn wait<K: Managed>(&self, name: &str, what: &str, pred: impl Fn(&K) -> bool) -> K {
        let api = self.api::<K>();
        let started = Instant::now();
        loop {
            let last = api.get_opt(name).await.expect("get object");
            if let Some(o) = &last
                && pred(o)
            {
                return o.clone();
            }
            if started.elapsed() > TIMEOUT {
                panic!(
                    "{}/{name}: timed out waiting for {what}; last seen: {:#?}\ncontroller log: {}",
                    K::kind(&()),
                    last.as_ref().map(|o| o.managed_status()),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for `Stalled=True`, checks `Ready=False` with `reason`, and returns the object
    /// and the Ready message for the caller's own checks.
    pub async fn wait_stalled_as<K: Managed>(&self, name: &str, reason: &str) -> (K, String) {
        let o: K = self.wait(name, "Stalled", |o: &K| is_true(o, "Stalled")).await;
        let ready = condition(o.managed_status(), "Ready").expect("Ready condition").clone();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason),
            "{ready:?}"
        );
        (o, ready.message.unwrap_or_default())
    }

    /// Waits until the object is gone from the cluster (its finalizer released).
    pub async fn wait_deleted<K: Managed>(&self, name: &str) {
        let api = self.api::<K>();
        let started = Instant::now();
        while api.get_opt(name).await.expect("get object").is_some() {
            assert!(
                started.elapsed() < TIMEOUT,
                "{}/{name} was not released; controller log: {}",
                K::kind(&()),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn delete<K: Managed>(&self, name: &str) {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {}/{name}: {e}", K::kind(&())));
    }

    pub async fn apply_bucket(&self, name: &str, spec: Value) {
        self.apply::<Bucket>(name, spec).await;
    }

    pub async fn wait_bucket(&self, name: &str, what: &str, pred: impl Fn(&Bucket) -> bool) -> Bucket {
        self.wait(name, what, pred).await
    }

    pub async fn wait_stalled(&self, name: &str, reason: &str) -> (Bucket, String) {
        self.wait_stalled_as(name, reason).await
    }

    pub async fn wait_gone(&self, name: &str) {
        self.wait_deleted::<Bucket>(name).await;
    }

    pub async fn delete_bucket(&self, name: &str) {
        self.delete::<Bucket>(name).await;
    }

    /// `kubectl` as a user would run it, against the same cluster.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    pub async fn bucket_exists(&self, name: &str) -> bool {
        match self.s3.head_bucket().bucket(name).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => false,
            Err(e) => panic!("HeadBucket {name}: {e:?}"),
        }
    }

    /// Event reasons recorded for an object, oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        let mut events: Vec<_> = api
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events.into_iter().filter_map(|e| e.reason).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill_controller();
    }
}

pub(crate) async fn apply<K>(api: &Api<K>, name: &str, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("cloudkit-e2e").force(), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// One SDK configuration for every AWS client the tests check the emulator with.
async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "e2e"))
        .http_client(http)
        .load()
        .await
}

/// GET `path` on a controller's metrics/health port on loopback: (status code, body).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not listening (yet, or any more): status 0, for callers that poll.
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

pub fn condition<'a>(status: Option<&'a ManagedStatus>, type_: &str) -> Option<&'a Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

pub fn is_true<K: Managed>(o: &K, type_: &str) -> bool {
    condition(o.managed_status(), type_).is_some_and(|c| c.status == "True")
}

/// The Ready condition's reason, if any.
pub fn ready_reason<K: Managed>(o: &K) -> Option<String> {
    condition(o.managed_status(), "Ready").map(|c| c.reason.clone())
}

/// Ready for the generation the spec is at: what `kubectl wait` and kstatus mean by done.
pub fn ready_at_generation<K: Managed>(o: &K) -> bool {
    is_true(o, "Ready") && o.managed_status().and_then(|s| s.observed_generation) == o.meta().generation
}

/// A TCP endpoint that counts connections and answers none: proves "no cloud call" when a
/// ProviderConfig points at it, and stands in for an unreachable cloud.
pub struct CountingEndpoint {
    pub url: String,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingEndpoint {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        Self { url, count }
    }

    pub fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Runs `check` until it returns true or the timeout passes.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Azure Storage emulator (Azurite) the dev environment starts, read from the env file
/// `scripts/dev-env.sh` writes: one account, each service on its own endpoint.
#[derive(Clone)]
pub struct Azurite {
    pub account: String,
    key: Vec<u8>,
    pub key_base64: String,
    pub blob: String,
    pub queue: String,
    pub table: String,
    http: reqwest::Client,
}

/// The answer to one raw Azure Storage request.
pub struct AzureResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
}

/// Metadata as the `x-ms-meta-*` request headers that set it.
fn meta_headers(metadata: &[(&str, &str)]) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(k, v)| (format!("x-ms-meta-{k}"), v.to_string()))
        .collect()
}

/// Whether a GET found the resource; anything but 200 or 404 fails the test.
fn found(r: &AzureResponse, operation: &str, name: &str) -> bool {
    assert!(
        matches!(r.status, 200 | 404),
        "{operation} {name}: {} {}",
        r.status,
        r.body
    );
    r.status == 200
}

impl AzureResponse {
    /// The `x-ms-meta-*` headers, as name → value.
    pub fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.headers
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("x-ms-meta-").map(|k| (k.to_owned(), v.clone())))
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AzureService {
    Blob,
    Queue,
    Table,
}

impl Azurite {
    pub fn from_env() -> Self {
        use base64::Engine;
        let key_base64 = std::env::var("CLOUDKIT_AZURE_KEY").unwrap_or_else(|_| {
            panic!("CLOUDKIT_AZURE_KEY is not set: source the env file of scripts/dev-env.sh up (it starts Azurite)")
        });
        let key = base64::engine::general_purpose::STANDARD
            .decode(&key_base64)
            .expect("CLOUDKIT_AZURE_KEY is base64");
        Self {
            account: required_env("CLOUDKIT_AZURE_ACCOUNT"),
            key,
            key_base64,
            blob: required_env("CLOUDKIT_AZURE_BLOB_ENDPOINT"),
            queue: required_env("CLOUDKIT_AZURE_QUEUE_ENDPOINT"),
            table: required_env("CLOUDKIT_AZURE_TABLE_ENDPOINT"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    /// The HTTPS Azurite that also takes Entra ID tokens (`--oauth basic`); checked here
    /// with Shared Key, which it still accepts, over TLS trusting the dev CA.
    pub fn entra_from_env() -> Self {
        let plain = Self::from_env();
        Self {
            blob: required_env("CLOUDKIT_AZURE_ENTRA_BLOB_ENDPOINT"),
            queue: required_env("CLOUDKIT_AZURE_ENTRA_QUEUE_ENDPOINT"),
            table: required_env("CLOUDKIT_AZURE_ENTRA_TABLE_ENDPOINT"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .tls_backend_preconfigured(entra::client_tls())
                .build()
                .expect("https client"),
            ..plain
        }
    }

    fn endpoint(&self, service: AzureService) -> &str {
        match service {
            AzureService::Blob => &self.blob,
            AzureService::Queue => &self.queue,
            AzureService::Table => &self.table,
        }
    }

    /// Sends one request signed with Shared Key (`path` after the endpoint, e.g. `/logs`;
    /// `query` as pairs). Written apart from the controller's signing on purpose.
    pub async fn send(
        &self,
        service: AzureService,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> AzureResponse {
        use hmac::{Hmac, Mac};
        let url = format!("{}{path}", self.endpoint(service));
        let mut url = reqwest::Url::parse(&url).expect("url");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        all.push(("x-ms-date".into(), date.clone()));
        let version = if service == AzureService::Table {
            "2019-02-02"
        } else {
            "2021-08-06"
        };
        all.push(("x-ms-version".into(), version.into()));
        let get = |name: &str| {
            all.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let resource = format!("/{}{}", self.account, url.path());
        let to_sign = if service == AzureService::Table {
            format!("{method}\n\n{}\n{date}\n{resource}", get("content-type"))
        } else {
            let mut x_ms: Vec<(String, String)> = all.iter().filter(|(k, _)| k.starts_with("x-ms-")).cloned().collect();
            x_ms.sort();
            let mut params: Vec<(String, String)> =
                query.iter().map(|(k, v)| (k.to_lowercase(), v.to_string())).collect();
            params.sort();
            let length = body
                .as_ref()
                .map(|b| b.len())
                .filter(|n| *n > 0)
                .map(|n| n.to_string())
                .unwrap_or_default();
            let mut s = format!("{method}\n\n\n{length}\n\n{}\n\n\n\n\n\n\n", get("content-type"));
            for (k, v) in &x_ms {
                s.push_str(&format!("{k}:{}\n", v.trim()));
            }
            s.push_str(&resource);
            for (k, v) in &params {
                s.push_str(&format!("\n{k}:{v}"));
            }
            s
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("hmac key");
        mac.update(to_sign.as_bytes());
        let signature = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        };
        let mut request = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url)
            .header("authorization", format!("SharedKey {}:{signature}", self.account));
        for (k, v) in &all {
            request = request.header(k.as_str(), v.as_str());
        }
        if let Some(body) = body {
            request = request.body(body);
        } else if method == "PUT" {
            request = request.header("content-length", "0");
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = response.text().await.unwrap_or_default();
        AzureResponse { status, headers, body }
    }

    /// An account SAS for all three services, valid for an hour, signed here.
    pub fn account_sas(&self) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let expiry = (chrono::Utc::now() + chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let (sv, ss, srt, sp) = ("2021-08-06", "bqt", "sco", "rwdlacup");
        let to_sign = format!("{}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n\n{sv}\n\n", self.account);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("hmac key");
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut query = reqwest::Url::parse("http://x/").expect("url");
        query
            .query_pairs_mut()
            .append_pair("sv", sv)
            .append_pair("ss", ss)
            .append_pair("srt", srt)
            .append_pair("sp", sp)
            .append_pair("se", &expiry)
            .append_pair("sig", &sig);
        query.query().unwrap_or_default().to_owned()
    }

    /// A container's properties (404: none).
    pub async fn container(&self, name: &str) -> AzureResponse {
        self.send(
            AzureService::Blob,
            "GET",
            &format!("/{name}"),
            &[("restype", "container")],
            &[],
            None,
        )
        .await
    }

    pub async fn container_exists(&self, name: &str) -> bool {
        let r = self.container(name).await;
        found(&r, "GetContainerProperties", name)
    }

    pub async fn create_container(&self, name: &str, metadata: &[(&str, &str)]) {
        let headers = meta_headers(metadata);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = self
            .send(
                AzureService::Blob,
                "PUT",
                &format!("/{name}"),
                &[("restype", "container")],
                &headers,
                None,
            )
            .await;
        assert_eq!(r.status, 201, "CreateContainer {name}: {}", r.body);
    }

    pub async fn set_container_metadata(&self, name: &str, metadata: &[(&str, &str)]) {
        let headers = meta_headers(metadata);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = self
            .send(
                AzureService::Blob,
                "PUT",
                &format!("/{name}"),
                &[("restype", "container"), ("comp", "metadata")],
                &headers,
                None,
            )
            .await;
        assert_eq!(r.status, 200, "SetContainerMetadata {name}: {}", r.body);
    }

    pub async fn put_blob(&self, container: &str, blob: &str, content: &str) {
        let r = self
            .send(
                AzureService::Blob,
                "PUT",
                &format!("/{container}/{blob}"),
                &[],
                &[("x-ms-blob-type", "BlockBlob")],
                Some(content.to_owned()),
            )
            .await;
        assert_eq!(r.status, 201, "PutBlob {container}/{blob}: {}", r.body);
    }

    pub async fn delete_container(&self, name: &str) {
        let r = self
            .send(
                AzureService::Blob,
                "DELETE",
                &format!("/{name}"),
                &[("restype", "container")],
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 202, "DeleteContainer {name}: {}", r.body);
    }

    pub async fn delete_blob(&self, container: &str, blob: &str) {
        let r = self
            .send(
                AzureService::Blob,
                "DELETE",
                &format!("/{container}/{blob}"),
                &[],
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 202, "DeleteBlob {container}/{blob}: {}", r.body);
    }

    /// A queue's metadata (404: none).
    pub async fn queue(&self, name: &str) -> AzureResponse {
        self.send(
            AzureService::Queue,
            "GET",
            &format!("/{name}"),
            &[("comp", "metadata")],
            &[],
            None,
        )
        .await
    }

    pub async fn queue_exists(&self, name: &str) -> bool {
        let r = self.queue(name).await;
        found(&r, "GetQueueMetadata", name)
    }

    pub async fn create_queue(&self, name: &str, metadata: &[(&str, &str)]) {
        let headers = meta_headers(metadata);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = self
            .send(AzureService::Queue, "PUT", &format!("/{name}"), &[], &headers, None)
            .await;
        assert_eq!(r.status, 201, "CreateQueue {name}: {}", r.body);
    }

    pub async fn set_queue_metadata(&self, name: &str, metadata: &[(&str, &str)]) {
        let headers = meta_headers(metadata);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = self
            .send(
                AzureService::Queue,
                "PUT",
                &format!("/{name}"),
                &[("comp", "metadata")],
                &headers,
                None,
            )
            .await;
        assert_eq!(r.status, 204, "SetQueueMetadata {name}: {}", r.body);
    }

    pub async fn table_exists(&self, name: &str) -> bool {
        let r = self
            .send(
                AzureService::Table,
                "GET",
                &format!("/Tables('{name}')"),
                &[],
                &[
                    ("accept", "application/json;odata=nometadata"),
                    ("dataserviceversion", "3.0"),
                ],
                None,
            )
            .await;
        found(&r, "GetTable", name)
    }

    pub async fn create_table(&self, name: &str) {
        let r = self
            .send(
                AzureService::Table,
                "POST",
                "/Tables",
                &[],
                &[
                    ("accept", "application/json;odata=nometadata"),
                    ("content-type", "application/json"),
                    ("dataserviceversion", "3.0"),
                ],
                Some(json!({"TableName": name}).to_string()),
            )
            .await;
        assert!(
            matches!(r.status, 201 | 204),
            "CreateTable {name}: {} {}",
            r.status,
            r.body
        );
    }

    pub async fn delete_table(&self, name: &str) {
        let r = self
            .send(
                AzureService::Table,
                "DELETE",
                &format!("/Tables('{name}')"),
                &[],
                &[
                    ("accept", "application/json;odata=nometadata"),
                    ("dataserviceversion", "3.0"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 204, "DeleteTable {name}: {}", r.body);
    }
}

impl Harness {
    /// A ProviderConfig for the Azurite account, with the account key in a Secret, resyncing
    /// every 2s; `endpoint`, when given, replaces all three service endpoints (a
    /// CountingEndpoint to prove no call is made).
    pub async fn azure_provider_config(&self, name: &str, endpoint: Option<&str>) -> Azurite {
        let az = Azurite::from_env();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        apply(
            &secrets,
            "azurite",
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azurite"},
                "stringData": {"accountKey": az.key_base64}
            }),
        )
        .await;
        let (blob, queue, table) = match endpoint {
            Some(e) => (e.to_owned(), e.to_owned(), e.to_owned()),
            None => (az.blob.clone(), az.queue.clone(), az.table.clone()),
        };
        let api: Api<ProviderConfig> = Api::namespaced(self.client.clone(), &self.ns);
        apply(
            &api,
            name,
            json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name},
                "spec": {
                    "provider": "azure", "resyncInterval": "2s",
                    "credentials": {"source": "Secret", "secretRef": {"name": "azurite"}},
                    "azure": {
                        "storageAccount": az.account, "subscriptionId": "00000000-0000-0000-0000-000000000001",
                        "resourceGroup": "cloudkit-e2e",
                        "endpoints": {"blob": blob, "queue": queue, "table": table}
                    }
                }
            }),
        )
        .await;
        az
    }

    /// A name for a resource in Azure, unique to this test: Azure names are per account, and
    /// all tests share Azurite. `alphanumeric` for tables (no hyphens allowed).
    pub fn azure_name(&self, short: &str, alphanumeric: bool) -> String {
        let name = format!("{}-{short}", self.ns);
        if alphanumeric { name.replace('-', "") } else { name }
    }
}
