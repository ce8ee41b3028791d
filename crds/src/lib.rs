#![forbid(unsafe_code)]
// kube-derive's printcolumn(...) lists repeat `type_ = "string"`, which this lint misreads.
#![allow(clippy::duplicated_attributes)]
//! CloudKit's API (`cloudkit.dev/v1alpha1`): the custom resource types, their CRDs, and
//! the spec validation the controller runs itself (kube-apiserver 1.20 has no CEL).

/// Declares a managed kind: its spec struct plus what every managed kind shares (group,
/// version, `ManagedStatus`, the `cloudkit` category and the READY, REASON, EXTERNAL-NAME and
/// AGE columns), so the kinds cannot drift apart.
macro_rules! managed_kind {
    (kind = $kind:tt, shortname = $short:tt, doc = $doc:tt, $(#[$meta:meta])* pub struct $spec:ident { $($body:tt)* }) => {
        #[doc = $doc]
        #[derive(kube::CustomResource, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
        #[kube(
            group = "cloudkit.dev",
            version = "v1alpha1",
            kind = $kind,
            namespaced,
            status = "crate::common::ManagedStatus",
            shortname = $short,
            category = "cloudkit",
            doc = $doc,
            printcolumn(name = "READY", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
            printcolumn(name = "REASON", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
            printcolumn(name = "EXTERNAL-NAME", type_ = "string", json_path = ".status.externalName"),
            printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(rename_all = "camelCase")]
        $(#[$meta])*
        pub struct $spec { $($body)* }
    };
}

pub mod bucket;
pub mod common;
pub mod function;
pub mod provider_config;
pub mod queue;
pub mod reason;
pub mod reference;
pub mod table;
pub mod topic;
pub mod validation;

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bucket::Bucket;
pub use common::{DeletionPolicy, DriftPolicy, Kind, ManagedFields, ManagedStatus, ManagementPolicy, Reference};
pub use function::Function;
pub use provider_config::{Cloud, ProviderConfig};
pub use queue::Queue;
pub use table::Table;
pub use topic::Topic;

/// What the generic reconcile loop needs from every managed kind.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn managed(&self) -> &ManagedFields;
    fn managed_status(&self) -> Option<&ManagedStatus>;
    /// The per-cloud blocks (`spec.aws`, `spec.azure`, `spec.gcp`) the spec sets.
    fn cloud_blocks(&self) -> Vec<Cloud>;
    /// The other CloudKit objects (same namespace) this one reads outputs from.
    fn references(&self) -> Vec<Reference>;
    /// The Bigtable instance the resource lives in (Tables on GCP), part of where it is.
    fn gcp_instance(&self) -> Option<String> {
        None
    }

    /// The cloud resource's name: `spec.externalName`, else `metadata.name`.
    fn desired_external_name(&self) -> String {
        self.managed()
            .external_name
            .clone()
            .unwrap_or_else(|| self.meta().name.clone().unwrap_or_default())
    }
}

macro_rules! impl_managed {
    ($kind:ty, $($cloud:ident => $variant:expr),*; gcp_instance) => {
        impl_managed!($kind, $($cloud => $variant),*; fn gcp_instance(&self) -> Option<String> {
            self.spec.gcp.as_ref().and_then(|g| g.instance.clone())
        });
    };
    ($kind:ty, $($cloud:ident => $variant:expr),* $(; $extra:item)?) => {
        impl Managed for $kind {
            fn managed(&self) -> &ManagedFields {
                &self.spec.managed
            }
            fn managed_status(&self) -> Option<&ManagedStatus> {
                self.status.as_ref()
            }
            fn cloud_blocks(&self) -> Vec<Cloud> {
                let set: Vec<Option<Cloud>> = vec![$(self.spec.$cloud.as_ref().map(|_| $variant)),*];
                set.into_iter().flatten().collect()
            }
            fn references(&self) -> Vec<Reference> {
                self.spec.references()
            }
            $($extra)?
        }
    };
}

impl_managed!(Bucket, aws => Cloud::Aws, azure => Cloud::Azure, gcp => Cloud::Gcp);
impl_managed!(Table, aws => Cloud::Aws, gcp => Cloud::Gcp; gcp_instance);
impl_managed!(Queue, aws => Cloud::Aws, gcp => Cloud::Gcp);
impl_managed!(Topic, aws => Cloud::Aws, gcp => Cloud::Gcp);
impl_managed!(Function, aws => Cloud::Aws);

/// Every CRD CloudKit serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ProviderConfig::crd(),
        Bucket::crd(),
        Table::crd(),
        Queue::crd(),
        Topic::crd(),
        Function::crd(),
    ]
    .into_iter()
    .map(unobserved_until_reconciled)
    .map(bounded_integers)
    .collect()
}

