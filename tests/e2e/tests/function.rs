//! Function on Lambda end to end: real kube-apiserver, real moto, the real controller binary.
//! moto runs no code without Docker, so nothing here invokes a function; moto does not check
//! that an archive is a zip either, so the "archives" are short source texts.

use std::collections::HashMap;

use cloudkit_crds::{Bucket, Function, Queue};
use cloudkit_e2e::{CountingEndpoint, Harness, condition, eventually, is_true, ready_at_generation, ready_reason};
use serde_json::{Value, json};

/// `def handler(e, c):\n    return 1\n` and its SHA-256, both base64, as Lambda reports it.
const ZIP_V1: &str = "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMQo=";
const SHA_V1: &str = "nCtoy1IjCSgKKKQ/iXFNic2xTgWEodW9Y8XWgiB/pUQ=";
/// `... return 2\n`.
const ZIP_V2: &str = "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMgo=";
const SHA_V2: &str = "5bsyNZL/iCn80dDE3n2EpY3L/FetkofbCboU7/fTOa8=";

async fn get(h: &Harness, name: &str) -> Option<aws_sdk_lambda::operation::get_function::GetFunctionOutput> {
    match h.lambda.get_function().function_name(name).send().await {
        Ok(out) => Some(out),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetFunction {name}: {e:?}"),
    }
}

async fn config(h: &Harness, name: &str) -> aws_sdk_lambda::types::FunctionConfiguration {
    get(h, name)
        .await
        .unwrap_or_else(|| panic!("function {name} exists"))
        .configuration()
        .cloned()
        .expect("configuration")
}

fn env_of(c: &aws_sdk_lambda::types::FunctionConfiguration) -> HashMap<String, String> {
    c.environment().and_then(|e| e.variables()).cloned().unwrap_or_default()
}

/// Event source mappings of a function: (queue ARN, batch size).
async fn mappings(h: &Harness, name: &str) -> Vec<(String, i32)> {
    let out = h
        .lambda
        .list_event_source_mappings()
        .function_name(name)
        .send()
        .await
        .expect("ListEventSourceMappings");
    let mut m: Vec<_> = out
        .event_source_mappings()
        .iter()
        .map(|m| {
            (
                m.event_source_arn().unwrap_or_default().to_owned(),
                m.batch_size().unwrap_or_default(),
            )
        })
        .collect();
    m.sort();
    m
}

fn spec(role: &str, extra: Value) -> Value {
    let mut s = json!({
        "runtime": "python3.12", "handler": "app.handler",
        "code": {"zipBase64": ZIP_V1}, "aws": {"roleArn": role}
    });
    if let (Some(s), Value::Object(extra)) = (s.as_object_mut(), extra) {
        s.extend(extra);
    }
    s
}

fn ready_at(generation: i64) -> impl Fn(&Function) -> bool {
    move |f: &Function| f.metadata.generation == Some(generation) && ready_at_generation(f)
}

#[tokio::test]
async fn create_update_drift_and_delete() {
    let h = Harness::new("fn-lifecycle").await;
    let role = h.iam_role().await;
    let name = h.bucket_name("worker");
    h.apply::<Function>(
        &name,
        spec(
            &role,
            json!({
                "memoryMb": 256, "timeoutSeconds": 10, "env": [{"name": "MODE", "value": "fast"}],
                "tags": {"team": "data"}, "aws": {"roleArn": role, "architecture": "arm64"}
            }),
        ),
    )
    .await;
    let f: Function = h.wait(&name, "Ready", ready_at_generation).await;
    let out = get(&h, &name).await.expect("function exists");
    let c = out.configuration().expect("configuration");
    assert_eq!(c.runtime().map(|r| r.as_str()), Some("python3.12"));
    assert_eq!(c.handler(), Some("app.handler"));
    assert_eq!(c.memory_size(), Some(256));
    assert_eq!(c.timeout(), Some(10));
    assert_eq!(c.role(), Some(role.as_str()));
    assert_eq!(c.code_sha256(), Some(SHA_V1));
    assert_eq!(c.architectures().first().map(|a| a.as_str()), Some("arm64"));
    assert_eq!(env_of(c), HashMap::from([("MODE".to_owned(), "fast".to_owned())]));
    assert_eq!(out.tags().and_then(|t| t.get("team")).map(String::as_str), Some("data"));
    let (key, value) = h.owner_tag("Function", &name);
    assert_eq!(out.tags().and_then(|t| t.get(&key)), Some(&value));
    let status = f.status.clone().expect("status");
    assert_eq!(status.arn.as_deref(), c.function_arn());
    assert_eq!(status.id.as_deref(), Some(name.as_str()));

    // Memory, timeout, environment, code and tags change in place.
    h.apply::<Function>(
        &name,
        spec(
            &role,
            json!({
                "memoryMb": 512, "timeoutSeconds": 20, "env": [{"name": "LEVEL", "value": "2"}],
                "code": {"zipBase64": ZIP_V2}, "tags": {"team": "web"},
                "aws": {"roleArn": role, "architecture": "arm64"}
            }),
        ),
    )
    .await;
    let f: Function = h.wait(&name, "generation 2 Ready", ready_at(2)).await;
    assert_eq!(f.status.as_ref().and_then(|s| s.observed_generation), Some(2));
    let out = get(&h, &name).await.expect("function exists");
    let c = out.configuration().expect("configuration");
    assert_eq!((c.memory_size(), c.timeout()), (Some(512), Some(20)));
    assert_eq!(c.code_sha256(), Some(SHA_V2), "the new archive is deployed");
    assert_eq!(env_of(c), HashMap::from([("LEVEL".to_owned(), "2".to_owned())]));
    assert_eq!(out.tags().and_then(|t| t.get("team")).map(String::as_str), Some("web"));

    // A change made outside CloudKit is reported field by field and set back.
    h.lambda
        .update_function_configuration()
        .function_name(&name)
        .memory_size(1024)
        .send()
        .await
        .expect("UpdateFunctionConfiguration");
    let f: Function = h
        .wait(&name, "drift reported", |f: &Function| {
            f.status.as_ref().is_some_and(|s| !s.drift.is_empty())
        })
        .await;
    let drift = &f.status.as_ref().expect("status").drift;
    assert_eq!(drift[0].field, "memoryMb");
    assert_eq!((drift[0].desired.as_str(), drift[0].observed.as_str()), ("512", "1024"));
    eventually("memory set back", || async {
        config(&h, &name).await.memory_size() == Some(512)
    })
    .await;

    h.delete::<Function>(&name).await;
    h.wait_deleted::<Function>(&name).await;
    assert!(get(&h, &name).await.is_none(), "Delete policy removes the function");
    let reasons = h.event_reasons(&name).await;
    for r in ["Created", "Updated", "DriftCorrected", "Deleted"] {
        assert!(reasons.contains(&r.to_owned()), "{r} missing from {reasons:?}");
    }
}

