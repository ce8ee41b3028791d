//! What each kind costs in cloud calls, counted by the controller's own
//! `cloudkit_cloud_calls_total` (every request attempt, by service and operation): from
//! apply to Ready, and per quiet resync. Prints a table (`-- --nocapture`) and fails when a
//! kind needs more calls than the bound written here, so a regression cannot slip in.

use std::time::Duration;

use cloudkit_crds::{Bucket, Function, Managed, Queue, Table, Topic};
use cloudkit_e2e::{Harness, ready_at_generation};
use serde_json::{Value, json};

/// Calls to reach Ready and per quiet resync for one object of kind `K` alone in a namespace.
async fn measure<K: Managed>(test: &str, spec: impl AsyncFn(&Harness) -> Value) -> (u64, f64) {
    let h = Harness::new(test).await;
    let spec = spec(&h).await;
    h.metrics_up().await;
    let before = h.cloud_call_total().await;
    let name = h.bucket_name("calls");
    h.apply::<K>(&name, spec).await;
    h.wait(&name, "Ready", ready_at_generation::<K>).await;
    let to_ready = h.cloud_call_total().await - before;

    // Quiet resyncs every 2s: calls divided by the reconciles that made them.
    let kind = K::kind(&()).to_string();
    let (calls, runs) = (h.cloud_call_total().await, h.reconciles(&kind).await);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let resync_calls = h.cloud_call_total().await - calls;
    let resyncs = h.reconciles(&kind).await - runs;
    assert!(resyncs >= 2, "expected resyncs every 2s, saw {resyncs}");
    (to_ready, resync_calls as f64 / resyncs as f64)
}

#[tokio::test]
async fn calls_per_kind_to_ready_and_per_quiet_resync() {
    let rows = [
        (
            "Bucket",
            measure::<Bucket>(
                "calls-bucket",
                async |_| json!({"versioning": true, "tags": {"a": "b"}}),
            )
            .await,
            (9, 4.0),
        ),
        (
            "Queue",
            measure::<Queue>(
                "calls-queue",
                async |_| json!({"visibilityTimeoutSeconds": 60, "tags": {"a": "b"}}),
            )
            .await,
            (8, 3.0),
        ),
        (
            "Topic",
            measure::<Topic>(
                "calls-topic",
                async |_| json!({"displayName": "Orders", "tags": {"a": "b"}}),
            )
            .await,
            (8, 3.0),
        ),
        (
            "Table",
            measure::<Table>("calls-table", async |_| {
                json!({"partitionKey": {"name": "id", "type": "String"}, "ttlAttribute": "exp", "tags": {"a": "b"}})
            })
            .await,
            (13, 4.0),
        ),
        (
            "Function",
            measure::<Function>("calls-function", async |h| {
                json!({
                    "runtime": "python3.12", "handler": "app.handler", "memoryMb": 256, "tags": {"a": "b"},
                    "code": {"zipBase64": "ZGVmIGhhbmRsZXIoZSwgYyk6CiAgICByZXR1cm4gMQo="},
                    "aws": {"roleArn": h.iam_role().await}
                })
            })
            .await,
            (6, 2.0),
        ),
    ];
    println!("\n| kind | calls apply→Ready | calls per quiet resync |\n|---|---|---|");
    for (kind, (to_ready, per_resync), _) in &rows {
        println!("| {kind} | {to_ready} | {per_resync:.1} |");
    }
    for (kind, (to_ready, per_resync), (max_ready, max_resync)) in rows {
        assert!(
            to_ready <= max_ready,
            "{kind}: {to_ready} calls to Ready, bound {max_ready}"
        );
        assert!(
            per_resync <= max_resync,
            "{kind}: {per_resync} calls per resync, bound {max_resync}"
        );
    }
}
