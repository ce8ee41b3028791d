//! Function: the portable state every cloud's function backend observes and converges.

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudkit_crds::common::{Kind, Tags};
use cloudkit_crds::function::{FunctionSpec, OutputField};
use serde::Serialize;

use crate::{CloudError, Clouds, Dependencies, ExternalResource, ProviderContext};

/// Defaults that apply when the manifest leaves a field out; documented on the CRD fields,
/// and managed like any other value so that a function never keeps a stale setting.
pub const DEFAULT_MEMORY_MB: i32 = 128;
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 3;
pub const DEFAULT_ARCHITECTURE: &str = "x86_64";
/// Lambda's default for SQS event source mappings.
pub const DEFAULT_BATCH_SIZE: i32 = 10;

pub const PACKAGE_ZIP: &str = "Zip";
pub const PACKAGE_IMAGE: &str = "Image";

/// What to deploy; the state's `code` field is only its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeUpload {
    /// The archive's bytes, decoded from the manifest.
    Zip(Arc<Vec<u8>>),
    /// An archive in a bucket (by its cloud name).
    Object {
        bucket: String,
        key: String,
    },
    Image(String),
}

/// The settings of a function CloudKit manages.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionState {
    /// `Zip` or `Image`: fixed at creation.
    pub package_type: String,
    /// `None` for images, which bring their own.
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub env: BTreeMap<String, String>,
    /// Which code runs: `sha256:<base64 digest>` of a zip archive, `s3://bucket/key` of an
    /// archive in a bucket (while that object is unchanged since it was deployed), or an
    /// image URI.
    pub code: String,
    pub role_arn: Option<String>,
    pub architecture: String,
    /// Queue ARN to batch size.
    pub queue_triggers: BTreeMap<String, i32>,
    pub tags: Tags,
    /// What `code` names, for create and update; never compared.
    #[serde(skip)]
    pub upload: Option<CodeUpload>,
}

impl FunctionState {
    /// The state a manifest asks for; outputs of referenced resources come from `deps`.
    pub fn desired(spec: &FunctionSpec, deps: &Dependencies) -> Result<Self, String> {
        let (package_type, code, upload) = if let Some(zip) = &spec.code.zip_base64 {
            let bytes = decode_base64(zip)?;
            let code = format!("sha256:{}", sha256_base64(&bytes));
            (PACKAGE_ZIP, code, CodeUpload::Zip(Arc::new(bytes)))
        } else if let Some(object) = &spec.code.object {
            let bucket = deps
                .status(Kind::Bucket, &object.bucket)
                .and_then(|s| s.external_name.clone())
                .ok_or_else(|| format!("Bucket/{} has no external name in its status yet", object.bucket))?;
            let code = format!("s3://{bucket}/{}", object.key);
            let upload = CodeUpload::Object {
                bucket,
                key: object.key.clone(),
            };
            (PACKAGE_ZIP, code, upload)
        } else if let Some(image) = &spec.code.image {
            (PACKAGE_IMAGE, image.clone(), CodeUpload::Image(image.clone()))
        } else {
            return Err("spec.code sets no source".into());
        };
        let zip = package_type == PACKAGE_ZIP;
        let mut env = BTreeMap::new();
        for var in &spec.env {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => {
                    let status = deps
                        .status(from.kind, &from.name)
                        .ok_or_else(|| format!("{}/{} is not Ready yet", from.kind, from.name))?;
                    let (value, what) = match from.field {
                        OutputField::Arn => (&status.arn, "arn"),
                        OutputField::Url => (&status.url, "url"),
                        OutputField::Id => (&status.id, "id"),
                        OutputField::ExternalName => (&status.external_name, "externalName"),
                    };
                    value
                        .clone()
                        .ok_or_else(|| format!("{}/{} has no {what} in its status yet", from.kind, from.name))?
                }
                (None, None) => String::new(),
            };
            env.insert(var.name.clone(), value);
        }
        let mut queue_triggers = BTreeMap::new();
        for (i, trigger) in spec.triggers.iter().enumerate() {
            if let Some(queue) = &trigger.queue_ref {
                let reference = cloudkit_crds::Reference::new(Kind::Queue, &queue.name, format!("spec.triggers[{i}]"));
                queue_triggers.insert(deps.arn(&reference)?, trigger.batch_size.unwrap_or(DEFAULT_BATCH_SIZE));
            }
        }
        let aws = spec.aws.clone().unwrap_or_default();
        Ok(Self {
            package_type: package_type.to_owned(),
            runtime: spec.runtime.clone().filter(|_| zip),
            handler: spec.handler.clone().filter(|_| zip),
            memory_mb: spec.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
            timeout_seconds: spec.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            env,
            code,
            role_arn: aws.role_arn,
            architecture: aws.architecture.unwrap_or_else(|| DEFAULT_ARCHITECTURE.to_owned()),
            queue_triggers,
            tags: spec.tags.clone(),
            upload: Some(upload),
        })
    }
}

