//! Drift policies on every AWS kind (drift.rs covers Bucket): a managed field changed
//! directly in moto is reported and left (`Report`), left unsaid (`Ignore`) or set back
//! (`Correct`), status naming the exact field; a foreign tag added in the cloud survives
//! every resync and is never reported; a resource deleted outside is made again or reported.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use cloudkit_crds::{Function, Managed, Queue, Table, Topic};
use cloudkit_e2e::{Harness, condition, eventually, is_true, ready_at_generation};
use serde_json::{Value, json};

/// A kind, and how the tests reach its resource in moto without the controller's code.
#[derive(Clone, Copy)]
enum Kind {
    Queue,
    Table,
    Topic,
    Function,
}

impl Kind {
    /// The manifest, with `team: a` tagged and the field the test changes set explicitly.
    async fn spec(self, h: &Harness) -> Value {
        match self {
            Kind::Queue => json!({"visibilityTimeoutSeconds": 60, "tags": {"team": "a"}}),
            Kind::Table => json!({"partitionKey": {"name": "id", "type": "String"}, "tags": {"team": "a"}}),
            Kind::Topic => json!({"displayName": "orders", "tags": {"team": "a"}}),
            Kind::Function => json!({
                "runtime": "python3.12", "handler": "app.handler", "timeoutSeconds": 30,
                "code": {"zipBase64": "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMQo="},
                "aws": {"roleArn": h.iam_role().await}, "tags": {"team": "a"}
            }),
        }
    }

