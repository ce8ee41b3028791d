//! Spec checks the controller runs before any cloud call. kube-apiserver 1.20 ignores CEL,
//! and cloud naming rules differ per cloud, so the schema alone cannot catch these.

use std::fmt;
use std::time::Duration;

use crate::bucket::BucketSpec;
use crate::common::Tags;
use crate::provider_config::{Cloud, CredentialsSource, ProviderConfigSpec};

mod function;
mod queue;
mod table;
mod topic;
pub mod unsupported;

pub use function::function;
pub use queue::queue;
pub use table::table;
pub use topic::topic;

/// One problem with one field, phrased so the user knows what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one spec; reported together so one edit can fix them all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecErrors(pub Vec<FieldError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for SpecErrors {}

impl SpecErrors {
    fn into_result(self) -> Result<(), SpecErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// A per-cloud block for a cloud other than the ProviderConfig's is a mistake, not a no-op.
/// `spec.writeConnectionSecretToRef.name` must be a Secret name the apiserver accepts (a
/// DNS-1123 subdomain), or the resource is made in the cloud and then its Secret can never
/// be written.
pub fn connection_secret(name: Option<&str>) -> Vec<FieldError> {
    let Some(name) = name else { return Vec::new() };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        return Vec::new();
    }
    vec![FieldError::new(
        "spec.writeConnectionSecretToRef.name",
        format!(
            "'{name}' is not a valid Secret name: use at most 253 lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        ),
    )]
}

pub fn cloud_blocks(present: &[Cloud], cloud: Cloud, provider_config: &str) -> Vec<FieldError> {
    present
        .iter()
        .filter(|c| **c != cloud)
        .map(|c| {
            FieldError::new(
                format!("spec.{c}"),
                format!(
                    "is set but ProviderConfig '{provider_config}' is for {cloud}: remove spec.{c} \
                     or point spec.providerConfigRef at a {c} ProviderConfig"
                ),
            )
        })
        .collect()
}

/// Checks a Bucket spec against the naming and tagging rules of the target cloud.
/// `name_field` tells the user where the name came from (`spec.externalName` or `metadata.name`).
pub fn bucket(name: &str, name_field: &str, spec: &BucketSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name_problem = match cloud {
        Cloud::Aws => s3_bucket_name(name),
        Cloud::Azure => azure_container_name(name),
        Cloud::Gcp => gcs_bucket_name(name),
    };
    if let Some(problem) = name_problem {
        errors.push(name_error(name_field, name, &format!("{cloud} bucket"), &problem));
    }
    errors.extend(tags(&spec.tags, cloud));
    if cloud == Cloud::Azure
        && spec.block_public_access
        && spec.azure.as_ref().is_some_and(|a| a.public_access.is_some())
    {
        errors.push(FieldError::new(
            "spec.azure.publicAccess",
            "grants anonymous access, which spec.blockPublicAccess (default true) blocks: set \
             spec.blockPublicAccess: false as well, or remove spec.azure.publicAccess",
        ));
    }
    if let Some(scope) = spec.azure.as_ref().and_then(|a| a.default_encryption_scope.as_deref())
        && !azure_encryption_scope(scope)
    {
        errors.push(FieldError::new(
            "spec.azure.defaultEncryptionScope",
            format!("'{scope}' is not an encryption scope name: use 3 to 63 letters, digits and hyphens, starting with a letter or digit"),
        ));
    }
    match spec.encryption.key_id.as_deref() {
        Some(k) if k.trim().is_empty() => errors.push(FieldError::new(
            "spec.encryption.keyId",
            "is empty: remove it for provider-managed keys or give a key",
        )),
        Some(k) if cloud == Cloud::Gcp && !cloud_kms_key_name(k) => errors.push(FieldError::new(
            "spec.encryption.keyId",
            format!(
                "'{k}' is not a Cloud KMS key name: use \
                 projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>"
            ),
        )),
        _ => {}
    }
    errors
}

/// `projects/P/locations/L/keyRings/R/cryptoKeys/K`, the form a GCS default key takes.
fn cloud_kms_key_name(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() == 8
        && ["projects", "locations", "keyRings", "cryptoKeys"]
            .iter()
            .enumerate()
            .all(|(i, word)| parts[i * 2] == *word && !parts[i * 2 + 1].is_empty())
}

/// An optional number that must lie in `range` when set.
pub(crate) fn in_range(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) {
    if let Some(v) = value
        && !range.contains(&v)
    {
        errors.push(FieldError::new(
            field,
            format!("{v} is out of range: use {} to {}", range.start(), range.end()),
        ));
    }
}

/// SQS and SNS names: up to `max` letters, digits, `-` and `_`, ending in `.fifo` exactly
/// when the resource is FIFO.
pub(crate) fn fifo_name(name: &str, fifo: bool, max: usize, noun: &str) -> Option<String> {
    let base = match (fifo, name.strip_suffix(".fifo")) {
        (true, Some(base)) => base,
        (true, None) => return Some(format!("FIFO {noun} names must end in '.fifo'")),
        (false, Some(_)) => return Some(format!("only FIFO {noun}s may end in '.fifo': set spec.fifo: true")),
        (false, None) => name,
    };
    if name.is_empty() || name.len() > max {
        return Some(format!("must be 1 to {max} characters long, not {}", name.len()));
    }
    if base.is_empty() || !base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Some("use only letters, digits, '-' and '_'".into());
    }
    None
}