/// Lambda reports `CodeSha256` as the base64 of the archive's SHA-256.
#[cfg(feature = "aws")]
pub(crate) fn sha256_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

#[cfg(feature = "aws")]
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("spec.code.zipBase64 is not valid base64: {e}"))
}

// The hashing crates come with the aws feature. Without a cloud that runs Functions,
// `backend` answers Unsupported before the loop ever asks for a desired state.
#[cfg(not(feature = "aws"))]
pub(crate) fn sha256_base64(_bytes: &[u8]) -> String {
    String::new()
}

#[cfg(not(feature = "aws"))]
fn decode_base64(_text: &str) -> Result<Vec<u8>, String> {
    Err("this build has no cloud that runs Functions".into())
}

pub type FunctionBackend = dyn ExternalResource<State = FunctionState>;

/// The function backend for the ProviderConfig's cloud.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub async fn backend(ctx: &ProviderContext, clouds: &Clouds) -> Result<Box<FunctionBackend>, CloudError> {
    match ctx.cloud {
        #[cfg(feature = "aws")]
        cloudkit_crds::Cloud::Aws => Ok(Box::new(
            crate::aws::function::LambdaFunction::new(&clouds.aws, ctx).await,
        )),
        cloud => Err(CloudError::Unsupported {
            kind: "Function",
            cloud,
        }),
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use cloudkit_crds::ManagedStatus;

    use super::*;

    fn spec(json: serde_json::Value) -> FunctionSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    #[test]
    fn defaults_and_zip_identity() {
        // "hello" in base64; its SHA-256 in base64 is what Lambda would report.
        let s = spec(serde_json::json!({"runtime": "python3.12", "handler": "a.b", "code": {"zipBase64": "aGVsbG8="}}));
        let state = FunctionState::desired(&s, &Dependencies::default()).expect("desired");
        assert_eq!(state.memory_mb, 128);
        assert_eq!(state.timeout_seconds, 3);
        assert_eq!(state.architecture, "x86_64");
        assert_eq!(state.package_type, "Zip");
        assert_eq!(state.code, "sha256:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        assert_eq!(state.upload, Some(CodeUpload::Zip(Arc::new(b"hello".to_vec()))));
    }

    #[test]
    fn references_resolve_from_dependencies() {
        let s = spec(serde_json::json!({
            "code": {"image": "repo/f:1"},
            "env": [{"name": "Q", "valueFrom": {"kind": "Queue", "name": "q", "field": "url"}}],
            "triggers": [{"queueRef": {"name": "q"}}]
        }));
        let err = FunctionState::desired(&s, &Dependencies::default()).expect_err("not ready");
        assert!(err.contains("Queue/q"), "{err}");
        let mut deps = Dependencies::default();
        deps.insert(
            Kind::Queue,
            "q",
            ManagedStatus {
                arn: Some("arn:aws:sqs:us-east-1:1:q".into()),
                url: Some("http://sqs/q".into()),
                ..Default::default()
            },
        );
        let state = FunctionState::desired(&s, &deps).expect("desired");
        assert_eq!(state.env.get("Q").map(String::as_str), Some("http://sqs/q"));
        assert_eq!(state.queue_triggers.get("arn:aws:sqs:us-east-1:1:q"), Some(&10));
        assert_eq!((state.runtime, state.handler), (None, None));
        assert_eq!(state.package_type, "Image");
    }
}
