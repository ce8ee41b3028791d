//! `cloudkit plan --live`: the change set of a directory of manifests against the real
//! apiserver and moto — created, updated field by field, unchanged, waiting, refused and
//! pruned — and proof that it wrote nothing to either.

use cloudkit_crds::{Bucket, Queue};
use cloudkit_e2e::{Harness, ready_at_generation};
use kube::ResourceExt;
use serde_json::{Value, json};

fn manifest(kind: &str, name: &str, spec: Value) -> String {
    // JSON is YAML: one document per object.
    format!(
        "---\n{}\n",
        json!({"apiVersion": "cloudkit.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
    )
}

async fn tag(h: &Harness, bucket: &str) -> Option<String> {
    let tags = h.s3.get_bucket_tagging().bucket(bucket).send().await.ok()?;
    tags.tag_set()
        .iter()
        .find(|t| t.key() == "team")
        .map(|t| t.value().to_owned())
}

#[tokio::test]
async fn plan_live_prints_the_change_set_and_writes_nothing() {
    let h = Harness::new("plan-live").await;
    let (kept, dead, old) = (h.bucket_name("kept"), h.bucket_name("dead"), h.bucket_name("old"));
    let (fresh, later, taken) = (h.bucket_name("fresh"), h.bucket_name("later"), h.bucket_name("taken"));
    h.apply::<Bucket>(&kept, json!({"tags": {"team": "a"}})).await;
    h.apply::<Queue>(&dead, json!({})).await;
    h.apply::<Queue>(&old, json!({})).await;
    h.wait(&kept, "Ready", ready_at_generation::<Bucket>).await;
    h.wait(&dead, "Ready", ready_at_generation::<Queue>).await;
    h.wait(&old, "Ready", ready_at_generation::<Queue>).await;
    // A bucket someone else made, which a manifest names without adopting it.
    h.s3.create_bucket().bucket(&taken).send().await.expect("CreateBucket");

    let dir = std::env::temp_dir().join(format!("cloudkit-{}", h.ns));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = [
        manifest("Bucket", &kept, json!({"tags": {"team": "b"}, "versioning": true})),
        manifest("Queue", &dead, json!({})),
        manifest(
            "Queue",
            &fresh,
            json!({"deadLetter": {"queueRef": {"name": dead}, "maxReceiveCount": 3}}),
        ),
        manifest(
            "Queue",
            &later,
            json!({"deadLetter": {"queueRef": {"name": fresh}, "maxReceiveCount": 3}}),
        ),
        manifest("Bucket", &taken, json!({})),
    ]
    .concat();
    std::fs::write(dir.join("stack.yaml"), text).expect("write manifests");

    let versions = |buckets: Vec<Bucket>, queues: Vec<Queue>| -> Vec<(String, Option<String>)> {
        let mut v: Vec<(String, Option<String>)> =
            buckets.iter().map(|b| (b.name_any(), b.resource_version())).collect();
        v.extend(queues.iter().map(|q| (q.name_any(), q.resource_version())));
        v
    };
    let before = versions(
        h.api::<Bucket>().list(&Default::default()).await.expect("list").items,
        h.api::<Queue>().list(&Default::default()).await.expect("list").items,
    );

    let bin = std::env::var("CLOUDKIT_BIN").expect("CLOUDKIT_BIN");
    let out = std::process::Command::new(bin)
        .args(["plan", "--live", "-n", &h.ns, "-f"])
        .arg(&dir)
        .output()
        .expect("cloudkit plan runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let line = |key: &str| -> String {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(key))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{stdout}\n{stderr}"))
            .to_owned()
    };
    assert!(
        line(&format!("Bucket/{kept}")).starts_with(&format!("~ Bucket/{kept}")),
        "{stdout}"
    );
    assert!(stdout.contains(r#"tags.team: "a" → "b""#), "{stdout}");
    assert!(stdout.contains("versioning: false → true"), "{stdout}");
    assert!(line(&format!("Queue/{dead}")).starts_with('='), "{stdout}");
    let created = line(&format!("Queue/{fresh}"));
    assert!(created.starts_with('+') && created.contains("create"), "{stdout}");
    let waiting = line(&format!("Queue/{later}"));
    assert!(
        waiting.starts_with('+') && waiting.contains(&format!("Queue/{fresh}")),
        "the dependent is created after its dependency: {stdout}"
    );
    let refused = line(&format!("Bucket/{taken}"));
    assert!(
        refused.starts_with('!') && refused.contains("AlreadyExists"),
        "{stdout}"
    );
    let pruned = line(&format!("Queue/{old}"));
    assert!(
        pruned.starts_with('-') && pruned.contains("deleted from the cloud"),
        "{stdout}"
    );
    assert!(
        stdout.find(&format!("Queue/{fresh}")) < stdout.find(&format!("Queue/{later}")),
        "listed in creation order: {stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "a refused object fails the plan: {stdout}");

    // Nothing was written: not the cluster, not the cloud.
    let after = versions(
        h.api::<Bucket>().list(&Default::default()).await.expect("list").items,
        h.api::<Queue>().list(&Default::default()).await.expect("list").items,
    );
    assert_eq!(before, after, "plan --live changed an object in the cluster");
    assert_eq!(tag(&h, &kept).await.as_deref(), Some("a"));
    assert!(h.sqs.get_queue_url().queue_name(&fresh).send().await.is_err());

    // A clean change set exits 0.
    std::fs::write(
        dir.join("stack.yaml"),
        manifest("Bucket", &kept, json!({"tags": {"team": "a"}})) + &manifest("Queue", &dead, json!({})),
    )
    .expect("write manifests");
    let out = std::process::Command::new(std::env::var("CLOUDKIT_BIN").expect("CLOUDKIT_BIN"))
        .args(["plan", "--live", "-n", &h.ns, "-f"])
        .arg(&dir)
        .output()
        .expect("cloudkit plan runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 unchanged, 1 prune"), "{stdout}");
}