    /// The status.drift path of the field `edit` changes.
    fn field(self) -> &'static str {
        match self {
            Kind::Queue => "visibilityTimeoutSeconds",
            Kind::Table => "tags.team",
            Kind::Topic => "displayName",
            Kind::Function => "timeoutSeconds",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Queue => "Queue",
            Kind::Table => "Table",
            Kind::Topic => "Topic",
            Kind::Function => "Function",
        }
    }

    async fn queue_url(h: &Harness, name: &str) -> Option<String> {
        let out = h.sqs.get_queue_url().queue_name(name).send().await.ok()?;
        out.queue_url().map(str::to_owned)
    }

    async fn arn(self, h: &Harness, name: &str) -> Option<String> {
        match self {
            Kind::Queue => {
                let url = Self::queue_url(h, name).await?;
                let out = h
                    .sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(Attr::QueueArn)
                    .send()
                    .await
                    .ok()?;
                out.attributes()?.get(&Attr::QueueArn).cloned()
            }
            Kind::Table => {
                let out = h.dynamodb.describe_table().table_name(name).send().await.ok()?;
                out.table()?.table_arn().map(str::to_owned)
            }
            Kind::Topic => {
                let out = h.sns.list_topics().send().await.ok()?;
                out.topics()
                    .iter()
                    .filter_map(|t| t.topic_arn())
                    .find(|a| a.rsplit(':').next() == Some(name))
                    .map(str::to_owned)
            }
            Kind::Function => {
                let out = h.lambda.get_function().function_name(name).send().await.ok()?;
                out.configuration()?.function_arn().map(str::to_owned)
            }
        }
    }

    async fn exists(self, h: &Harness, name: &str) -> bool {
        self.arn(h, name).await.is_some()
    }

    /// The live value of the field `edit` changes, as text.
    async fn value(self, h: &Harness, name: &str) -> String {
        let arn = self.arn(h, name).await.unwrap_or_else(|| panic!("{name} exists"));
        match self {
            Kind::Queue => {
                let url = Self::queue_url(h, name).await.expect("queue URL");
                let out = h
                    .sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(Attr::VisibilityTimeout)
                    .send()
                    .await
                    .expect("GetQueueAttributes");
                out.attributes()
                    .and_then(|a| a.get(&Attr::VisibilityTimeout).cloned())
                    .unwrap_or_default()
            }
            Kind::Table | Kind::Topic | Kind::Function if self.field() == "tags.team" => {
                self.tags(h, &arn).await.get("team").cloned().unwrap_or_default()
            }
            Kind::Topic => {
                let out = h
                    .sns
                    .get_topic_attributes()
                    .topic_arn(&arn)
                    .send()
                    .await
                    .expect("GetTopicAttributes");
                out.attributes()
                    .and_then(|a| a.get("DisplayName").cloned())
                    .unwrap_or_default()
            }
            Kind::Function => {
                let out = h
                    .lambda
                    .get_function_configuration()
                    .function_name(name)
                    .send()
                    .await
                    .expect("GetFunctionConfiguration");
                out.timeout().unwrap_or_default().to_string()
            }
            Kind::Table => unreachable!("Table's field is a tag"),
        }
    }

    async fn tags(self, h: &Harness, arn: &str) -> std::collections::BTreeMap<String, String> {
        match self {
            Kind::Queue => {
                let url = arn.rsplit(':').next().expect("queue name");
                let url = Self::queue_url(h, url).await.expect("queue URL");
                let out = h
                    .sqs
                    .list_queue_tags()
                    .queue_url(url)
                    .send()
                    .await
                    .expect("ListQueueTags");
                out.tags().cloned().unwrap_or_default().into_iter().collect()
            }
            Kind::Table => {
                let out = h
                    .dynamodb
                    .list_tags_of_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .expect("ListTagsOfResource");
                out.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect()
            }
            Kind::Topic => {
                let out = h
                    .sns
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .expect("ListTagsForResource");
                out.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect()
            }
            Kind::Function => {
                let out = h.lambda.list_tags().resource(arn).send().await.expect("ListTags");
                out.tags().cloned().unwrap_or_default().into_iter().collect()
            }
        }
    }

    /// Changes the managed field as a person would in the console.
    async fn edit(self, h: &Harness, name: &str) {
        let arn = self.arn(h, name).await.unwrap_or_else(|| panic!("{name} exists"));
        match self {
            Kind::Queue => {
                let url = Self::queue_url(h, name).await.expect("queue URL");
                h.sqs
                    .set_queue_attributes()
                    .queue_url(url)
                    .attributes(Attr::VisibilityTimeout, "999")
                    .send()
                    .await
                    .expect("SetQueueAttributes");
            }
            Kind::Table => {
                // DynamoDB's TagResource adds and overwrites keys; the owner tag is kept.
                let tag = aws_sdk_dynamodb::types::Tag::builder()
                    .key("team")
                    .value("edited")
                    .build()
                    .expect("tag");
                h.dynamodb
                    .tag_resource()
                    .resource_arn(&arn)
                    .tags(tag)
                    .send()
                    .await
                    .expect("TagResource");
            }
            Kind::Topic => {
                h.sns
                    .set_topic_attributes()
                    .topic_arn(&arn)
                    .attribute_name("DisplayName")
                    .attribute_value("edited")
                    .send()
                    .await
                    .expect("SetTopicAttributes");
            }
            Kind::Function => {
                h.lambda
                    .update_function_configuration()
                    .function_name(name)
                    .timeout(99)
                    .send()
                    .await
                    .expect("UpdateFunctionConfiguration");
            }
        }
    }

    fn edited(self) -> &'static str {
        match self {
            Kind::Queue => "999",
            Kind::Table | Kind::Topic => "edited",
            Kind::Function => "99",
        }
    }

    fn original(self) -> &'static str {
        match self {
            Kind::Queue => "60",
            Kind::Table => "a",
            Kind::Topic => "orders",
            Kind::Function => "30",
        }
    }

    /// Adds a tag another tool (AWS Backup, a tag policy) would.
    async fn add_foreign_tag(self, h: &Harness, name: &str) {
        let arn = self.arn(h, name).await.unwrap_or_else(|| panic!("{name} exists"));
        match self {
            Kind::Queue => {
                let url = Self::queue_url(h, name).await.expect("queue URL");
                h.sqs
                    .tag_queue()
                    .queue_url(url)
                    .tags("backup", "daily")
                    .send()
                    .await
                    .expect("TagQueue");
            }
            Kind::Table => {
                let tag = aws_sdk_dynamodb::types::Tag::builder()
                    .key("backup")
                    .value("daily")
                    .build()
                    .expect("tag");
                h.dynamodb
                    .tag_resource()
                    .resource_arn(&arn)
                    .tags(tag)
                    .send()
                    .await
                    .expect("TagResource");
            }
            Kind::Topic => {
                let tag = aws_sdk_sns::types::Tag::builder()
                    .key("backup")
                    .value("daily")
                    .build()
                    .expect("tag");
                h.sns
                    .tag_resource()
                    .resource_arn(&arn)
                    .tags(tag)
                    .send()
                    .await
                    .expect("TagResource");
            }
            Kind::Function => {
                h.lambda
                    .tag_resource()
                    .resource(&arn)
                    .tags("backup", "daily")
                    .send()
                    .await
                    .expect("TagResource");
            }
        }
    }

    async fn foreign_tag(self, h: &Harness, name: &str) -> Option<String> {
        let arn = self.arn(h, name).await?;
        self.tags(h, &arn).await.get("backup").cloned()
    }

    async fn delete_outside(self, h: &Harness, name: &str) {
        match self {
            Kind::Queue => {
                let url = Self::queue_url(h, name).await.expect("queue URL");
                h.sqs.delete_queue().queue_url(url).send().await.expect("DeleteQueue");
            }
            Kind::Table => {
                h.dynamodb
                    .delete_table()
                    .table_name(name)
                    .send()
                    .await
                    .expect("DeleteTable");
            }
            Kind::Topic => {
                let arn = self.arn(h, name).await.expect("topic ARN");
                h.sns.delete_topic().topic_arn(arn).send().await.expect("DeleteTopic");
            }
            Kind::Function => {
                h.lambda
                    .delete_function()
                    .function_name(name)
                    .send()
                    .await
                    .expect("DeleteFunction");
            }
        }
    }
}