/// Where a cloud name came from, with a hint when it was `metadata.name`.
pub(crate) fn name_error(name_field: &str, name: &str, what: &str, problem: &str) -> FieldError {
    let hint = if name_field == "metadata.name" {
        "; set spec.externalName to a valid name"
    } else {
        ""
    };
    FieldError::new(
        name_field,
        format!("'{name}' is not a valid {what} name: {problem}{hint}"),
    )
}

/// Checks a ProviderConfig's own fields.
pub fn provider_config(spec: &ProviderConfigSpec) -> Result<(), SpecErrors> {
    let mut errors = Vec::new();
    let blocks: Vec<Cloud> = [
        spec.aws.as_ref().map(|_| Cloud::Aws),
        spec.azure.as_ref().map(|_| Cloud::Azure),
        spec.gcp.as_ref().map(|_| Cloud::Gcp),
    ]
    .into_iter()
    .flatten()
    .collect();
    for c in blocks.into_iter().filter(|c| *c != spec.provider) {
        errors.push(FieldError::new(
            format!("spec.{c}"),
            format!("is set but spec.provider is {}: remove it", spec.provider),
        ));
    }
    if spec.credentials.source == CredentialsSource::Secret && spec.credentials.secret_ref.is_none() {
        errors.push(FieldError::new(
            "spec.credentials.secretRef",
            "is required when spec.credentials.source is Secret",
        ));
    }
    if let Some(endpoint) = &spec.endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        errors.push(FieldError::new(
            "spec.endpoint",
            format!("'{endpoint}' must be an http:// or https:// URL"),
        ));
    }
    if let Some(region) = &spec.region {
        let ok = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            errors.push(FieldError::new(
                "spec.region",
                format!("'{region}' is not a region name such as eu-west-1"),
            ));
        }
    }
    if let Some(interval) = &spec.resync_interval
        && let Err(e) = parse_duration(interval)
    {
        errors.push(FieldError::new("spec.resyncInterval", e));
    }
    if let Some(limit) = &spec.rate_limit {
        if limit.requests_per_second == 0 {
            errors.push(FieldError::new(
                "spec.rateLimit.requestsPerSecond",
                "must be at least 1 (remove spec.rateLimit for no limit)",
            ));
        }
        if limit.burst == Some(0) {
            errors.push(FieldError::new(
                "spec.rateLimit.burst",
                "must be at least 1 (leave it unset for requestsPerSecond)",
            ));
        }
    }
    if spec.provider == Cloud::Azure {
        errors.extend(azure_provider(spec));
    }
    if spec.provider == Cloud::Gcp {
        errors.extend(gcp_provider(spec));
    } else if spec.credentials.source == CredentialsSource::Anonymous {
        errors.push(FieldError::new(
            "spec.credentials.source",
            format!(
                "Anonymous is only for GCP emulators (with spec.gcp.endpoints), not for {}: use Secret, \
                 Environment or WorkloadIdentity",
                spec.provider
            ),
        ));
    }
    SpecErrors(errors).into_result()
}