#[tokio::test]
async fn env_from_a_queue_waits_then_a_queue_trigger_is_wired() {
    let h = Harness::new("fn-queue").await;
    let role = h.iam_role().await;
    let name = h.bucket_name("consumer");
    let queue = h.bucket_name("jobs");
    let with_trigger = |batch: i32| {
        spec(
            &role,
            json!({
                "env": [{"name": "QUEUE_URL", "valueFrom": {"kind": "Queue", "name": queue, "field": "url"}}],
                "triggers": [{"queueRef": {"name": queue}, "batchSize": batch}]
            }),
        )
    };
    // Applied before its queue exists: waits, and creates nothing.
    h.apply::<Function>(&name, with_trigger(5)).await;
    let f: Function = h
        .wait(&name, "DependencyNotFound", |f: &Function| {
            ready_reason(f).as_deref() == Some("DependencyNotFound")
        })
        .await;
    assert!(is_true(&f, "Reconciling") && !is_true(&f, "Stalled"), "{:?}", f.status);
    assert!(
        get(&h, &name).await.is_none(),
        "nothing is created while a dependency is missing"
    );

    h.apply::<Queue>(&queue, json!({})).await;
    let q: Queue = h.wait(&queue, "Ready", ready_at_generation).await;
    let queue_status = q.status.expect("queue status");
    h.wait(&name, "Ready", ready_at_generation::<Function>).await;
    let env = env_of(&config(&h, &name).await);
    assert_eq!(
        env.get("QUEUE_URL"),
        queue_status.url.as_ref(),
        "the variable holds the queue's URL"
    );
    let queue_arn = queue_status.arn.expect("queue ARN");
    assert_eq!(mappings(&h, &name).await, [(queue_arn.clone(), 5)]);

    // The batch size changes in place; removing the trigger removes the mapping.
    h.apply::<Function>(&name, with_trigger(8)).await;
    h.wait(&name, "generation 2 Ready", ready_at(2)).await;
    assert_eq!(mappings(&h, &name).await, [(queue_arn, 8)]);
    h.apply::<Function>(&name, spec(&role, json!({}))).await;
    h.wait(&name, "generation 3 Ready", ready_at(3)).await;
    assert_eq!(mappings(&h, &name).await, []);
    assert!(env_of(&config(&h, &name).await).is_empty(), "the variable is gone too");
}

#[tokio::test]
async fn code_from_a_bucket_is_deployed_again_when_the_object_changes() {
    let h = Harness::new("fn-object").await;
    let role = h.iam_role().await;
    let bucket = h.bucket_name("code");
    h.apply::<Bucket>(&bucket, json!({})).await;
    h.wait(&bucket, "Ready", ready_at_generation::<Bucket>).await;
    let put = |body: &'static str| {
        h.s3.put_object()
            .bucket(&bucket)
            .key("app/fn.zip")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(body.as_bytes()))
            .send()
    };
    put("def handler(e, c):\n    return 1\n").await.expect("PutObject v1");
    let name = h.bucket_name("from-s3");
    h.apply::<Function>(
        &name,
        spec(
            &role,
            json!({"code": {"object": {"bucket": bucket, "key": "app/fn.zip"}}}),
        ),
    )
    .await;
    h.wait(&name, "Ready", ready_at_generation::<Function>).await;
    assert_eq!(config(&h, &name).await.code_sha256(), Some(SHA_V1));

    // A new upload under the same key is new code: deployed without a spec change.
    put("def handler(e, c):\n    return 2\n").await.expect("PutObject v2");
    eventually("the new object deployed", || async {
        config(&h, &name).await.code_sha256() == Some(SHA_V2)
    })
    .await;
}

