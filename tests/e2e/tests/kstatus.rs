//! How kstatus judges CloudKit objects, through the real library: `kpt live` is built on
//! sigs.k8s.io/cli-utils, whose kstatus Flux's health checks use too. A pipeline must not
//! pass a package before the controller has judged it, must fail on a broken object, and
//! must wait (not fail) for an object whose ProviderConfig or dependency comes in the same
//! package.

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_s3::types::{Tag, Tagging};
use cloudkit_crds::{Bucket, Queue};
use cloudkit_e2e::{Harness, eventually, ready_at_generation};
use serde_json::{Value, json};

fn kpt(args: &[&str]) -> (i32, String) {
    // `kpt live destroy` has no timeout of its own and waits for ever for what stays.
    let Output { status, stdout, stderr } = Command::new("timeout")
        .args(["180", "kpt"])
        .args(args)
        .output()
        .expect("kpt runs (on the image at /usr/bin/kpt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.code().unwrap_or(-1), text)
}

/// Writes `objects` into the package as one file each, replacing what was there.
fn write_package(dir: &Path, ns: &str, objects: &[Value]) {
    for entry in std::fs::read_dir(dir).expect("package dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("object-") {
            std::fs::remove_file(entry.path()).expect("remove old object");
        }
    }
    for (i, o) in objects.iter().enumerate() {
        let mut o = o.clone();
        o["metadata"]["namespace"] = json!(ns);
        // JSON is YAML: kpt reads it from a .yaml file.
        std::fs::write(dir.join(format!("object-{i}.yaml")), o.to_string()).expect("write object");
    }
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "cloudkit.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// The `reconcile result: …` line of `kpt live apply --output=events`.
fn result_line(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("reconcile result:"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn kpt_waits_for_the_controller_and_judges_like_the_conditions() {
    let mut h = Harness::new("kpt").await;
    let dir = std::env::temp_dir().join(format!("cloudkit-{}-pkg", h.ns));
    std::fs::create_dir_all(&dir).expect("package dir");
    let pkg = dir.to_str().expect("utf-8 path").to_owned();
    let (code, out) = kpt(&["live", "install-resource-group"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = kpt(&["live", "init", &pkg, "--namespace", &h.ns]);
    assert_eq!(code, 0, "{out}");
    let apply = |timeout: &str| {
        kpt(&[
            "live",
            "apply",
            &pkg,
            "--output=events",
            &format!("--reconcile-timeout={timeout}"),
        ])
    };
    let (good, dlq, main, late) = (
        h.bucket_name("good"),
        h.bucket_name("dlq"),
        h.bucket_name("main"),
        h.bucket_name("late"),
    );

    // No controller yet: nobody has judged the object, so it must not pass as Current.
    h.kill_controller();
    write_package(&dir, &h.ns, &[object("Bucket", &good, json!({}))]);
    let (code, out) = apply("5s");
    assert_ne!(code, 0, "{out}");
    assert!(result_line(&out).contains("1 timed out"), "{out}");
    let (_, status) = kpt(&["live", "status", &pkg]);
    assert!(status.contains("InProgress"), "{status}");

    // The controller judges it; one package also holds a dependency and a ProviderConfig
    // applied alongside the object that needs it: they wait, they do not fail.
    h.start_controller();
    let pc = json!({
        "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "late"},
        "spec": {
            "provider": "aws", "region": "us-east-1", "endpoint": h.endpoint, "resyncInterval": "2s",
            "credentials": {"source": "Secret", "secretRef": {"name": "aws"}}
        }
    });
    let stack = vec![
        object("Bucket", &good, json!({"tags": {"team": "a"}})),
        object("Queue", &dlq, json!({})),
        object(
            "Queue",
            &main,
            json!({"deadLetter": {"queueRef": {"name": dlq}, "maxReceiveCount": 3}}),
        ),
        object("Bucket", &late, json!({"providerConfigRef": {"name": "late"}})),
        pc,
    ];
    write_package(&dir, &h.ns, &stack);
    let (code, out) = apply("120s");
    assert_eq!(code, 0, "{out}");
    assert!(result_line(&out).contains("5 attempted, 5 successful"), "{out}");
    for name in [&good, &late] {
        assert!(ready_at_generation(&h.buckets.get(name).await.expect("get")));
    }
    assert!(ready_at_generation(&h.api::<Queue>().get(&main).await.expect("get")));

    // An update is judged again: InProgress until the controller writes that generation.
    let mut updated = stack.clone();
    updated[0] = object("Bucket", &good, json!({"tags": {"team": "b"}}));
    write_package(&dir, &h.ns, &updated);
    let (code, out) = apply("60s");
    assert_eq!(code, 0, "{out}");
    assert!(result_line(&out).contains("5 successful"), "{out}");
    let tags = h.s3.get_bucket_tagging().bucket(&good).send().await.expect("tags");
    assert!(
        tags.tag_set().iter().any(|t| t.key() == "team" && t.value() == "b"),
        "{tags:?}"
    );

    // A broken object fails the apply, named, instead of passing. cli-utils v0.36 (kpt's)
    // reports "failed" only for an object that turns Failed after its wait began; ours is
    // Stalled within milliseconds of the apply, before the wait starts, and that path
    // waits out the timeout (WaitTask.startInner has no Failed case). Either way the apply
    // exits non-zero, the others pass, and `kpt live status` names the field.
    let bad = h.bucket_name("bad");
    let mut broken = updated.clone();
    broken.push(object("Bucket", &bad, json!({"externalName": "Not_A_Bucket"})));
    write_package(&dir, &h.ns, &broken);
    let (code, out) = apply("15s");
    assert_ne!(code, 0, "{out}");
    let verdict = result_line(&out);
    assert!(
        verdict.contains("5 successful") && (verdict.contains("1 failed") || verdict.contains("1 timed out")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(&bad) && (l.contains("reconcile failed") || l.contains("reconcile timeout"))),
        "{out}"
    );
    let (_, status) = kpt(&["live", "status", &pkg]);
    assert!(
        status
            .lines()
            .any(|l| l.contains(&bad) && l.contains("Failed") && l.contains("spec.externalName")),
        "{status}"
    );

    // Drift set back by the controller leaves the objects Current.
    write_package(&dir, &h.ns, &updated);
    let (code, out) = apply("60s");
    assert_eq!(code, 0, "pruning the broken object: {out}");
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("team").value("drifted").build().expect("tag"))
        .build()
        .expect("tagging");
    h.s3.put_bucket_tagging()
        .bucket(&good)
        .tagging(tagging)
        .send()
        .await
        .expect("drift the tags");
    h.wait_bucket(&good, "drift corrected", |b| {
        b.status.as_ref().is_some_and(|s| !s.drift.is_empty())
    })
    .await;
    let (code, status) = kpt(&["live", "status", &pkg]);
    assert_eq!(code, 0, "{status}");
    assert_eq!(
        status.lines().filter(|l| l.contains(" is Current")).count(),
        5,
        "{status}"
    );

    // kubectl wait agrees.
    let waited = h.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=30s",
        &format!("bucket/{good}"),
    ]);
    assert!(waited.status.success(), "{waited:?}");

    // destroy deletes everything at once, the ProviderConfig included; the controller keeps
    // that (and the dead-letter queue) until their users have cleaned up, so nothing is left
    // in the cloud, and kpt waits until all of it is gone.
    let (code, out) = kpt(&["live", "destroy", &pkg, "--output=events"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 successful"), "{out}");
    let gone = h.kubectl(&[
        "wait",
        "--for=delete",
        "--timeout=60s",
        &format!("bucket/{good}"),
        &format!("queue/{dlq}"),
    ]);
    assert!(
        gone.status.success() || String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{gone:?}"
    );
    for name in [&good, &late] {
        eventually("the bucket is gone from the cloud", || async {
            !h.bucket_exists(name).await
        })
        .await;
    }
    let queues = h
        .sqs
        .list_queues()
        .queue_name_prefix(&h.ns)
        .send()
        .await
        .expect("list queues");
    assert!(queues.queue_urls().is_empty(), "{queues:?}");
    assert!(h.api::<Bucket>().get_opt(&good).await.expect("get").is_none());
}
