//! Ordering between objects that reference each other: cycles, and deletion in reverse
//! order. Queues (a dead-letter queue by reference) stand in for every kind: the mechanism
//! is the one generic loop's.

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use cloudkit_crds::Queue;
use cloudkit_e2e::{Harness, ready_at_generation, ready_reason};
use serde_json::json;

async fn exists(h: &Harness, name: &str) -> bool {
    h.sqs.get_queue_url().queue_name(name).send().await.is_ok()
}

fn dlq(name: &str) -> serde_json::Value {
    json!({"deadLetter": {"queueRef": {"name": name}, "maxReceiveCount": 3}})
}

#[tokio::test]
async fn a_cycle_stalls_every_member_and_heals_when_broken() {
    let h = Harness::new("dep-cycle").await;
    let (a, b) = (h.bucket_name("a"), h.bucket_name("b"));
    h.apply::<Queue>(&a, dlq(&b)).await;
    h.apply::<Queue>(&b, dlq(&a)).await;
    for (me, other) in [(&a, &b), (&b, &a)] {
        let (_, message) = h.wait_stalled_as::<Queue>(me, "DependencyCycle").await;
        let spelled = format!("Queue/{me} → Queue/{other} → Queue/{me}");
        assert!(message.contains(&spelled), "{message}");
        assert!(!exists(&h, me).await, "nothing is created for a member of a cycle");
    }
    // Breaking one edge heals both, with no restart.
    h.merge_spec::<Queue>(&b, json!({"deadLetter": null})).await;
    h.wait(&b, "Ready", ready_at_generation::<Queue>).await;
    h.wait(&a, "Ready", ready_at_generation::<Queue>).await;
}

#[tokio::test]
async fn a_dependency_is_deleted_only_after_its_dependents() {
    let h = Harness::new("dep-delete").await;
    let (work, dead) = (h.bucket_name("work"), h.bucket_name("dead"));
    h.apply::<Queue>(&work, dlq(&dead)).await;
    h.apply::<Queue>(&dead, json!({})).await;
    h.wait(&work, "Ready", ready_at_generation::<Queue>).await;

    // Deleting only the dead-letter queue while another queue redrives to it: it stays.
    h.delete::<Queue>(&dead).await;
    let q: Queue = h
        .wait(&dead, "DependentsExist", |q: &Queue| {
            ready_reason(q).as_deref() == Some("DependentsExist")
        })
        .await;
    let message = cloudkit_e2e::condition(q.status.as_ref(), "Ready")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("Queue/{work} (spec.deadLetter.queueRef)")),
        "{message}"
    );
    assert!(exists(&h, &dead).await, "a queue in use stays in the cloud");
    let redrive = h
        .sqs
        .get_queue_attributes()
        .queue_url(
            h.sqs
                .get_queue_url()
                .queue_name(&work)
                .send()
                .await
                .expect("url")
                .queue_url()
                .unwrap_or_default(),
        )
        .attribute_names(Attr::RedrivePolicy)
        .send()
        .await
        .expect("GetQueueAttributes");
    assert!(
        redrive
            .attributes()
            .is_some_and(|a| a.contains_key(&Attr::RedrivePolicy))
    );

    // Once its user is gone, it goes too: nothing is left in the cloud.
    h.delete::<Queue>(&work).await;
    h.wait_deleted::<Queue>(&work).await;
    h.wait_deleted::<Queue>(&dead).await;
    assert!(!exists(&h, &work).await && !exists(&h, &dead).await);
}

#[tokio::test]
async fn deleting_a_whole_stack_leaves_nothing() {
    let h = Harness::new("dep-stack").await;
    let names: Vec<String> = ["c", "b", "a"].iter().map(|n| h.bucket_name(n)).collect();
    // a ← b ← c: c redrives to b, b to a.
    h.apply::<Queue>(&names[2], json!({})).await;
    h.apply::<Queue>(&names[1], dlq(&names[2])).await;
    h.apply::<Queue>(&names[0], dlq(&names[1])).await;
    for n in &names {
        h.wait(n, "Ready", ready_at_generation::<Queue>).await;
    }
    for n in names.iter().rev() {
        h.delete::<Queue>(n).await;
    }
    for n in &names {
        h.wait_deleted::<Queue>(n).await;
        assert!(!exists(&h, n).await, "{n} left in the cloud");
    }
}

#[tokio::test]
async fn cloudkit_graph_draws_a_namespace_with_ready_marks() {
    let h = Harness::new("dep-graph").await;
    let (work, dead) = (h.bucket_name("work"), h.bucket_name("dead"));
    h.apply::<Queue>(&work, dlq(&dead)).await;
    h.apply::<Queue>(&dead, json!({})).await;
    h.wait(&work, "Ready", ready_at_generation::<Queue>).await;
    let graph = |format: &str| {
        let out = std::process::Command::new(std::env::var("CLOUDKIT_BIN").expect("CLOUDKIT_BIN"))
            .args(["graph", "--namespace", &h.ns, "--format", format])
            .output()
            .expect("cloudkit graph runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = graph("text");
    assert!(
        text.contains(&format!("Queue/{work} [Ready] → waits for Queue/{dead}")),
        "{text}"
    );
    assert!(text.contains(&format!("Queue/{dead} [Ready]")), "{text}");
    assert!(graph("dot").contains("color=green"));
}