/// Gives every `int32`/`int64` field the bounds of its type. kube-apiserver 1.20 does not
/// check `format`, so `memoryMb: 3000000000` was stored, and then the controller could not
/// decode the list of Functions at all: one bad number stopped a whole kind. With the bounds
/// the apiserver refuses it at apply, naming the field.
fn bounded_integers(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    fn walk(schema: &mut JSONSchemaProps) {
        let bounds = match schema.format.as_deref() {
            Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            // The nearest doubles inside i64's range (the schema's bounds are doubles).
            Some("int64") => Some((-9_223_372_036_854_774_784.0, 9_223_372_036_854_774_784.0)),
            _ => None,
        };
        if let Some((min, max)) = bounds {
            schema.minimum.get_or_insert(min);
            schema.maximum.get_or_insert(max);
        }
        for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
            walk(property);
        }
        match schema.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(item)) => walk(item),
            Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(walk),
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
            walk(values);
        }
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            walk(schema);
        }
    }
    crd
}

/// `status.observedGeneration` reads -1 until the controller writes it (the apiserver
/// defaults it on every read, persisting it with the next write), so kstatus (Flux, kpt,
/// Helm 4) judges a new or changed object InProgress instead of Current-with-no-status.
/// `status` itself needs the `{}` default: a nested default applies only inside an
/// object that exists. Tried on kube-apiserver 1.20 with kpt: without it `kpt live apply`
/// reports a broken object "successful" the moment it is created.
fn unobserved_until_reconciled(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        let Some(status) = status else { continue };
        status.default = Some(JSON(serde_json::json!({})));
        if let Some(observed) = status.properties.as_mut().and_then(|p| p.get_mut("observedGeneration")) {
            observed.default = Some(JSON(serde_json::json!(-1)));
        }
    }
    crd
}

/// The CRDs as one multi-document YAML stream, as `cloudkit crds` prints it.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::from("# Generated by `cloudkit crds`; do not edit.\n");
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart ships the CRDs; a stale copy would install an API the binary does not speak.
    #[test]
    fn committed_chart_crds_match_generated() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/cloudkit/crds/crds.yaml");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = crds_yaml().expect("CRDs serialize");
        assert!(
            committed == generated,
            "charts/cloudkit/crds/crds.yaml is stale: run `cargo run -p cloudkit -- crds > charts/cloudkit/crds/crds.yaml`"
        );
    }

    /// kube-apiserver 1.20 rejects `null` inside `enum` and `default: ""` (seen live).
    #[test]
    fn schemas_avoid_what_kube_1_20_rejects() {
        let yaml = crds_yaml().expect("CRDs serialize");
        assert!(
            !yaml.contains("- null"),
            "an Option<enum> field put null into an enum: give the enum a default variant"
        );
        assert!(
            !yaml.contains("default: \"\""),
            "an empty-string default: make the field required or optional"
        );
    }

    #[test]
    fn every_managed_kind_has_status_subresource_and_columns() {
        for crd in crds() {
            let version = &crd.spec.versions[0];
            assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
            if crd.spec.names.kind != "ProviderConfig" {
                let columns: Vec<_> = version
                    .additional_printer_columns
                    .iter()
                    .flatten()
                    .map(|c| c.name.as_str())
                    .collect();
                assert_eq!(
                    columns,
                    ["READY", "REASON", "EXTERNAL-NAME", "AGE"],
                    "{}",
                    crd.spec.names.kind
                );
            }
        }
    }

    /// Every integer field is bounded by its type, so the apiserver refuses what the
    /// controller could not decode (see bounded_integers).
    #[test]
    fn every_integer_field_is_bounded() {
        let yaml = crds_yaml().expect("CRDs serialize");
        let docs: Vec<serde_json::Value> = yaml
            .split("\n---\n")
            .map(|d| serde_saphyr::from_str(d).expect("a CRD"))
            .collect();
        fn check(v: &serde_json::Value, path: &str, seen: &mut usize) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(f) = map.get("format").and_then(|f| f.as_str())
                        && (f == "int32" || f == "int64")
                    {
                        *seen += 1;
                        assert!(map.contains_key("minimum") && map.contains_key("maximum"), "{path}");
                    }
                    for (k, child) in map {
                        check(child, &format!("{path}.{k}"), seen);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|i| check(i, path, seen)),
                _ => {}
            }
        }
        let mut seen = 0;
        for d in &docs {
            check(d, "", &mut seen);
        }
        assert!(seen >= 9, "{seen} integer fields");
    }

    /// kstatus must see a never-reconciled object as InProgress (see unobserved_until_reconciled).
    #[test]
    fn every_status_reads_unobserved_until_the_controller_writes() {
        for crd in crds() {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| s.properties.as_ref())
                .and_then(|p| p.get("status"))
                .cloned()
                .unwrap_or_default();
            let kind = &crd.spec.names.kind;
            assert_eq!(schema.default.map(|d| d.0), Some(serde_json::json!({})), "{kind}");
            let observed = schema.properties.unwrap_or_default().remove("observedGeneration");
            assert_eq!(
                observed.and_then(|o| o.default).map(|d| d.0),
                Some(serde_json::json!(-1)),
                "{kind}"
            );
        }
    }

    #[test]
    fn spec_defaults_apply_when_fields_are_omitted() {
        let spec: bucket::BucketSpec = serde_json::from_value(serde_json::json!({})).expect("empty spec");
        assert_eq!(spec.managed.provider_config_ref.name, "default");
        // Unset, and decided by whether the resource was created or adopted.
        assert_eq!(spec.managed.deletion_policy, None);
        assert!(spec.block_public_access);
        assert!(!spec.versioning);
    }
}