/// GCP needs the project (every resource name carries it); each service has its own
/// endpoint, so the single `spec.endpoint` cannot say where to go; where buckets live is
/// `gcp.location`, so `spec.region` would be a second, ignored answer.
fn gcp_provider(spec: &ProviderConfigSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let gcp = spec.gcp.clone().unwrap_or_default();
    match gcp.project.as_deref() {
        None => errors.push(FieldError::new(
            "spec.gcp.project",
            "is required with provider gcp: name the project holding buckets, topics and tables",
        )),
        Some(project) if !gcp_project_id(project) => errors.push(FieldError::new(
            "spec.gcp.project",
            format!(
                "'{project}' is not a project ID: use 6 to 30 lowercase letters, digits and hyphens, starting \
                 with a letter and not ending with a hyphen"
            ),
        )),
        Some(_) => {}
    }
    if let Some(location) = gcp.location.as_deref()
        && (location.is_empty() || !location.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        errors.push(FieldError::new(
            "spec.gcp.location",
            format!("'{location}' is not a location such as europe-west1, EU or US"),
        ));
    }
    if spec.endpoint.is_some() {
        errors.push(FieldError::new(
            "spec.endpoint",
            "is not used with provider gcp, whose services each have an endpoint: set \
             spec.gcp.endpoints.storage, .pubsub and .bigtable instead",
        ));
    }
    if spec.region.is_some() {
        errors.push(FieldError::new(
            "spec.region",
            "is not used with provider gcp: set spec.gcp.location (where buckets are made) instead",
        ));
    }
    let endpoints = gcp.endpoints.unwrap_or_default();
    for (service, url) in endpoints.overrides() {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(FieldError::new(
                format!("spec.gcp.endpoints.{service}"),
                format!("'{url}' must be an http:// or https:// URL"),
            ));
        }
    }
    if spec.credentials.source == CredentialsSource::Anonymous && endpoints.overrides().is_empty() {
        errors.push(FieldError::new(
            "spec.credentials.source",
            "Anonymous needs an endpoint override (an emulator) in spec.gcp.endpoints: Google's own endpoints \
             refuse unauthenticated calls; use Secret (serviceAccountKey), Environment or WorkloadIdentity",
        ));
    }
    errors
}

/// Project IDs: 6 to 30 lowercase letters, digits and hyphens, starting with a letter.
fn gcp_project_id(id: &str) -> bool {
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Azure needs the storage account (names resources and signs requests); each service has
/// its own endpoint, so the single `spec.endpoint` cannot say where to go.
fn azure_provider(spec: &ProviderConfigSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let azure = spec.azure.clone().unwrap_or_default();
    match azure.storage_account.as_deref() {
        None => errors.push(FieldError::new(
            "spec.azure.storageAccount",
            "is required with provider azure: name the storage account holding containers, queues and tables",
        )),
        Some(account) if !(3..=24).contains(&account.len()) || !account.chars().all(alnum_lower) => {
            errors.push(FieldError::new(
                "spec.azure.storageAccount",
                format!("'{account}' is not a storage account name: use 3 to 24 lowercase letters and digits"),
            ))
        }
        Some(_) => {}
    }
    if spec.endpoint.is_some() {
        errors.push(FieldError::new(
            "spec.endpoint",
            "is not used with provider azure, whose services each have an endpoint: set \
             spec.azure.endpoints.blob, .queue and .table instead",
        ));
    }
    let endpoints = azure.endpoints.unwrap_or_default();
    for (service, url) in [
        ("blob", &endpoints.blob),
        ("queue", &endpoints.queue),
        ("table", &endpoints.table),
    ] {
        if let Some(url) = url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            errors.push(FieldError::new(
                format!("spec.azure.endpoints.{service}"),
                format!("'{url}' must be an http:// or https:// URL"),
            ));
        }
    }
    // Tokens travel to it: never in clear.
    if let Some(host) = &azure.authority_host
        && !host.starts_with("https://")
    {
        errors.push(FieldError::new(
            "spec.azure.authorityHost",
            format!("'{host}' must be an https:// URL, e.g. https://login.microsoftonline.us"),
        ));
    }
    for (field, value) in [("tenantId", &azure.tenant_id), ("clientId", &azure.client_id)] {
        if let Some(value) = value
            && !entra_id(value)
        {
            errors.push(FieldError::new(
                format!("spec.azure.{field}"),
                format!("'{value}' is not an Entra ID: use the GUID (or, for tenantId, the domain) the portal shows"),
            ));
        }
    }
    errors
}

