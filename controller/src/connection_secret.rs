//! Connection Secrets (`spec.writeConnectionSecretToRef`): a resource's outputs in a Secret
//! of its namespace, for applications to mount, owned by the resource.

use std::collections::BTreeMap;

use cloudkit_crds::ManagedStatus;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};

const FIELD_MANAGER: &str = "cloudkit";

/// The keys a connection Secret holds: every output the status has, and the region.
pub fn data(status: &ManagedStatus, region: &str) -> BTreeMap<String, ByteString> {
    [
        ("name", status.external_name.as_deref()),
        ("arn", status.arn.as_deref()),
        ("url", status.url.as_deref()),
        ("id", status.id.as_deref()),
        ("region", Some(region).filter(|r| !r.is_empty())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), ByteString(v.as_bytes().to_vec()))))
    .chain(
        status
            .outputs
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))),
    )
    .collect()
}

/// Server-side applies the Secret with the owner as its controller, so that Kubernetes
/// garbage-collects it with the owner even if CloudKit is not running then.
pub async fn write<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
    secret: &str,
    data: BTreeMap<String, ByteString>,
) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &owner.namespace().unwrap_or_default());
    let body = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(secret.to_owned()),
            owner_references: owner.controller_owner_ref(&()).map(|r| vec![r]),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "cloudkit".to_owned(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Default::default()
    };
    let mut value = serde_json::to_value(&body).map_err(kube::Error::SerdeError)?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    api.patch(
        secret,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await?;
    Ok(())
}

/// Deletes the Secret with its owner; one already gone is fine.
pub async fn delete(client: &Client, namespace: &str, secret: &str) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.delete(secret, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_outputs_that_exist_and_the_region() {
        let status = ManagedStatus {
            external_name: Some("orders".into()),
            arn: Some("arn:aws:sqs:eu-west-1:1:orders".into()),
            url: Some("https://sqs/1/orders".into()),
            ..Default::default()
        };
        let d = data(&status, "eu-west-1");
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(keys, ["arn", "name", "region", "url"]);
        assert_eq!(d["region"].0, b"eu-west-1");
    }
}