#[tokio::test]
async fn package_type_is_fixed_at_creation() {
    let h = Harness::new("fn-package").await;
    let role = h.iam_role().await;
    let name = h.bucket_name("zipped");
    h.apply::<Function>(&name, spec(&role, json!({}))).await;
    h.wait(&name, "Ready", ready_at_generation::<Function>).await;
    h.apply::<Function>(
        &name,
        json!({"code": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/f:1"}, "aws": {"roleArn": role}}),
    )
    .await;
    let (_, message) = h.wait_stalled_as::<Function>(&name, "ImmutableFieldChanged").await;
    assert!(message.contains("spec.packageType"), "{message}");
    let c = config(&h, &name).await;
    assert_eq!(c.package_type().map(|p| p.as_str()), Some("Zip"));
    assert_eq!(c.code_sha256(), Some(SHA_V1), "nothing was changed");
}

#[tokio::test]
async fn adopts_by_external_name_and_retains() {
    let h = Harness::new("fn-adopt").await;
    let role = h.iam_role().await;
    let existing = h.bucket_name("legacy");
    let create = |name: String| {
        h.lambda
            .create_function()
            .function_name(name)
            .runtime(aws_sdk_lambda::types::Runtime::Python312)
            .handler("app.handler")
            .role(&role)
            .memory_size(256)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(b"old".to_vec()))
                    .build(),
            )
            .send()
    };
    create(existing.clone()).await.expect("CreateFunction");
    h.apply::<Function>(
        "legacy",
        spec(&role, json!({"externalName": existing, "deletionPolicy": "Retain"})),
    )
    .await;
    h.wait("legacy", "Ready", ready_at_generation::<Function>).await;
    assert!(h.event_reasons("legacy").await.contains(&"Adopted".to_owned()));
    let c = config(&h, &existing).await;
    assert_eq!(
        c.memory_size(),
        Some(128),
        "an adopted function converges to the manifest's defaults"
    );
    assert_eq!(c.code_sha256(), Some(SHA_V1), "and to its code");

    // Same name without asking for adoption: hands off.
    let unowned = h.bucket_name("unowned");
    create(unowned.clone()).await.expect("CreateFunction");
    h.apply::<Function>(&unowned, spec(&role, json!({}))).await;
    let (_, message) = h.wait_stalled_as::<Function>(&unowned, "AlreadyExists").await;
    assert!(message.contains("set spec.externalName"), "{message}");
    assert_eq!(config(&h, &unowned).await.memory_size(), Some(256));

    h.delete::<Function>("legacy").await;
    h.wait_deleted::<Function>("legacy").await;
    assert!(
        get(&h, &existing).await.is_some(),
        "Retain leaves the function in the cloud"
    );
}

#[tokio::test]
async fn invalid_spec_stalls_with_every_problem_and_no_cloud_call() {
    let h = Harness::new("fn-invalid").await;
    let cloud = CountingEndpoint::start().await;
    h.provider_config("watched", &cloud.url).await;
    h.apply::<Function>(
        "bad",
        json!({
            "providerConfigRef": {"name": "watched"},
            "externalName": "has spaces",
            "runtime": "python3.12",
            "memoryMb": 64, "timeoutSeconds": 0,
            "env": [{"name": "AWS_REGION", "value": "x"}],
            "code": {"zipBase64": "%%%"},
            "triggers": [{"queueRef": {"name": "q"}, "topicRef": {"name": "t"}}],
            "aws": {"roleArn": "not-a-role"}
        }),
    )
    .await;
    let (f, message) = h.wait_stalled_as::<Function>("bad", "InvalidSpec").await;
    for field in [
        "spec.externalName: 'has spaces' is not a valid Lambda function name",
        "spec.code.zipBase64: is not valid base64",
        "spec.handler: is required for zip code",
        "spec.memoryMb: 64 is out of range: use 128 to 10240",
        "spec.timeoutSeconds: 0 is out of range: use 1 to 900",
        "spec.env[0].name: 'AWS_REGION' is set by Lambda itself",
        "spec.triggers[0].topicRef: a Topic invokes a Function from the Topic's side",
        "spec.aws.roleArn: 'not-a-role' is not an IAM role ARN",
    ] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }
    assert!(
        !is_true(&f, "Reconciling"),
        "a spec error needs a human, not a retry loop"
    );
    assert!(condition(f.status.as_ref(), "Stalled").is_some());
    h.delete::<Function>("bad").await;
    h.wait_deleted::<Function>("bad").await;
    assert_eq!(cloud.connections(), 0, "an invalid spec must not reach the cloud");
}
