//! A fixed credentials Secret reaches the objects that failed with it at once, not after
//! their backoff. The controller may not watch Secrets (the chart grants get only), so a
//! ProviderConfig that reads one checks it every 30 s, and when it resolves to other
//! credentials than before, every object on it that is not Ready is retried.
//!
//! The object fails 7 times first (1–2 s, then doubling, each × [0.5, 1)), so its next retry
//! is at least 64 s away when the Secret is fixed: Ready well before that shows the wake.

use std::time::{Duration, Instant};

use cloudkit_crds::Bucket;
use cloudkit_e2e::{Harness, TIMEOUT, eventually, ready_at_generation, ready_reason};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

async fn failures(h: &Harness, reason: &str) -> f64 {
    h.metric(&format!(
        "cloudkit_reconcile_failures_total{{kind=\"Bucket\",reason=\"{reason}\"}}"
    ))
    .await
    .unwrap_or(0.0)
}

async fn put_secret(h: &Harness, data: serde_json::Value) {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "half"}, "stringData": data
    });
    secrets
        .patch("half", &PatchParams::apply("e2e").force(), &Patch::Apply(&secret))
        .await
        .expect("apply Secret");
}

#[tokio::test]
async fn a_fixed_secret_wakes_the_objects_that_failed_with_it() {
    let h = Harness::new("secretfix").await;
    put_secret(&h, json!({"accessKeyId": "testing"})).await;
    h.provider_config_with(
        "half",
        &h.endpoint,
        json!({"credentials": {"source": "Secret", "secretRef": {"name": "half"}}}),
    )
    .await;
    let name = h.bucket_name("fix");
    h.apply::<Bucket>(&name, json!({"providerConfigRef": {"name": "half"}}))
        .await;
    h.wait::<Bucket>(&name, "CredentialsInvalid", |b| {
        ready_reason(b).as_deref() == Some("CredentialsInvalid")
    })
    .await;

    // Right after the 7th failure: the next retry is 64 s or more away.
    let started = Instant::now();
    loop {
        if failures(&h, "CredentialsInvalid").await >= 7.0 {
            break;
        }
        assert!(started.elapsed() < TIMEOUT * 2, "7 failures take at most 63 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    put_secret(&h, json!({"accessKeyId": "testing", "secretAccessKey": "testing"})).await;
    let fixed = Instant::now();
    eventually("the bucket Ready with the fixed Secret", || async {
        let b = h.api::<Bucket>().get(&name).await.expect("get bucket");
        ready_at_generation(&b)
    })
    .await;
    let took = fixed.elapsed();
    println!("Ready {took:?} after the Secret was fixed (backoff alone: 64 s or more)");
    assert!(
        took < Duration::from_secs(45),
        "the fix waited for the backoff: {took:?}; log: {}",
        h.log.display()
    );
}
