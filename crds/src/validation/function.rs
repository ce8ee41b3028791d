//! Function checks: Lambda naming, code source, ranges, environment and triggers.

use std::collections::BTreeSet;

use super::{FieldError, in_range, name_error, tags};
use crate::function::FunctionSpec;
use crate::provider_config::Cloud;

/// Environment variables Lambda sets itself and refuses in a function's configuration.
const LAMBDA_RESERVED_ENV: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Lambda's limit on the whole environment: names plus values.
const LAMBDA_ENV_BYTES: usize = 4096;

/// Longest object key CloudKit can record in a Lambda tag value (256 characters, with the
/// `s3://bucket/` prefix) to notice when the object changes.
const MAX_OBJECT_KEY: usize = 180;

/// Checks a Function spec against the rules of the target cloud.
pub fn function(name: &str, name_field: &str, spec: &FunctionSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud == Cloud::Aws
        && let Some(problem) = lambda_name(name)
    {
        errors.push(name_error(name_field, name, "Lambda function", &problem));
    }
    code(spec, &mut errors);
    let i = |v: Option<i32>| v.map(i64::from);
    in_range(&mut errors, "spec.memoryMb", i(spec.memory_mb), 128..=10_240);
    in_range(&mut errors, "spec.timeoutSeconds", i(spec.timeout_seconds), 1..=900);
    env(spec, cloud, &mut errors);
    triggers(spec, &mut errors);
    if cloud == Cloud::Aws {
        aws(spec, &mut errors);
    }
    errors.extend(tags(&spec.tags, cloud));
    if cloud == Cloud::Aws && spec.tags.len() > 47 && spec.tags.len() <= 49 {
        errors.push(FieldError::new(
            "spec.tags",
            format!(
                "{} entries, but CloudKit keeps 3 of Lambda's 50 tags (its owner tag and 2 to track the code): \
                 use at most 47",
                spec.tags.len()
            ),
        ));
    }
    errors
}

/// Lambda function names: 1 to 64 letters, digits, `-` and `_`.
fn lambda_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 64 {
        return Some(format!("must be 1 to 64 characters long, not {}", name.len()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Some("use only letters, digits, '-' and '_'".into());
    }
    None
}

fn code(spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
    let c = &spec.code;
    let set = [c.zip_base64.is_some(), c.object.is_some(), c.image.is_some()]
        .iter()
        .filter(|s| **s)
        .count();
    if set != 1 {
        errors.push(FieldError::new(
            "spec.code",
            format!("sets {set} sources: set exactly one of zipBase64, object, image"),
        ));
    }
    if let Some(zip) = &c.zip_base64 {
        if let Some(problem) = base64_problem(zip) {
            errors.push(FieldError::new("spec.code.zipBase64", problem));
        } else if zip.trim().is_empty() {
            errors.push(FieldError::new("spec.code.zipBase64", "is empty: give a zip archive"));
        }
    }
    if let Some(object) = &c.object {
        if object.bucket.is_empty() {
            errors.push(FieldError::new("spec.code.object.bucket", "is empty: name a Bucket"));
        }
        if object.key.is_empty() || object.key.len() > MAX_OBJECT_KEY {
            errors.push(FieldError::new(
                "spec.code.object.key",
                format!(
                    "must be 1 to {MAX_OBJECT_KEY} characters long, not {}",
                    object.key.len()
                ),
            ));
        } else if !object
            .key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_.:/=+-@ ".contains(ch))
        {
            errors.push(FieldError::new(
                "spec.code.object.key",
                "use only letters, digits, spaces and _ . : / = + - @ (CloudKit records the key in a tag)",
            ));
        }
    }
    if c.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        errors.push(FieldError::new("spec.code.image", "is empty: give an image URI"));
    }
    let image = c.image.is_some();
    for (field, value) in [("spec.runtime", &spec.runtime), ("spec.handler", &spec.handler)] {
        match (image, value.as_deref().unwrap_or_default().trim().is_empty()) {
            (true, false) => errors.push(FieldError::new(
                field,
                "is set, but an image brings its own: remove it, or use zip code",
            )),
            (false, true) if set == 1 => errors.push(FieldError::new(field, "is required for zip code")),
            _ => {}
        }
    }
    if spec.handler.as_deref().is_some_and(|h| h.len() > 128) {
        errors.push(FieldError::new("spec.handler", "must be at most 128 characters"));
    }
}