/// The drift fields status lists.
fn drift_fields<K: Managed>(o: &K) -> Vec<String> {
    o.managed_status()
        .map(|s| s.drift.iter().map(|d| d.field.clone()).collect())
        .unwrap_or_default()
}

fn at_generation<K: Managed>(generation: i64) -> impl Fn(&K) -> bool {
    move |o: &K| o.meta().generation == Some(generation) && ready_at_generation(o)
}

async fn policies<K: Managed>(kind: Kind) {
    let h = Harness::new(&format!("drift-{}", kind.as_str().to_lowercase())).await;
    let name = h.bucket_name("drifty");
    let base = kind.spec(&h).await;
    let with = |policy: &str| {
        let mut s = base.clone();
        s["driftPolicy"] = json!(policy);
        s
    };

    // Report: the change is left, and status names exactly that field.
    h.apply::<K>(&name, with("Report")).await;
    h.wait::<K>(&name, "Ready", at_generation(1)).await;
    kind.add_foreign_tag(&h, &name).await;
    kind.edit(&h, &name).await;
    let o: K = h.wait(&name, "Drifted", |o: &K| is_true(o, "Drifted")).await;
    assert_eq!(
        drift_fields(&o),
        [kind.field()],
        "only the edited field, never the foreign tag"
    );
    assert_eq!(
        condition(o.managed_status(), "Drifted").map(|c| c.reason.as_str()),
        Some("DriftDetected")
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        kind.value(&h, &name).await,
        kind.edited(),
        "Report leaves the cloud as it is"
    );

    // Ignore: the policy change is a manifest change and is applied (setting the edit
    // back); a new edit is then left and not said.
    h.apply::<K>(&name, with("Ignore")).await;
    h.wait::<K>(&name, "Ready at generation 2", at_generation(2)).await;
    eventually("set back by the manifest change", || async {
        kind.value(&h, &name).await == kind.original()
    })
    .await;
    kind.edit(&h, &name).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(kind.value(&h, &name).await, kind.edited(), "Ignore leaves the cloud");
    let o: K = h.api::<K>().get(&name).await.expect("get");
    assert!(
        drift_fields(&o).is_empty() && !is_true(&o, "Drifted"),
        "Ignore says nothing"
    );

    // Correct: set back, and said.
    h.apply::<K>(&name, with("Correct")).await;
    h.wait::<K>(&name, "Ready at generation 3", at_generation(3)).await;
    eventually("set back", || async { kind.value(&h, &name).await == kind.original() }).await;
    kind.edit(&h, &name).await;
    let o: K = h
        .wait(&name, "drift corrected", |o: &K| !drift_fields(o).is_empty())
        .await;
    assert_eq!(drift_fields(&o), [kind.field()]);
    eventually("set back again", || async {
        kind.value(&h, &name).await == kind.original()
    })
    .await;
    assert_eq!(
        condition(o.managed_status(), "Drifted").map(|c| c.reason.as_str()),
        Some("DriftCorrected")
    );
    // The foreign tag survived every resync and correction.
    assert_eq!(kind.foreign_tag(&h, &name).await.as_deref(), Some("daily"));

    // Deleted outside: made again under Correct...
    kind.delete_outside(&h, &name).await;
    eventually("made again", || async {
        kind.exists(&h, &name).await && h.event_reasons(&name).await.contains(&"Recreated".to_owned())
    })
    .await;
    h.wait::<K>(&name, "Ready after the recreate", ready_at_generation)
        .await;
    // ... and reported under Report.
    h.apply::<K>(&name, with("Report")).await;
    h.wait::<K>(&name, "Ready at generation 4", at_generation(4)).await;
    kind.delete_outside(&h, &name).await;
    h.wait_stalled_as::<K>(&name, "ExternalResourceMissing").await;
    assert!(!kind.exists(&h, &name).await, "Report does not make it again");
    h.delete::<K>(&name).await;
    h.wait_deleted::<K>(&name).await;
}

