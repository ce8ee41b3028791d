//! The apiserver going away mid-run (a restart, a control-plane upgrade, a network cut):
//! every connection the controller holds drops and new ones are refused for a while. When
//! it is back, the watches resume by themselves: changes made meanwhile and afterwards are
//! acted on, nothing is created twice, and objects that did not change cost a re-list's
//! reconcile at most.
//!
//! The shared apiserver serves the other tests, so it is not restarted: the controller
//! reaches it through a TCP proxy the test cuts, while the test itself talks to it directly.

use std::time::{Duration, Instant};

use cloudkit_crds::ProviderConfig;
use cloudkit_e2e::proxy::Proxy;
use cloudkit_e2e::{Harness, eventually, is_true, ready_at_generation};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// How long the apiserver is unreachable.
const DOWN: Duration = Duration::from_secs(20);

/// The test's kubeconfig, its server URL and the server's loopback port.
fn kubeconfig() -> (String, String, u16) {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG is set");
    let text = std::fs::read_to_string(&path).expect("read KUBECONFIG");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server line")
        .trim()
        .to_owned();
    let (host, port) = server.rsplit_once(':').expect("server with a port");
    assert!(
        host.ends_with("127.0.0.1"),
        "the proxy relays to loopback only: {server}"
    );
    let port = port.trim_end_matches('/').parse().expect("port");
    (text, server, port)
}

/// A copy of the test's kubeconfig with the server's port replaced by the proxy's.
fn kubeconfig_through(proxy: &Proxy) -> std::path::PathBuf {
    let (text, server, _) = kubeconfig();
    let (host, _) = server.rsplit_once(':').expect("server with a port");
    let copy = std::env::temp_dir().join(format!("cloudkit-kubeconfig-{}", proxy.port));
    std::fs::write(&copy, text.replace(&server, &format!("{host}:{}", proxy.port))).expect("write kubeconfig");
    copy
}

fn s3_creates(calls: &std::collections::BTreeMap<(String, String), u64>) -> u64 {
    calls
        .get(&("S3".to_owned(), "CreateBucket".to_owned()))
        .copied()
        .unwrap_or(0)
}

async fn team_tag(h: &Harness, bucket: &str) -> Option<String> {
    let out = h.s3.get_bucket_tagging().bucket(bucket).send().await.ok()?;
    out.tag_set()
        .iter()
        .find(|t| t.key() == "team")
        .map(|t| t.value().to_owned())
}

#[tokio::test]
async fn watches_resume_after_the_apiserver_comes_back() {
    let mut h = Harness::new("apiserver").await;
    let proxy = Proxy::start(kubeconfig().2, |client, _| async move { drop(client) }).await;
    h.kill_controller();
    h.controller_kubeconfig = Some(kubeconfig_through(&proxy));
    h.start_controller();
    // A resync of an hour: every reconcile counted below comes from a watch event.
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    configs
        .patch(
            "slow",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "slow"},
                "spec": {
                    "provider": "aws", "endpoint": h.endpoint, "resyncInterval": "1h",
                    "credentials": {"source": "Secret", "secretRef": {"name": "aws"}}
                }
            })),
        )
        .await
        .expect("apply ProviderConfig");
    let spec = |team: &str| json!({"providerConfigRef": {"name": "slow"}, "tags": {"team": team}});
    let names: Vec<String> = (0..4).map(|i| h.bucket_name(&format!("b{i}"))).collect();
    for name in &names {
        h.apply_bucket(name, spec("before")).await;
    }
    for name in &names {
        h.wait_bucket(name, "Ready", ready_at_generation).await;
    }
    let calls_before = h.cloud_calls().await;
    let reconciles_before = h.reconciles("Bucket").await;

    // --- the apiserver is away ------------------------------------------------------
    proxy.set_up(false);
    let cut = Instant::now();
    // Made while the controller cannot see: found by the re-list when it is back.
    h.merge_spec::<cloudkit_crds::Bucket>(&names[0], json!({"tags": {"team": "during"}}))
        .await;
    let during = h.bucket_name("during");
    h.apply_bucket(&during, spec("during")).await;
    tokio::time::sleep(DOWN.saturating_sub(cut.elapsed())).await;
    assert_eq!(
        team_tag(&h, &names[0]).await.as_deref(),
        Some("before"),
        "acted without the apiserver?"
    );
    proxy.set_up(true);
    let back = Instant::now();

    h.wait_bucket(&during, "Ready", ready_at_generation).await;
    eventually("the change made during the cut applied", || async {
        team_tag(&h, &names[0]).await.as_deref() == Some("during")
    })
    .await;
    let caught_up = back.elapsed();
    // And the watches run again: a change and a new object after the return.
    h.merge_spec::<cloudkit_crds::Bucket>(&names[1], json!({"tags": {"team": "after"}}))
        .await;
    let after = h.bucket_name("after");
    h.apply_bucket(&after, spec("after")).await;
    h.wait_bucket(&after, "Ready", ready_at_generation).await;
    eventually("the change made after the return applied", || async {
        team_tag(&h, &names[1]).await.as_deref() == Some("after")
    })
    .await;
    for name in names.iter().chain([&during, &after]) {
        let b = h.wait_bucket(name, "Ready", ready_at_generation).await;
        assert!(!is_true(&b, "Stalled"), "{name}: {:?}", b.status);
    }

    let creates = s3_creates(&h.cloud_calls().await) - s3_creates(&calls_before);
    assert_eq!(
        creates, 2,
        "one CreateBucket for each new bucket, none again for the old ones"
    );
    let reconciles = h.reconciles("Bucket").await - reconciles_before;
    println!(
        "apiserver away {}s: caught up {:.1}s after its return; {reconciles} Bucket reconciles for 6 objects, \
         2 new and 2 changed; {creates} CreateBucket calls",
        DOWN.as_secs(),
        caught_up.as_secs_f64()
    );
    // Each object: its re-list event, plus for the changed and new ones their own (create,
    // then the status write's echo, then a change) — never a storm of retries.
    assert!(reconciles <= 6 * 4, "{reconciles} reconciles for 6 objects");
}