/// Standard base64 with padding (whitespace allowed, as in wrapped output).
fn base64_problem(text: &str) -> Option<String> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !compact.len().is_multiple_of(4) {
        return Some("is not valid base64: its length is not a multiple of 4".into());
    }
    let body = compact
        .strip_suffix(b"==")
        .or_else(|| compact.strip_suffix(b"="))
        .unwrap_or(&compact);
    if let Some(bad) = body
        .iter()
        .find(|b| !(b.is_ascii_alphanumeric() || **b == b'+' || **b == b'/'))
    {
        return Some(format!(
            "is not valid base64: '{}' is not in the alphabet (use `base64 -w0 code.zip`)",
            char::from(*bad)
        ));
    }
    None
}

fn env(spec: &FunctionSpec, cloud: Cloud, errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    let mut bytes = 0;
    for (i, var) in spec.env.iter().enumerate() {
        let field = format!("spec.env[{i}]");
        let valid = var.name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && var.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!(
                    "'{}' is not a valid variable name: use letters, digits and '_', starting with a letter",
                    var.name
                ),
            ));
        } else if cloud == Cloud::Aws && LAMBDA_RESERVED_ENV.contains(&var.name.as_str()) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!("'{}' is set by Lambda itself: choose another name", var.name),
            ));
        }
        if !seen.insert(var.name.as_str()) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!("'{}' is listed twice: keep one", var.name),
            ));
        }
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(FieldError::new(field.clone(), "set exactly one of value, valueFrom"))
            }
            (_, Some(from)) if from.name.is_empty() => errors.push(FieldError::new(
                format!("{field}.valueFrom.name"),
                "is empty: name a resource",
            )),
            _ => {}
        }
        bytes += var.name.len() + var.value.as_deref().map_or(0, str::len);
    }
    if cloud == Cloud::Aws && bytes > LAMBDA_ENV_BYTES {
        errors.push(FieldError::new(
            "spec.env",
            format!("names and values take {bytes} bytes, but Lambda allows {LAMBDA_ENV_BYTES} in all"),
        ));
    }
}

fn triggers(spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        let field = format!("spec.triggers[{i}]");
        if let Some(topic) = &t.topic_ref {
            // One owner per subscription: the Topic keeps its list exactly as written.
            errors.push(FieldError::new(
                format!("{field}.topicRef"),
                format!(
                    "a Topic invokes a Function from the Topic's side: remove this trigger and add \
                     {{protocol: Function, functionRef: {{name: <this Function>}}}} to Topic/{}'s spec.subscriptions",
                    topic.name
                ),
            ));
        }
        let target = match &t.queue_ref {
            Some(q) => Some(("Queue", q.name.as_str())),
            None => {
                if t.topic_ref.is_none() {
                    errors.push(FieldError::new(field.clone(), "set queueRef"));
                }
                None
            }
        };
        if let Some((kind, name)) = target {
            if name.is_empty() {
                errors.push(FieldError::new(field.clone(), format!("the {kind} name is empty")));
            } else if !seen.insert((kind, name)) {
                errors.push(FieldError::new(
                    field.clone(),
                    format!("{kind}/{name} is listed twice: keep one"),
                ));
            }
        }
        if t.batch_size.is_some() && t.queue_ref.is_none() {
            errors.push(FieldError::new(
                format!("{field}.batchSize"),
                "applies to queue triggers only: remove it",
            ));
        }
        in_range(
            errors,
            &format!("{field}.batchSize"),
            t.batch_size.map(i64::from),
            1..=10_000,
        );
    }
}

