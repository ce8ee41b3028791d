//! `Function`: serverless code (Lambda, Azure Functions, Cloud Functions).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Kind, LocalRef, ManagedFields, Reference, Tags};

/// Which output of the referenced resource to read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OutputField {
    Arn,
    Url,
    Id,
    ExternalName,
}

/// Reads an output of another CloudKit resource; the Function waits until it is Ready.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOutputRef {
    pub kind: Kind,
    pub name: String,
    pub field: OutputField,
}

/// One environment variable: exactly one of `value`, `valueFrom`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Letters, digits and `_`, starting with a letter; Lambda reserves some `AWS_*` names.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// An output (`arn`, `url`, `id`, `externalName`) of another CloudKit resource in the
    /// same namespace, e.g. a Queue's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ResourceOutputRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLocation {
    /// The CloudKit `Bucket` (same namespace) holding the archive; the Function waits for it.
    pub bucket: String,
    /// The archive's key in that bucket. The code is deployed again when the object changes.
    pub key: String,
}

/// Where the code comes from: exactly one of the fields. A zip archive (`zipBase64` or
/// `object`) cannot become an `image` or back once the Function exists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeSource {
    /// A zip archive, base64-encoded (small functions only: Lambda takes at most 50 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip_base64: Option<String>,
    /// A zip archive in object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectLocation>,
    /// A container image URI; `runtime` and `handler` then come from the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// An event source that invokes the Function: a `queueRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// A `Queue` (same namespace) whose messages invoke the Function; it waits until the Queue is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ref: Option<LocalRef>,
    /// Refused: a Topic invokes a Function from the Topic's side (its `subscriptions[]` with
    /// `protocol: Function` and `functionRef`), which owns the subscription and the invoke
    /// permission. Kept so that a manifest using it is answered with that, not ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_ref: Option<LocalRef>,
    /// Queue triggers only: messages per invocation (1 to 10000, default 10; at most 10 for
    /// FIFO queues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i32>,
}

/// Settings only Lambda has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsFunction {
    /// Execution role ARN (`arn:aws:iam::<account>:role/<name>`); required on AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `x86_64` (default) or `arm64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

managed_kind! {
    kind = "Function",
    shortname = "ckfn",
    doc = "Serverless code: Lambda on AWS, Azure Functions, Cloud Functions on GCP.",
    pub struct FunctionSpec {
        #[serde(flatten)]
        pub managed: ManagedFields,
        // Optional rather than defaulted to "": kube-apiserver 1.20 refuses such a schema default.
        /// Language runtime, e.g. `python3.12`, `nodejs20.x`. Required for zip code; leave it
        /// out for an image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub runtime: Option<String>,
        /// Entry point, e.g. `app.handler`. Required for zip code; leave it out for an image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub handler: Option<String>,
        /// Memory in MiB (128 to 10240, default 128).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub memory_mb: Option<i32>,
        /// Seconds an invocation may run (1 to 900, default 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timeout_seconds: Option<i32>,
        /// Environment variables, each a literal or another resource's output.
        #[serde(default)]
        pub env: Vec<EnvVar>,
        pub code: CodeSource,
        /// Event sources that invoke the Function; triggers removed from the list are removed
        /// from the cloud.
        #[serde(default)]
        pub triggers: Vec<Trigger>,
        #[serde(default)]
        pub tags: Tags,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub aws: Option<AwsFunction>,
    }
}

impl FunctionSpec {
    pub fn references(&self) -> Vec<Reference> {
        let mut refs = Vec::new();
        for (i, e) in self.env.iter().enumerate() {
            if let Some(from) = &e.value_from {
                refs.push(Reference::new(
                    from.kind,
                    &from.name,
                    format!("spec.env[{i}].valueFrom"),
                ));
            }
        }
        if let Some(object) = &self.code.object {
            refs.push(Reference::new(Kind::Bucket, &object.bucket, "spec.code.object.bucket"));
        }
        for (i, t) in self.triggers.iter().enumerate() {
            if let Some(q) = &t.queue_ref {
                refs.push(Reference::new(
                    Kind::Queue,
                    &q.name,
                    format!("spec.triggers[{i}].queueRef"),
                ));
            }
        }
        refs
    }
}
