//! Azure with Entra ID credentials end to end: the real controller gets bearer tokens from
//! an Entra ID token endpoint (the tests' stand-in, `cloudkit_e2e::entra`) and uses them
//! against the HTTPS Azurite, which checks each token's audience, issuer and lifetime.
//! What is in Azurite is checked with the tests' own Shared Key client.

use cloudkit_crds::{Bucket, Queue, Table};
use cloudkit_e2e::entra::{Principal, TokenServer};
use cloudkit_e2e::{Azurite, Harness, eventually, ready_at_generation, ready_reason};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Tokens live 303 s: azure_identity renews 300 s before expiry, so every few seconds.
const LIFETIME: u64 = 303;

async fn provider_config(
    h: &Harness,
    az: &Azurite,
    authority: &str,
    credentials: serde_json::Value,
    azure: serde_json::Value,
) {
    let mut settings = json!({
        "storageAccount": az.account,
        "authorityHost": authority,
        "endpoints": {"blob": az.blob, "queue": az.queue, "table": az.table}
    });
    for (k, v) in azure.as_object().cloned().unwrap_or_default() {
        settings[k] = v;
    }
    let api: Api<cloudkit_crds::ProviderConfig> = Api::namespaced(h.client.clone(), &h.ns);
    api.patch(
        "entra",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(json!({
            "apiVersion": "cloudkit.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "entra"},
            "spec": {"provider": "azure", "resyncInterval": "2s", "credentials": credentials, "azure": settings}
        })),
    )
    .await
    .expect("ProviderConfig applied");
}

async fn secret(h: &Harness, client_secret: &str) {
    let api: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    api.patch(
        "entra",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "entra"},
            "stringData": {"tenantId": TENANT, "clientId": "cloudkit-app", "clientSecret": client_secret}
        })),
    )
    .await
    .expect("Secret applied");
}

/// Restarts the controller trusting the dev CA (Azurite's and the token endpoint's
/// certificates), as a pod would with the CA mounted and SSL_CERT_FILE set.
fn restart_trusting_dev_ca(h: &mut Harness, extra_env: &[(&str, &str)]) {
    h.kill_controller();
    let ca = std::env::var("CLOUDKIT_DEV_CA").expect("CLOUDKIT_DEV_CA: source the dev-env file");
    h.controller_env = vec![("SSL_CERT_FILE".into(), ca)];
    h.controller_env
        .extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h.start_controller();
}