fn aws(spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
    let aws = spec.aws.clone().unwrap_or_default();
    match aws.role_arn.as_deref() {
        None => errors.push(FieldError::new(
            "spec.aws.roleArn",
            "is required on AWS: give the execution role's ARN (arn:aws:iam::<account>:role/<name>)",
        )),
        Some(arn) if !role_arn(arn) => errors.push(FieldError::new(
            "spec.aws.roleArn",
            format!("'{arn}' is not an IAM role ARN such as arn:aws:iam::123456789012:role/my-function"),
        )),
        Some(_) => {}
    }
    if let Some(arch) = aws.architecture.as_deref()
        && !matches!(arch, "x86_64" | "arm64")
    {
        errors.push(FieldError::new(
            "spec.aws.architecture",
            format!("'{arch}' is not supported: use x86_64 or arm64"),
        ));
    }
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`, as Lambda checks it.
fn role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let name = resource.strip_prefix("role/").unwrap_or_default();
    partition.starts_with("aws")
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> FunctionSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/fn";

    #[test]
    fn a_good_spec_passes() {
        let s = spec(serde_json::json!({
            "runtime": "python3.12", "handler": "app.handler", "memoryMb": 256, "timeoutSeconds": 30,
            "env": [{"name": "MODE", "value": "x"},
                    {"name": "QUEUE_URL", "valueFrom": {"kind": "Queue", "name": "q", "field": "url"}}],
            "code": {"zipBase64": "UEsDBA=="},
            "triggers": [{"queueRef": {"name": "q"}, "batchSize": 5}],
            "aws": {"roleArn": ROLE, "architecture": "arm64"}
        }));
        assert_eq!(function("my_fn-1", "metadata.name", &s, Cloud::Aws), vec![]);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let s = spec(serde_json::json!({
            "runtime": "python3.12",
            "memoryMb": 64, "timeoutSeconds": 901,
            "env": [{"name": "1BAD", "value": "x"}, {"name": "AWS_REGION", "value": "x"},
                    {"name": "BOTH", "value": "x", "valueFrom": {"kind": "Queue", "name": "q", "field": "url"}}],
            "code": {"zipBase64": "not base64!"},
            "triggers": [{"queueRef": {"name": "q"}, "topicRef": {"name": "t"}},
                         {"topicRef": {"name": "t"}, "batchSize": 0}],
            "tags": {"cloudkit.dev/code": "x"},
            "aws": {"roleArn": "arn:aws:iam::1:user/me", "architecture": "sparc"}
        }));
        assert_eq!(
            fields(function("has.dot", "metadata.name", &s, Cloud::Aws)),
            [
                "metadata.name",
                "spec.code.zipBase64",
                "spec.handler",
                "spec.memoryMb",
                "spec.timeoutSeconds",
                "spec.env[0].name",
                "spec.env[1].name",
                "spec.env[2]",
                "spec.triggers[0].topicRef",
                "spec.triggers[1].topicRef",
                "spec.triggers[1].batchSize",
                "spec.triggers[1].batchSize",
                "spec.aws.roleArn",
                "spec.aws.architecture",
                "spec.tags.cloudkit.dev/code",
            ]
        );
    }

    #[test]
    fn exactly_one_code_source_and_image_rules() {
        let none = spec(serde_json::json!({"code": {}, "aws": {"roleArn": ROLE}}));
        assert_eq!(fields(function("f", "metadata.name", &none, Cloud::Aws)), ["spec.code"]);
        let image = spec(serde_json::json!({
            "runtime": "python3.12", "code": {"image": "1.dkr.ecr.us-east-1.amazonaws.com/f:1"},
            "aws": {"roleArn": ROLE}
        }));
        assert_eq!(
            fields(function("f", "metadata.name", &image, Cloud::Aws)),
            ["spec.runtime"]
        );
        let no_role = spec(serde_json::json!({"code": {"image": "x:1"}}));
        assert_eq!(
            fields(function("f", "metadata.name", &no_role, Cloud::Aws)),
            ["spec.aws.roleArn"]
        );
    }

    #[test]
    fn base64_and_role_checks() {
        assert_eq!(base64_problem("UEsDBBQAAAAIAA=="), None);
        assert_eq!(base64_problem("UEsD\nBA=="), None);
        assert!(base64_problem("UEsDB").is_some());
        assert!(base64_problem("UEs*").is_some());
        assert!(role_arn(ROLE));
        assert!(role_arn("arn:aws-cn:iam::123456789012:role/path/to/fn"));
        assert!(!role_arn("arn:aws:iam::123456789012:user/fn"));
        assert!(!role_arn("arn:aws:iam::12345:role/fn"));
        assert!(!role_arn("fn"));
    }

    #[test]
    fn lambda_names() {
        assert_eq!(lambda_name("a-b_C9"), None);
        assert!(lambda_name("").is_some());
        assert!(lambda_name(&"f".repeat(65)).is_some());
        assert!(lambda_name("a.b").is_some());
    }
}