#[tokio::test]
async fn queue_drift_policies() {
    policies::<Queue>(Kind::Queue).await;
}

#[tokio::test]
async fn table_drift_policies() {
    policies::<Table>(Kind::Table).await;
}

#[tokio::test]
async fn topic_drift_policies() {
    policies::<Topic>(Kind::Topic).await;
}

#[tokio::test]
async fn function_drift_policies() {
    policies::<Function>(Kind::Function).await;
}

/// The samples (buckets and the event-driven stack), untouched: over a minute of resyncs
/// every 2 s no object shows drift, no object or Secret is written, and every cloud call
/// is a read.
#[tokio::test]
async fn an_untouched_stack_is_quiet_for_a_minute() {
    let h = Harness::new("quiet").await;
    let role = h.iam_role().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let mut manifests = String::new();
    for file in ["bucket.yaml", "stack.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("sample readable");
        manifests.push_str(&text.replace("namespace: default", &format!("namespace: {}", h.ns)));
        manifests.push_str("\n---\n");
    }
    // Names unique to this run: moto is shared with other tests and the demo.
    let manifests = manifests
        .replace("arn:aws:iam::123456789012:role/cloudkit-sample-lambda", &role)
        .replace("cloudkit-sample-", &format!("{}-", h.ns));
    let file = std::env::temp_dir().join(format!("{}-samples.yaml", h.ns));
    std::fs::write(&file, manifests).expect("write manifests");
    let out = h.kubectl(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let kinds = ["buckets", "queues", "topics", "tables", "functions"]
        .map(|k| format!("{k}.cloudkit.dev"))
        .join(",");
    let all_ready = || {
        let out = h.kubectl(&["wait", &kinds, "--all", "--for=condition=Ready", "--timeout=5s"]);
        out.status.success()
    };
    let start = std::time::Instant::now();
    while !all_ready() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the samples never all went Ready"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Writes right after Ready (a drift record, the managed-keys annotation) settle first.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let snapshot = || {
        let out = h.kubectl(&[
            "get",
            &format!("{kinds},secrets"),
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion} {.status.drift}{\"\\n\"}{end}",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = snapshot();
    assert!(before.lines().count() >= 8, "{before}");
    let calls_before = h.cloud_calls().await;
    let reconciles_before: u64 = h.reconciles("Queue").await;

    tokio::time::sleep(Duration::from_secs(60)).await;

    let after = snapshot();
    assert_eq!(before, after, "an object or Secret was written during a quiet minute");
    assert!(!after.contains("field"), "drift shown on an untouched stack:\n{after}");
    let reconciles = h.reconciles("Queue").await - reconciles_before;
    assert!(
        reconciles >= 20,
        "resyncs ran: {reconciles} Queue reconciles in the minute"
    );
    let writes: Vec<String> = h
        .cloud_calls()
        .await
        .into_iter()
        .filter(|(key, n)| calls_before.get(key) != Some(n))
        .map(|((service, op), _)| format!("{service} {op}"))
        .filter(|call| {
            let op = call.split(' ').nth(1).unwrap_or_default();
            !["Get", "Head", "List", "Describe"].iter().any(|p| op.starts_with(p))
        })
        .collect();
    assert!(writes.is_empty(), "cloud writes during a quiet minute: {writes:?}");
    let _ = std::fs::remove_file(file);
}

async fn lambda_env(h: &Harness, name: &str) -> std::collections::BTreeMap<String, String> {
    let out = h
        .lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .expect("GetFunctionConfiguration");
    out.environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn topic_endpoints(h: &Harness, arn: &str) -> Vec<String> {
    let out = h
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(arn)
        .send()
        .await
        .expect("ListSubscriptionsByTopic");
    let mut e: Vec<String> = out
        .subscriptions()
        .iter()
        .filter_map(|s| s.endpoint().map(str::to_owned))
        .collect();
    e.sort();
    e
}

/// Other tools' environment variables on a function and other teams' subscriptions to a
/// topic are theirs: kept through resyncs and manifest changes, never reported; what
/// CloudKit set and the manifest drops is removed.
#[tokio::test]
async fn foreign_env_vars_and_subscriptions_are_left_alone() {
    let h = Harness::new("shared-maps").await;
    let name = h.bucket_name("shared");
    let mut spec = Kind::Function.spec(&h).await;
    spec["env"] = json!([{"name": "LOG", "value": "info"}, {"name": "MODE", "value": "a"}]);
    h.apply::<Function>(&name, spec.clone()).await;
    h.wait::<Function>(&name, "Ready", at_generation(1)).await;
    // A tracing tool instruments the function.
    let mut instrumented = lambda_env(&h, &name).await;
    instrumented.insert("DD_TRACE_ENABLED".into(), "true".into());
    h.lambda
        .update_function_configuration()
        .function_name(&name)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(instrumented.clone().into_iter().collect()))
                .build(),
        )
        .send()
        .await
        .expect("UpdateFunctionConfiguration");

    // A topic with one subscription of ours; another team subscribes its endpoint directly.
    let topic = h.bucket_name("shared-topic");
    let ours = json!({"subscriptions": [{"protocol": "Https", "endpoint": "https://ours.example.com/hook"}]});
    h.apply::<Topic>(&topic, ours).await;
    h.wait::<Topic>(&topic, "Ready", at_generation(1)).await;
    let topic_arn = Kind::Topic.arn(&h, &topic).await.expect("topic ARN");
    h.sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("https")
        .endpoint("https://theirs.example.com/hook")
        .send()
        .await
        .expect("Subscribe");
    // Resyncs every 2 s leave both alone and report nothing.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(lambda_env(&h, &name).await, instrumented);
    assert_eq!(
        topic_endpoints(&h, &topic_arn).await,
        ["https://ours.example.com/hook", "https://theirs.example.com/hook"]
    );
    let f: Function = h.api::<Function>().get(&name).await.expect("get");
    assert!(drift_fields(&f).is_empty() && !is_true(&f, "Drifted"), "{:?}", f.status);
    let t: Topic = h.api::<Topic>().get(&topic).await.expect("get");
    assert!(drift_fields(&t).is_empty(), "{:?}", t.status);

    // The manifest changes one of its variables and drops another: the foreign one stays.
    spec["env"] = json!([{"name": "LOG", "value": "debug"}]);
    h.apply::<Function>(&name, spec).await;
    h.wait::<Function>(&name, "Ready at generation 2", at_generation(2))
        .await;
    eventually("the manifest's env applied, the tool's kept", || async {
        lambda_env(&h, &name).await
            == std::collections::BTreeMap::from([
                ("LOG".to_owned(), "debug".to_owned()),
                ("DD_TRACE_ENABLED".to_owned(), "true".to_owned()),
            ])
    })
    .await;
    // The topic drops its own subscription: only the other team's remains.
    h.apply::<Topic>(&topic, json!({"subscriptions": []})).await;
    h.wait::<Topic>(&topic, "Ready at generation 2", at_generation(2)).await;
    eventually("ours unsubscribed, theirs kept", || async {
        topic_endpoints(&h, &topic_arn).await == ["https://theirs.example.com/hook"]
    })
    .await;
}