#[tokio::test]
async fn service_principal_secret_gets_renewed_tokens_and_recovers_from_rotation() {
    let mut h = Harness::new("entra-sp").await;
    let az = Azurite::entra_from_env();
    let principal = |secret: &str| Principal {
        tenant: TENANT.into(),
        client_id: "cloudkit-app".into(),
        secret: Some(secret.into()),
        assertion: None,
    };
    let entra = TokenServer::start(vec![principal("first-s3cr3t-value")], LIFETIME).await;
    restart_trusting_dev_ca(&mut h, &[]);
    secret(&h, "first-s3cr3t-value").await;
    provider_config(
        &h,
        &az,
        &entra.authority(),
        json!({"source": "Secret", "secretRef": {"name": "entra"}}),
        json!({}),
    )
    .await;

    // All three storage services take the bearer token.
    let name = h.azure_name("sp", false);
    let table = h.azure_name("sp", true);
    let on_entra = json!({"providerConfigRef": {"name": "entra"}, "tags": {"team": "data"}});
    h.apply::<Bucket>(&name, on_entra.clone()).await;
    h.apply::<Queue>(&name, on_entra).await;
    h.apply::<Table>(
        &table,
        json!({"providerConfigRef": {"name": "entra"}, "partitionKey": {"name": "tenant", "type": "String"}}),
    )
    .await;
    h.wait::<Bucket>(&name, "Ready", ready_at_generation).await;
    h.wait::<Queue>(&name, "Ready", ready_at_generation).await;
    h.wait::<Table>(&table, "Ready", ready_at_generation).await;
    assert!(az.container_exists(&name).await && az.queue_exists(&name).await && az.table_exists(&table).await);
    let c = az.container(&name).await.metadata();
    assert_eq!(c.get("team").map(String::as_str), Some("data"), "{c:?}");
    {
        let requests = entra.requests.lock().expect("log");
        assert!(!requests.is_empty());
        for r in requests.iter() {
            assert_eq!(r.tenant, TENANT);
            assert_eq!(r.form.get("client_id").map(String::as_str), Some("cloudkit-app"));
            assert_eq!(
                r.form.get("scope").map(String::as_str),
                Some("https://storage.azure.com/.default")
            );
        }
    }

    // Renewed before expiry while the resyncs go on, and everything stays Ready.
    let first = entra.granted();
    eventually("the token renewed", || async { entra.granted() > first }).await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let b: Bucket = h.wait(&name, "still Ready", ready_at_generation).await;
    assert!(b.status.is_some_and(|s| s.drift.is_empty()));

    // The secret is rotated on the application before the Secret is updated: the renewal
    // is refused, the objects say so, no secret leaks, and the new Secret heals them.
    entra.accept(vec![principal("second-s3cr3t-value")]);
    let b: Bucket = h
        .wait(&name, "TokenRequestFailed", |b: &Bucket| {
            ready_reason(b).as_deref() == Some("TokenRequestFailed")
        })
        .await;
    let message = cloudkit_e2e::condition(b.status.as_ref(), "Ready")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("AADSTS7000215"),
        "the identity provider's answer is shown: {message}"
    );
    assert!(!message.contains("s3cr3t"), "{message}");
    secret(&h, "second-s3cr3t-value").await;
    h.wait::<Bucket>(&name, "Ready with the new secret", |b: &Bucket| {
        ready_reason(b).as_deref() != Some("TokenRequestFailed") && ready_at_generation(b)
    })
    .await;
    h.wait::<Queue>(&name, "Ready with the new secret", ready_at_generation)
        .await;

    let log = std::fs::read_to_string(&h.log).expect("controller log");
    assert!(
        !log.contains("s3cr3t-value"),
        "a client secret reached the controller's log"
    );

    h.delete::<Bucket>(&name).await;
    h.delete::<Queue>(&name).await;
    h.delete::<Table>(&table).await;
    h.wait_deleted::<Bucket>(&name).await;
    h.wait_deleted::<Queue>(&name).await;
    h.wait_deleted::<Table>(&table).await;
    assert!(!az.container_exists(&name).await && !az.queue_exists(&name).await && !az.table_exists(&table).await);
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token() {
    let mut h = Harness::new("entra-wi").await;
    let az = Azurite::entra_from_env();
    let token_file = std::env::temp_dir().join(format!("cloudkit-{}-sa-token", h.ns));
    std::fs::write(&token_file, "federated-service-account-token").expect("token file");
    // The ProviderConfig's clientId names the application; the pod's AZURE_CLIENT_ID is
    // what a ProviderConfig without one would use.
    let entra = TokenServer::start(
        vec![Principal {
            tenant: TENANT.into(),
            client_id: "team-a-app".into(),
            secret: None,
            assertion: Some("federated-service-account-token".into()),
        }],
        LIFETIME,
    )
    .await;
    restart_trusting_dev_ca(
        &mut h,
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "pod-default-app"),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().expect("utf-8 path")),
        ],
    );
    provider_config(
        &h,
        &az,
        &entra.authority(),
        json!({"source": "WorkloadIdentity"}),
        json!({"clientId": "team-a-app"}),
    )
    .await;
    let name = h.azure_name("wi", false);
    h.apply::<Bucket>(&name, json!({"providerConfigRef": {"name": "entra"}}))
        .await;
    h.wait::<Bucket>(&name, "Ready", ready_at_generation).await;
    assert!(az.container_exists(&name).await);
    {
        let requests = entra.requests.lock().expect("log");
        let r = requests.first().expect("a token request");
        assert!(r.granted, "{r:?}");
        assert_eq!(r.form.get("client_id").map(String::as_str), Some("team-a-app"));
        assert_eq!(
            r.form.get("client_assertion").map(String::as_str),
            Some("federated-service-account-token")
        );
    }
    assert_eq!(entra.refused(), 0);
    h.delete::<Bucket>(&name).await;
    h.wait_deleted::<Bucket>(&name).await;
    assert!(!az.container_exists(&name).await);
    let _ = std::fs::remove_file(token_file);
}