/// A tenant or client ID: a GUID, or a tenant's domain; both end up in a URL path.
pub fn entra_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Longest resync interval: drift should not go unnoticed for more than a day.
const MAX_RESYNC_SECONDS: u64 = 24 * 3600;

/// Parses `90s`, `10m`, `1h`: at least one second, at most 24 hours.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 30s, 10m or 1h"))?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => return Err(format!("'{text}' has no unit: use s, m or h, e.g. 10m")),
    };
    match seconds {
        Some(0) => Err(format!("'{text}' must be at least 1s")),
        Some(s) if s <= MAX_RESYNC_SECONDS => Ok(Duration::from_secs(s)),
        _ => Err(format!("'{text}' is longer than 24h")),
    }
}

fn looks_like_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn edges_alnum(name: &str) -> bool {
    name.chars().next().is_some_and(alnum_lower) && name.chars().last().is_some_and(alnum_lower)
}

/// S3 general purpose bucket naming rules.
fn s3_bucket_name(name: &str) -> Option<String> {
    if !(3..=63).contains(&name.len()) {
        return Some(format!("must be 3 to 63 characters long, not {}", name.len()));
    }
    if !name.chars().all(|c| alnum_lower(c) || c == '.' || c == '-') {
        return Some("use only lowercase letters, digits, dots and hyphens".into());
    }
    if !edges_alnum(name) {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    if name.contains("..") {
        return Some("must not contain two adjacent dots".into());
    }
    if looks_like_ipv4(name) {
        return Some("must not look like an IP address".into());
    }
    if let Some(p) = ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .find(|p| name.starts_with(**p))
    {
        return Some(format!("must not start with the reserved prefix '{p}'"));
    }
    if let Some(s) = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .find(|s| name.ends_with(**s))
    {
        return Some(format!("must not end with the reserved suffix '{s}'"));
    }
    None
}

/// Azure blob container naming rules.
fn azure_container_name(name: &str) -> Option<String> {
    if !(3..=63).contains(&name.len()) {
        return Some(format!("must be 3 to 63 characters long, not {}", name.len()));
    }
    if !name.chars().all(|c| alnum_lower(c) || c == '-') {
        return Some("use only lowercase letters, digits and hyphens".into());
    }
    if !edges_alnum(name) || name.contains("--") {
        return Some("must start and end with a letter or digit and not contain '--'".into());
    }
    None
}

/// Azure encryption scope names.
fn azure_encryption_scope(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Azure queue naming rules: those of containers.
pub(crate) fn azure_queue_name(name: &str) -> Option<String> {
    azure_container_name(name)
}

/// Azure table naming rules.
pub(crate) fn azure_table_name(name: &str) -> Option<String> {
    if !(3..=63).contains(&name.len()) {
        return Some(format!("must be 3 to 63 characters long, not {}", name.len()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Some("use only letters and digits".into());
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Some("must start with a letter".into());
    }
    if name.eq_ignore_ascii_case("tables") {
        return Some("'tables' is reserved by the Table service".into());
    }
    None
}

/// GCS bucket naming rules.
fn gcs_bucket_name(name: &str) -> Option<String> {
    let max = if name.contains('.') { 222 } else { 63 };
    if !(3..=max).contains(&name.len()) || name.split('.').any(|part| part.len() > 63) {
        return Some("must be 3 to 63 characters long (222 with dots, 63 per dot-separated part)".into());
    }
    if !name.chars().all(|c| alnum_lower(c) || matches!(c, '.' | '-' | '_')) {
        return Some("use only lowercase letters, digits, dots, hyphens and underscores".into());
    }
    if !edges_alnum(name) {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    if name.starts_with("goog") || name.contains("google") {
        return Some("must not start with 'goog' or contain 'google'".into());
    }
    if looks_like_ipv4(name) {
        return Some("must not look like an IP address".into());
    }
    None
}

/// Pub/Sub topic and subscription names (the last part of `projects/<p>/topics/<name>`).
pub(crate) fn pubsub_name(name: &str) -> Option<String> {
    if !(3..=255).contains(&name.len()) {
        return Some("must be 3 to 255 characters long".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some("must start with a letter".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c)) {
        return Some("use only letters, digits and - _ . ~ + %".into());
    }
    if name.starts_with("goog") {
        return Some("must not start with 'goog'".into());
    }
    None
}

/// Tag keys CloudKit writes itself (`cloudkit.dev/owner`, a function's code record).
pub const RESERVED_TAG_PREFIX: &str = "cloudkit.dev/";
/// The same on Azure, whose metadata keys cannot hold `.` or `/` (`cloudkit_owner`).
pub const RESERVED_AZURE_METADATA_PREFIX: &str = "cloudkit_";
/// The same on GCP, whose label keys cannot hold `.` or `/` either (`cloudkit-owner`).
pub const RESERVED_GCP_LABEL_PREFIX: &str = "cloudkit-";

/// Tags map to S3 tags, Azure metadata or GCS labels; each has its own rules.
pub(crate) fn tags(tags: &Tags, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    // One entry is CloudKit's own owner tag.
    let (max_count, noun) = match cloud {
        Cloud::Aws => (49, "tags"),
        Cloud::Azure => (usize::MAX, "metadata entries"),
        Cloud::Gcp => (63, "labels"),
    };
    if tags.len() > max_count {
        errors.push(FieldError::new(
            "spec.tags",
            format!(
                "{} entries, but {cloud} allows {} {noun} and CloudKit keeps one for its owner tag: use at most \
                 {max_count}",
                tags.len(),
                max_count + 1
            ),
        ));
    }
    for (key, value) in tags {
        let field = format!("spec.tags.{key}");
        let problem = match cloud {
            _ if key.starts_with(RESERVED_TAG_PREFIX) => Some(format!(
                "keys starting with '{RESERVED_TAG_PREFIX}' are CloudKit's own (it records the owner and \
                 more there): rename the tag"
            )),
            Cloud::Aws if key.is_empty() || key.chars().count() > 128 => {
                Some("keys must be 1 to 128 characters".to_owned())
            }
            Cloud::Aws if key.starts_with("aws:") => {
                Some("keys must not start with the reserved prefix 'aws:'".to_owned())
            }
            Cloud::Aws if value.chars().count() > 256 => Some("values must be at most 256 characters".to_owned()),
            Cloud::Aws if !aws_tag_text(key) || !aws_tag_text(value) => {
                Some("AWS tags may hold letters, digits, spaces and _ . : / = + - @ only".to_owned())
            }
            Cloud::Azure if key.starts_with(RESERVED_AZURE_METADATA_PREFIX) => Some(format!(
                "on Azure, metadata keys starting with '{RESERVED_AZURE_METADATA_PREFIX}' are CloudKit's own (it records \
                 the owner there): rename the tag"
            )),
            Cloud::Azure if !is_identifier(key) => Some(
                "Azure metadata keys must be identifiers: letters, digits and '_', not starting with a digit"
                    .to_owned(),
            ),
            // Azure ignores the case of metadata names, and its SDK sends and reads them in
            // lowercase: `Team` would come back as `team` and look like drift forever.
            Cloud::Azure if key.chars().any(|c| c.is_ascii_uppercase()) => Some(format!(
                "Azure metadata keys ignore case and are stored in lowercase: write '{}'",
                key.to_ascii_lowercase()
            )),
            Cloud::Azure if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) => {
                Some("Azure metadata values travel as HTTP headers: use printable ASCII only".to_owned())
            }
            Cloud::Gcp if key.starts_with(RESERVED_GCP_LABEL_PREFIX) => Some(format!(
                "on GCP, label keys starting with '{RESERVED_GCP_LABEL_PREFIX}' are CloudKit's own (it records the \
                 owner there): rename the tag"
            )),
            Cloud::Gcp if !gcs_label(key, true) => Some(
                "GCP label keys must be 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter"
                    .to_owned(),
            ),
            Cloud::Gcp if !gcs_label(value, false) => {
                Some("GCP label values must be at most 63 lowercase letters, digits, '_' or '-'".to_owned())
            }
            _ => None,
        };
        if let Some(message) = problem {
            errors.push(FieldError::new(field, message));
        }
    }
    errors
}

/// AWS's documented tag pattern, `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`, for every service CloudKit uses.
fn aws_tag_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

fn is_identifier(key: &str) -> bool {
    key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn gcs_label(text: &str, is_key: bool) -> bool {
    let chars_ok = text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    let start_ok = !is_key || text.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    text.len() <= 63 && chars_ok && start_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BucketSpec {
        serde_json::from_value(serde_json::json!({})).expect("empty spec")
    }

    #[test]
    fn s3_names() {
        for ok in ["abc", "my-bucket.logs", "a1-2-3", &"a".repeat(63)] {
            assert_eq!(s3_bucket_name(ok), None, "{ok}");
        }
        for bad in [
            "ab",
            "My_Bucket",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            &"a".repeat(64),
        ] {
            assert!(s3_bucket_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn azure_and_gcs_names() {
        assert_eq!(azure_container_name("logs-2024"), None);
        assert!(azure_container_name("logs--2024").is_some());
        assert!(azure_container_name("logs.2024").is_some());
        assert_eq!(gcs_bucket_name("my_bucket.example"), None);
        assert!(gcs_bucket_name("google-stuff").is_some());
        assert!(gcs_bucket_name("goog-x").is_some());
    }

    #[test]
    fn azure_queue_and_table_names() {
        assert_eq!(azure_queue_name("jobs-1"), None);
        assert!(azure_queue_name("Jobs").is_some());
        assert_eq!(azure_table_name("Orders2024"), None);
        for bad in ["2orders", "or", "my-table", "Tables", &"t".repeat(64)] {
            assert!(azure_table_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn azure_metadata_keys_are_lowercase_identifiers() {
        let mut s = spec();
        s.tags.insert("team/app".into(), "x".into());
        s.tags.insert("Team".into(), "a".into());
        s.tags.insert("team".into(), "b".into());
        s.tags.insert("_ok1".into(), "c".into());
        s.tags.insert("note".into(), "caf\u{e9}".into());
        s.tags.insert("cloudkit_owner".into(), "forged".into());
        let fields: Vec<String> = bucket("good-name", "metadata.name", &s, Cloud::Azure)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.tags.Team",
                "spec.tags.cloudkit_owner",
                "spec.tags.note",
                "spec.tags.team/app"
            ]
        );
    }

    #[test]
    fn azure_public_access_needs_unblocking() {
        let s: BucketSpec =
            serde_json::from_value(serde_json::json!({"azure": {"publicAccess": "Container"}})).expect("spec");
        let errors = bucket("good-name", "metadata.name", &s, Cloud::Azure);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.azure.publicAccess");
    }

    #[test]
    fn azure_provider_config_needs_an_account_and_per_service_endpoints() {
        let spec: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "provider": "azure", "endpoint": "http://127.0.0.1:10000",
            "azure": {"endpoints": {"queue": "127.0.0.1:10001"}}
        }))
        .expect("parses");
        let fields: Vec<String> = provider_config(&spec)
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.azure.storageAccount",
                "spec.endpoint",
                "spec.azure.endpoints.queue"
            ]
        );
        let ok: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "provider": "azure", "azure": {"storageAccount": "devstoreaccount1"}
        }))
        .expect("parses");
        assert_eq!(provider_config(&ok), Ok(()));
    }

    #[test]
    fn bucket_error_says_where_the_name_came_from_and_how_to_fix_it() {
        let errors = bucket("Invalid_Name", "metadata.name", &spec(), Cloud::Aws);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.name");
        assert!(
            errors[0].message.contains("set spec.externalName"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn tags_follow_each_clouds_rules() {
        let mut s = spec();
        s.tags.insert("aws:reserved".into(), "x".into());
        s.tags.insert("Team".into(), "Data".into());
        let aws = bucket("good-name", "metadata.name", &s, Cloud::Aws);
        assert_eq!(aws.len(), 1, "{aws:?}");
        assert_eq!(aws[0].field, "spec.tags.aws:reserved");
        let mut odd = spec();
        odd.tags.insert("team*x".into(), "a#b".into());
        odd.tags.insert("Owner Name".into(), "ops@example.com +1 / é".into());
        let odd = tags(&odd.tags, Cloud::Aws);
        assert_eq!(odd.len(), 1, "{odd:?}");
        assert_eq!(odd[0].field, "spec.tags.team*x");
        let gcp = bucket("good-name", "metadata.name", &s, Cloud::Gcp);
        assert_eq!(gcp.len(), 2, "{gcp:?}");
    }

    #[test]
    fn cloud_block_for_another_cloud_is_an_error() {
        let errors = cloud_blocks(&[Cloud::Aws, Cloud::Azure], Cloud::Aws, "default");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.azure");
        assert!(errors[0].message.contains("ProviderConfig 'default' is for aws"));
    }

    #[test]
    fn provider_config_checks() {
        let spec: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "provider": "aws",
            "credentials": {"source": "Secret"},
            "endpoint": "localhost:4566",
            "resyncInterval": "10",
            "rateLimit": {"requestsPerSecond": 0, "burst": 0},
            "gcp": {}
        }))
        .expect("parses");
        let errors = provider_config(&spec).expect_err("invalid").0;
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.gcp",
                "spec.credentials.secretRef",
                "spec.endpoint",
                "spec.resyncInterval",
                "spec.rateLimit.requestsPerSecond",
                "spec.rateLimit.burst"
            ]
        );
    }

    #[test]
    fn gcp_provider_config_needs_a_project_and_per_service_endpoints() {
        let spec: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "provider": "gcp", "endpoint": "http://127.0.0.1:4443", "region": "us-east-1",
            "credentials": {"source": "Anonymous"},
            "gcp": {"endpoints": {"pubsub": "127.0.0.1:8085"}}
        }))
        .expect("parses");
        let fields: Vec<String> = provider_config(&spec)
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.gcp.project",
                "spec.endpoint",
                "spec.region",
                "spec.gcp.endpoints.pubsub"
            ]
        );
        let anonymous_to_google: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "provider": "gcp", "credentials": {"source": "Anonymous"}, "gcp": {"project": "my-project"}
        }))
        .expect("parses");
        let errors = provider_config(&anonymous_to_google)
            .expect_err("anonymous needs an emulator")
            .0;
        assert_eq!(errors[0].field, "spec.credentials.source");
        let ok: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "provider": "gcp", "credentials": {"source": "Anonymous"},
            "gcp": {"project": "cloudkit-dev", "location": "EU", "endpoints": {"storage": "http://127.0.0.1:4443"}}
        }))
        .expect("parses");
        assert_eq!(provider_config(&ok), Ok(()));
        let aws_anonymous: ProviderConfigSpec =
            serde_json::from_value(serde_json::json!({"provider": "aws", "credentials": {"source": "Anonymous"}}))
                .expect("parses");
        assert!(provider_config(&aws_anonymous).is_err());
    }

    #[test]
    fn gcs_labels_and_keys() {
        let mut s = spec();
        s.tags.insert("cloudkit-owner".into(), "x".into());
        s.tags.insert("team".into(), "data-1".into());
        s.encryption.key_id = Some("alias/my-key".into());
        let fields: Vec<String> = bucket("good-name", "metadata.name", &s, Cloud::Gcp)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["spec.tags.cloudkit-owner", "spec.encryption.keyId"]);
        s.tags.remove("cloudkit-owner");
        s.encryption.key_id = Some("projects/p/locations/eu/keyRings/r/cryptoKeys/k".into());
        assert!(bucket("good-name", "metadata.name", &s, Cloud::Gcp).is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(
            parse_duration("5124095576030432h").is_err(),
            "overflow must not panic later"
        );
    }
}
