//! A fixed credentials Secret reaches the objects that failed with it at once, not after
//! their backoff. With `--secret-access watch` (the default) the Secret's watch wakes the
//! ProviderConfig naming it; with `--secret-access get` (RBAC grants get only) a
//! ProviderConfig whose objects fail reads its Secret every 30 s. Either way, when it
//! resolves to other credentials than before, every object on it that is not Ready is
//! retried.
//!
//! The object fails 7 times first (1–2 s, then doubling, each × [0.5, 1)), so its next retry
//! is at least 64 s away when the Secret is fixed: Ready well before that shows the wake.

use std::time::{Duration, Instant};

use cloudkit_crds::{Bucket, ProviderConfig};
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
    let took = fix_after_seven_failures(&h).await;
    // The watch sees the change at once; the rest is one reconcile.
    assert!(
        took < Duration::from_secs(10),
        "the fix was not seen through the watch: {took:?}; log: {}",
        h.log.display()
    );
}

#[tokio::test]
async fn a_fixed_secret_wakes_them_without_a_watch() {
    let mut h = Harness::new("secretget").await;
    h.kill_controller();
    h.start_controller_with(&["--secret-access", "get"]);
    let took = fix_after_seven_failures(&h).await;
    // Read again every 30 s while objects fail.
    assert!(
        took < Duration::from_secs(45),
        "the fix waited for the backoff: {took:?}; log: {}",
        h.log.display()
    );
}

/// How long after a ProviderConfig's Secret is fixed its object, failing 7 times by then, is
/// Ready.
async fn fix_after_seven_failures(h: &Harness) -> Duration {
    put_secret(h, json!({"accessKeyId": "testing"})).await;
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
        if failures(h, "CredentialsInvalid").await >= 7.0 {
            break;
        }
        assert!(started.elapsed() < TIMEOUT * 2, "7 failures take at most 63 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    put_secret(h, json!({"accessKeyId": "testing", "secretAccessKey": "testing"})).await;
    let fixed = Instant::now();
    eventually("the bucket Ready with the fixed Secret", || async {
        let b = h.api::<Bucket>().get(&name).await.expect("get bucket");
        ready_at_generation(&b)
    })
    .await;
    let took = fixed.elapsed();
    println!("Ready {took:?} after the Secret was fixed (backoff alone: 64 s or more)");
    took
}

/// A deleted credentials Secret shows on its ProviderConfig at once (it used to wait for the
/// 10-minute recheck, or for an object to fail), and so does its return.
#[tokio::test]
async fn a_deleted_secret_shows_on_its_provider_config_at_once() {
    let h = Harness::new("secretgone").await;
    let name = h.bucket_name("gone");
    h.apply::<Bucket>(&name, json!({})).await;
    h.wait::<Bucket>(&name, "Ready", ready_at_generation).await;
    let configs: Api<ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    let reason = |c: &ProviderConfig| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let secret = secrets.get("aws").await.expect("the harness's Secret");
    secrets.delete("aws", &Default::default()).await.expect("delete Secret");
    let deleted = Instant::now();
    eventually("the ProviderConfig says CredentialsNotFound", || async {
        let c = configs.get("default").await.expect("get ProviderConfig");
        reason(&c) == Some(("False".into(), "CredentialsNotFound".into()))
    })
    .await;
    let seen = deleted.elapsed();
    put_secret_named(&h, "aws", &secret).await;
    let restored = Instant::now();
    eventually("the ProviderConfig Ready again", || async {
        let c = configs.get("default").await.expect("get ProviderConfig");
        reason(&c).is_some_and(|(status, _)| status == "True")
    })
    .await;
    let back = restored.elapsed();
    println!("ProviderConfig: CredentialsNotFound {seen:?} after the delete, Ready {back:?} after the restore");
    assert!(seen < Duration::from_secs(10), "deletion seen after {seen:?}");
    assert!(back < Duration::from_secs(10), "return seen after {back:?}");
    h.wait::<Bucket>(&name, "Ready", ready_at_generation).await;
}

async fn put_secret_named(h: &Harness, name: &str, from: &Secret) {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": from.data
    });
    secrets
        .patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&secret))
        .await
        .expect("apply Secret");
}
