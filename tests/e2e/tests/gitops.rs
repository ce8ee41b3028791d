//! How GitOps tools judge CloudKit objects. Argo CD: the Lua health check shipped in
//! `docs/gitops/argocd-health.lua`, run by a real Lua 5.4 on objects captured from the real
//! apiserver in each state the controller writes.

use std::path::PathBuf;

use cloudkit_crds::{Bucket, Queue};
use cloudkit_e2e::{Harness, ready_at_generation, ready_reason};
use serde_json::{Value, json};

/// A JSON value as a Lua table constructor, as Argo CD hands the object to the script.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // Rust's escapes (\", \\, \n, \u{..}) are Lua 5.4's too.
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Argo CD's verdict on `obj`: (status, message).
fn argocd_health(obj: &Value) -> (String, String) {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/gitops/argocd-health.lua"
    ));
    let program = format!(
        "obj = {}\nlocal hs = assert(loadfile({:?}))()\nio.write(hs.status, \"\\t\", hs.message or \"\")\n",
        lua(obj),
        script.display().to_string()
    );
    let out = std::process::Command::new("lua5.4")
        .args(["-e", &program])
        .output()
        .expect("lua5.4 runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, message) = text.split_once('\t').unwrap_or((&text, ""));
    (status.to_owned(), message.to_owned())
}

fn captured<K: serde::Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).expect("serializable")
}

#[tokio::test]
async fn argocd_health_check_agrees_with_the_conditions() {
    let h = Harness::new("argocd").await;
    let (good, bad, waiting) = (h.bucket_name("good"), h.bucket_name("bad"), h.bucket_name("waiting"));
    h.apply::<Bucket>(&good, json!({})).await;
    h.apply::<Bucket>(&bad, json!({"externalName": "Not_A_Bucket"})).await;
    h.apply::<Queue>(
        &waiting,
        json!({"deadLetter": {"queueRef": {"name": "not-there-yet"}, "maxReceiveCount": 2}}),
    )
    .await;

    let ready = captured(&h.wait(&good, "Ready", ready_at_generation::<Bucket>).await);
    let (status, message) = argocd_health(&ready);
    assert_eq!(status, "Healthy", "{message}");

    let (stalled, _) = h.wait_stalled_as::<Bucket>(&bad, "InvalidSpec").await;
    let (status, message) = argocd_health(&captured(&stalled));
    assert_eq!(status, "Degraded");
    assert!(
        message.contains("InvalidSpec") && message.contains("spec.externalName"),
        "{message}"
    );

    let blocked = h
        .wait(&waiting, "DependencyNotFound", |q: &Queue| {
            ready_reason(q).as_deref() == Some("DependencyNotFound")
        })
        .await;
    let (status, message) = argocd_health(&captured(&blocked));
    assert_eq!(status, "Progressing");
    assert!(message.contains("not-there-yet"), "{message}");

    // States too brief to catch reliably, made from the captured Ready object: no status yet,
    // a spec change the controller has not seen, and deletion.
    let mut fresh = ready.clone();
    fresh.as_object_mut().expect("object").remove("status");
    assert_eq!(argocd_health(&fresh).0, "Progressing");
    let mut changed = ready.clone();
    changed["metadata"]["generation"] = json!(ready["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    assert_eq!(argocd_health(&changed).0, "Progressing");
    let mut deleting = ready.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(argocd_health(&deleting).0, "Progressing");
}
