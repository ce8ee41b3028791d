//! The GCP emulators the dev environment starts, checked with clients of the tests' own
//! (raw JSON over HTTP), written apart from the controller's on purpose.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudkit_crds::ProviderConfig;
use kube::Api;
use serde_json::{Value, json};

use crate::{Harness, apply, required_env};

/// The GCP emulators' endpoints and project, from the env file `scripts/dev-env.sh` writes.
/// Pub/Sub and Bigtable are `None` when their emulator is not installed.
#[derive(Clone)]
pub struct Gcp {
    pub project: String,
    pub storage: String,
    pub pubsub: Option<String>,
    pub bigtable: Option<String>,
    http: reqwest::Client,
}

/// One HTTP answer: its status and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct GcpResponse {
    pub status: u16,
    pub body: Value,
}

impl Gcp {
    pub fn from_env() -> Self {
        let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            project: required_env("CLOUDKIT_GCP_PROJECT"),
            storage: required_env("CLOUDKIT_GCP_STORAGE_ENDPOINT"),
            pubsub: optional("CLOUDKIT_GCP_PUBSUB_ENDPOINT"),
            bigtable: optional("CLOUDKIT_GCP_BIGTABLE_ENDPOINT"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    /// The Pub/Sub endpoint, or `None` after saying loudly that the test is skipped. Read
    /// from the environment only, so a skipped test makes no client at all.
    pub fn pubsub_or_skip(test: &str) -> Option<String> {
        let pubsub = std::env::var("CLOUDKIT_GCP_PUBSUB_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty());
        if pubsub.is_none() {
            eprintln!(
                "\n!!! SKIPPED {test}: no Pub/Sub emulator (CLOUDKIT_GCP_PUBSUB_ENDPOINT unset: \
                 /usr/lib/google-cloud-sdk/platform/pubsub-emulator or java is missing) !!!\n"
            );
        }
        pubsub
    }

    /// The Bigtable endpoint, or `None` after saying loudly that the test is skipped.
    pub fn bigtable_or_skip(test: &str) -> Option<String> {
        let bigtable = std::env::var("CLOUDKIT_GCP_BIGTABLE_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty());
        if bigtable.is_none() {
            eprintln!(
                "\n!!! SKIPPED {test}: no Bigtable emulator (CLOUDKIT_GCP_BIGTABLE_ENDPOINT unset: \
                 /usr/lib/google-cloud-sdk/platform/bigtable-emulator is missing) !!!\n"
            );
        }
        bigtable
    }

    /// One JSON request to `base` + `path`.
    pub async fn send(&self, method: reqwest::Method, url: String, body: Option<Value>) -> GcpResponse {
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        GcpResponse {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// The bucket resource as GCS returns it, or `None` (404).
    pub async fn bucket(&self, name: &str) -> Option<Value> {
        let r = self
            .send(
                reqwest::Method::GET,
                format!("{}/storage/v1/b/{name}", self.storage),
                None,
            )
            .await;
        match r.status {
            200 => Some(r.body),
            404 => None,
            other => panic!("GET bucket {name}: HTTP {other}: {}", r.body),
        }
    }

    pub async fn bucket_exists(&self, name: &str) -> bool {
        self.bucket(name).await.is_some()
    }

    /// The bucket's labels; a label the emulator keeps as `null` after a patch removed it
    /// counts as absent, as on GCS.
    pub async fn labels(&self, name: &str) -> BTreeMap<String, String> {
        let bucket = self
            .bucket(name)
            .await
            .unwrap_or_else(|| panic!("bucket {name} exists"));
        bucket["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates a bucket outside CloudKit; labels by a patch after, as the emulator ignores
    /// them on create.
    pub async fn create_bucket(&self, name: &str, labels: Value) {
        let r = self
            .send(
                reqwest::Method::POST,
                format!("{}/storage/v1/b?project={}", self.storage, self.project),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(r.status, 200, "insert bucket {name}: {}", r.body);
        self.patch_bucket(name, json!({"labels": labels})).await;
    }

    /// A change made in GCS directly, behind CloudKit's back.
    pub async fn patch_bucket(&self, name: &str, body: Value) {
        let r = self
            .send(
                reqwest::Method::PATCH,
                format!("{}/storage/v1/b/{name}", self.storage),
                Some(body),
            )
            .await;
        assert_eq!(r.status, 200, "patch bucket {name}: {}", r.body);
    }

    pub async fn put_object(&self, bucket: &str, object: &str, content: &str) {
        let url = format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}",
            self.storage
        );
        let r = self
            .http
            .post(&url)
            .header("content-type", "text/plain")
            .body(content.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status().is_success(), "upload {bucket}/{object}: {}", r.status());
    }

    pub async fn delete_object(&self, bucket: &str, object: &str) {
        let r = self
            .send(
                reqwest::Method::DELETE,
                format!("{}/storage/v1/b/{bucket}/o/{object}", self.storage),
                None,
            )
            .await;
        assert!((200..300).contains(&r.status), "delete {bucket}/{object}: {}", r.status);
    }
}

/// Pub/Sub over the emulator's REST face (it serves JSON next to gRPC on the same port).
impl Gcp {
    fn pubsub_url(&self, collection: &str, name: &str) -> String {
        let base = self.pubsub.clone().expect("the Pub/Sub emulator's endpoint");
        format!("{base}/v1/projects/{}/{collection}/{name}", self.project)
    }

    /// `projects/<project>/<collection>/<name>`, as Pub/Sub names things.
    pub fn path(&self, collection: &str, name: &str) -> String {
        format!("projects/{}/{collection}/{name}", self.project)
    }

    /// A topic or subscription as Pub/Sub returns it, or `None` (404).
    pub async fn pubsub_get(&self, collection: &str, name: &str) -> Option<Value> {
        let r = self
            .send(reqwest::Method::GET, self.pubsub_url(collection, name), None)
            .await;
        match r.status {
            200 => Some(r.body),
            404 => None,
            other => panic!("GET {collection}/{name}: HTTP {other}: {}", r.body),
        }
    }

    /// Creates a topic or subscription outside CloudKit.
    pub async fn pubsub_create(&self, collection: &str, name: &str, body: Value) {
        let r = self
            .send(reqwest::Method::PUT, self.pubsub_url(collection, name), Some(body))
            .await;
        assert_eq!(r.status, 200, "create {collection}/{name}: {}", r.body);
    }

    /// A change made in Pub/Sub directly: `field` is the snake_case mask path, `value` the
    /// resource fields to send (camelCase).
    pub async fn pubsub_patch(&self, collection: &str, name: &str, mask: &str, value: Value) {
        let key = if collection == "topics" {
            "topic"
        } else {
            "subscription"
        };
        let r = self
            .send(
                reqwest::Method::PATCH,
                self.pubsub_url(collection, name),
                Some(json!({key: value, "updateMask": mask})),
            )
            .await;
        assert_eq!(r.status, 200, "patch {collection}/{name}: {}", r.body);
    }
}

/// Bigtable through `cbt`, the Google Cloud SDK's own client: the emulator speaks gRPC only.
impl Gcp {
    /// `cbt` on PATH, or `None` after saying loudly that the test is skipped.
    pub fn cbt_or_skip(test: &str) -> Option<()> {
        let found = std::process::Command::new("cbt")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("\n!!! SKIPPED {test}: no `cbt` (Google Cloud SDK) to check the Bigtable emulator with !!!\n");
        }
        found.then_some(())
    }

    /// Runs `cbt` against the emulator: its success and its output (stdout, then stderr,
    /// where cbt logs).
    pub fn cbt(&self, instance: &str, args: &[&str]) -> (bool, String) {
        let (ok, stdout, stderr) = self.cbt_split(instance, args);
        (ok, format!("{stdout}{stderr}"))
    }

    fn cbt_split(&self, instance: &str, args: &[&str]) -> (bool, String, String) {
        let host = self
            .bigtable
            .as_deref()
            .expect("the Bigtable emulator's endpoint")
            .trim_start_matches("http://")
            .to_owned();
        let out = std::process::Command::new("cbt")
            .env("BIGTABLE_EMULATOR_HOST", host)
            .args(["-project", &self.project, "-instance", instance])
            .args(args)
            .output()
            .expect("run cbt");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Each column family of a table with its GC policy as cbt writes it (`versions() > 3`,
    /// `(versions() > 2 && age() > 1h)`, empty for none), or `None` when it does not exist.
    pub fn gc_policies(&self, instance: &str, table: &str) -> Option<std::collections::BTreeMap<String, String>> {
        let (ok, stdout, stderr) = self.cbt_split(instance, &["ls", table]);
        if !ok {
            assert!(stderr.contains("NotFound"), "cbt ls {table}: {stderr}");
            return None;
        }
        // Columns are tab-separated (padded with more tabs): name, policy, value type.
        Some(
            stdout
                .lines()
                .skip_while(|l| !l.starts_with("----"))
                .skip(1)
                .filter_map(|l| {
                    let cells: Vec<&str> = l.split('\t').filter(|c| !c.is_empty()).collect();
                    let (name, rest) = cells.split_first()?;
                    // No rule reads `<never>` or nothing, depending on whether the family
                    // holds an empty rule or none: both keep every cell.
                    let policy = match rest {
                        [policy, _value_type] if *policy != "<never>" => (*policy).to_owned(),
                        _ => String::new(),
                    };
                    Some(((*name).to_owned(), policy))
                })
                .collect(),
        )
    }

    /// The Bigtable admin client of the tests' own, for what `cbt` cannot do.
    async fn bigtable_admin(
        &self,
    ) -> googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient<tonic::transport::Channel>{
        let url = self.bigtable.clone().expect("the Bigtable emulator's endpoint");
        let channel = tonic::transport::Endpoint::from_shared(url)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the Bigtable emulator");
        googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient::new(channel)
    }

    fn table_path(&self, instance: &str, table: &str) -> String {
        format!("projects/{}/instances/{instance}/tables/{table}", self.project)
    }

    /// A table's deletion protection as the emulator has it.
    pub async fn deletion_protection(&self, instance: &str, table: &str) -> bool {
        use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::GetTableRequest;
        let mut admin = self.bigtable_admin().await;
        let request = GetTableRequest {
            name: self.table_path(instance, table),
            view: 0,
        };
        admin
            .get_table(request)
            .await
            .expect("GetTable")
            .into_inner()
            .deletion_protection
    }

    /// Sets a table's deletion protection in the emulator directly (a change made outside
    /// CloudKit).
    pub async fn set_deletion_protection(&self, instance: &str, table: &str, on: bool) {
        use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::{Table, UpdateTableRequest};
        let mut admin = self.bigtable_admin().await;
        let request = UpdateTableRequest {
            table: Some(Table {
                name: self.table_path(instance, table),
                deletion_protection: on,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["deletion_protection".into()],
            }),
            ignore_warnings: false,
        };
        admin.update_table(request).await.expect("UpdateTable");
    }

    /// The column families of a table, or `None` when it does not exist.
    pub fn families(&self, instance: &str, table: &str) -> Option<std::collections::BTreeSet<String>> {
        let (ok, stdout, stderr) = self.cbt_split(instance, &["ls", table]);
        if !ok {
            assert!(stderr.contains("NotFound"), "cbt ls {table}: {stderr}");
            return None;
        }
        Some(
            stdout
                .lines()
                .skip_while(|l| !l.starts_with("----"))
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect(),
        )
    }
}

impl Harness {
    /// A GCP ProviderConfig for the emulators (anonymous credentials, location US, every
    /// emulator endpoint the env file names), resyncing every 2s. `endpoint`, when given,
    /// replaces every service endpoint (a CountingEndpoint to prove no call is made).
    pub async fn gcp_provider_config(&self, name: &str, endpoint: Option<&str>) -> Gcp {
        let gcp = Gcp::from_env();
        let mut endpoints = serde_json::Map::new();
        let services = [
            ("storage", Some(gcp.storage.clone())),
            ("pubsub", gcp.pubsub.clone()),
            ("bigtable", gcp.bigtable.clone()),
        ];
        for (service, url) in services {
            if let Some(url) = endpoint.map(str::to_owned).or(url) {
                endpoints.insert(service.to_owned(), json!(url));
            }
        }
        let api: Api<ProviderConfig> = Api::namespaced(self.client.clone(), &self.ns);
        apply(
            &api,
            name,
            json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name},
                "spec": {
                    "provider": "gcp", "resyncInterval": "2s",
                    "credentials": {"source": "Anonymous"},
                    "gcp": {"project": gcp.project, "location": "US", "endpoints": endpoints}
                }
            }),
        )
        .await;
        gcp
    }

    /// A name for a resource in the emulators, unique to this test: bucket names are global,
    /// and all tests share the emulators.
    pub fn gcp_name(&self, short: &str) -> String {
        format!("{}-{short}", self.ns)
    }
}
