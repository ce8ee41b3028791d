//! Lambda functions: configuration, code, tags, SQS event source mappings and SNS
//! subscriptions.
//!
//! Code identity: a zip from the manifest is compared by SHA-256 with Lambda's `CodeSha256`.
//! An archive in S3 cannot be hashed without downloading it, so when CloudKit deploys one it
//! records on the function (tags `cloudkit.dev/code-source` and `cloudkit.dev/code-revision`)
//! the location, the object's ETag and the resulting `CodeSha256`; the code counts as current
//! while the object keeps that ETag and the function keeps that `CodeSha256`.

use cloudkit_crds::reason::Reason;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, LastUpdateStatus, PackageType, Runtime, State};
use cloudkit_drift::{FieldDiff, touches};

use super::{Clients, classify, error_code};
use crate::function::{CodeUpload, FunctionState, PACKAGE_IMAGE};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

const SOURCE_TAG: &str = "cloudkit.dev/code-source";
const REVISION_TAG: &str = "cloudkit.dev/code-revision";
/// How long one update waits for Lambda to finish a change before making the next one.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LambdaFunction {
    client: Client,
    s3: aws_sdk_s3::Client,
}

type SdkError<E> = aws_sdk_lambda::error::SdkError<E, aws_sdk_lambda::config::http::HttpResponse>;

impl LambdaFunction {
    pub async fn new(clients: &Clients, ctx: &ProviderContext) -> Self {
        Self {
            client: clients.lambda(ctx).await,
            s3: clients.s3(ctx).await,
        }
    }

    /// The function's ARN, or `None` when it does not exist.
    async fn find_arn(&self, name: &str) -> Result<Option<String>, CloudError> {
        match self
            .client
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.function_arn().map(str::to_owned)),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(lambda_error("GetFunctionConfiguration", name, e)),
        }
    }

    async fn function_arn(&self, name: &str) -> Result<String, CloudError> {
        self.find_arn(name)
            .await?
            .ok_or_else(|| CloudError::transient(format!("function '{name}' is not there (yet): looking again")))
    }

    /// Waits while Lambda applies the previous change: a second change meanwhile is refused.
    async fn settle(&self, name: &str, status: Option<&LastUpdateStatus>) -> Result<(), CloudError> {
        if status != Some(&LastUpdateStatus::InProgress) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        while started.elapsed() < SETTLE_TIMEOUT {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let out = self
                .client
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .map_err(|e| lambda_error("GetFunctionConfiguration", name, e))?;
            if out.last_update_status() != Some(&LastUpdateStatus::InProgress) {
                return Ok(());
            }
        }
        Err(CloudError::transient(format!(
            "'{name}' is still applying the previous change: trying again"
        )))
    }

    /// The ETag of an object, or `None` when it is gone.
    async fn etag(&self, bucket: &str, key: &str) -> Result<Option<String>, CloudError> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().trim_matches('"').to_owned())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(classify("HeadObject", &format!("s3://{bucket}/{key}"), e)),
        }
    }

    /// The observed `code`: see the module documentation.
    async fn code_identity(&self, sha: &str, tags: &HashMap<String, String>) -> Result<String, CloudError> {
        let digest = format!("sha256:{sha}");
        let (Some(source), Some(revision)) = (tags.get(SOURCE_TAG), tags.get(REVISION_TAG)) else {
            return Ok(digest);
        };
        let Some((etag, deployed_sha)) = revision.split_once(' ') else {
            return Ok(digest);
        };
        // Deployed from elsewhere since CloudKit recorded the object.
        if deployed_sha != sha {
            return Ok(digest);
        }
        let Some((bucket, key)) = source.strip_prefix("s3://").and_then(|s| s.split_once('/')) else {
            return Ok(digest);
        };
        match self.etag(bucket, key).await? {
            Some(now) if now != etag => Ok(format!("{source} (changed since deployed)")),
            // A deleted object cannot be deployed again; the code that runs is still its last version.
            _ => Ok(source.clone()),
        }
    }

    /// SQS event source mappings of the function: queue ARN to (UUID, batch size).
    async fn queue_mappings(&self, name: &str) -> Result<BTreeMap<String, (String, i32)>, CloudError> {
        let mappings: Vec<_> = self
            .client
            .list_event_source_mappings()
            .function_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| lambda_error("ListEventSourceMappings", name, e))?;
        Ok(mappings
            .iter()
            .filter(|m| m.state() != Some("Deleting"))
            .filter_map(|m| {
                let arn = m.event_source_arn()?;
                let service = arn.split(':').nth(2)?;
                (service == "sqs").then(|| {
                    (
                        arn.to_owned(),
                        (
                            m.uuid().unwrap_or_default().to_owned(),
                            m.batch_size().unwrap_or_default(),
                        ),
                    )
                })
            })
            .collect())
    }

    /// Deploys the desired code (and architecture), then records where an object came from.
    async fn deploy_code(&self, name: &str, desired: &FunctionState) -> Result<(), CloudError> {
        let upload = desired
            .upload
            .as_ref()
            .ok_or_else(|| CloudError::transient("no code to deploy in the desired state"))?;
        let mut request = self
            .client
            .update_function_code()
            .function_name(name)
            .architectures(Architecture::from(desired.architecture.as_str()));
        let mut object = None;
        match upload {
            CodeUpload::Zip(bytes) => request = request.zip_file(Blob::new(bytes.as_slice())),
            CodeUpload::Image(uri) => request = request.image_uri(uri),
            CodeUpload::Object { bucket, key } => {
                // Read before deploying: if the object changes in between, the recorded ETag
                // is the older one and the next observe deploys again.
                object = Some((bucket, key, self.missing_object(bucket, key).await?));
                request = request.s3_bucket(bucket).s3_key(key);
            }
        }
        let out = request
            .send()
            .await
            .map_err(|e| lambda_error("UpdateFunctionCode", name, e))?;
        let arn = out.function_arn().unwrap_or_default().to_owned();
        match object {
            Some((bucket, key, etag)) => {
                self.record_object(name, &arn, bucket, key, &etag, out.code_sha256().unwrap_or_default())
                    .await
            }
            None => {
                let out = self
                    .client
                    .untag_resource()
                    .resource(&arn)
                    .tag_keys(SOURCE_TAG)
                    .tag_keys(REVISION_TAG)
                    .send()
                    .await;
                out.map_err(|e| lambda_error("UntagResource", name, e)).map(|_| ())
            }
        }
    }

    /// The object's ETag, or a message a human can act on when it is not there.
    async fn missing_object(&self, bucket: &str, key: &str) -> Result<String, CloudError> {
        self.etag(bucket, key).await?.ok_or_else(|| {
            CloudError::transient(format!(
                "s3://{bucket}/{key} does not exist: upload the archive, or fix spec.code.object"
            ))
        })
    }

    async fn record_object(
        &self,
        name: &str,
        arn: &str,
        bucket: &str,
        key: &str,
        etag: &str,
        sha: &str,
    ) -> Result<(), CloudError> {
        let out = self
            .client
            .tag_resource()
            .resource(arn)
            .tags(SOURCE_TAG, format!("s3://{bucket}/{key}"))
            .tags(REVISION_TAG, format!("{etag} {sha}"))
            .send()
            .await;
        out.map_err(|e| lambda_error("TagResource", name, e)).map(|_| ())
    }

    async fn update_configuration(
        &self,
        name: &str,
        desired: &FunctionState,
        diffs: &[FieldDiff],
    ) -> Result<Option<LastUpdateStatus>, CloudError> {
        let mut request = self.client.update_function_configuration().function_name(name);
        let mut any = false;
        if touches(diffs, "memoryMb") {
            request = request.memory_size(desired.memory_mb);
            any = true;
        }
        if touches(diffs, "timeoutSeconds") {
            request = request.timeout(desired.timeout_seconds);
            any = true;
        }
        if touches(diffs, "env") {
            // An empty map, not an absent one, removes every variable.
            let variables: HashMap<String, String> = desired.env.clone().into_iter().collect();
            request = request.environment(Environment::builder().set_variables(Some(variables)).build());
            any = true;
        }
        if touches(diffs, "roleArn")
            && let Some(role) = &desired.role_arn
        {
            request = request.role(role);
            any = true;
        }
        if touches(diffs, "handler")
            && let Some(handler) = &desired.handler
        {
            request = request.handler(handler);
            any = true;
        }
        if touches(diffs, "runtime")
            && let Some(runtime) = &desired.runtime
        {
            request = request.runtime(Runtime::from(runtime.as_str()));
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let out = request
            .send()
            .await
            .map_err(|e| lambda_error("UpdateFunctionConfiguration", name, e))?;
        Ok(out.last_update_status().cloned())
    }

    async fn converge_tags(
        &self,
        name: &str,
        arn: &str,
        desired: &FunctionState,
        diffs: &[FieldDiff],
    ) -> Result<(), CloudError> {
        let (set, removed) = super::tag_changes(&desired.tags, diffs);
        if !removed.is_empty() {
            let out = self
                .client
                .untag_resource()
                .resource(arn)
                .set_tag_keys(Some(removed))
                .send()
                .await;
            out.map_err(|e| lambda_error("UntagResource", name, e))?;
        }
        if !set.is_empty() {
            let out = self
                .client
                .tag_resource()
                .resource(arn)
                .set_tags(Some(set.into_iter().collect()))
                .send()
                .await;
            out.map_err(|e| lambda_error("TagResource", name, e))?;
        }
        Ok(())
    }

    async fn converge_queue_triggers(
        &self,
        name: &str,
        desired: &FunctionState,
        diffs: &[FieldDiff],
    ) -> Result<(), CloudError> {
        let existing = self.queue_mappings(name).await?;
        let queues: BTreeSet<&str> = diffs
            .iter()
            .filter_map(|d| d.path.strip_prefix("queueTriggers."))
            .collect();
        for queue in queues {
            match (desired.queue_triggers.get(queue), existing.get(queue)) {
                (Some(batch), Some((uuid, _))) => {
                    let out = self
                        .client
                        .update_event_source_mapping()
                        .uuid(uuid)
                        .batch_size(*batch)
                        .set_maximum_batching_window_in_seconds(batching_window(*batch))
                        .send()
                        .await;
                    out.map_err(|e| lambda_error("UpdateEventSourceMapping", name, e))?;
                }
                (Some(batch), None) => {
                    let out = self
                        .client
                        .create_event_source_mapping()
                        .function_name(name)
                        .event_source_arn(queue)
                        .batch_size(*batch)
                        .set_maximum_batching_window_in_seconds(batching_window(*batch))
                        .send()
                        .await;
                    out.map_err(|e| lambda_error("CreateEventSourceMapping", name, e))?;
                }
                (None, Some((uuid, _))) => self.delete_mapping(name, uuid).await?,
                (None, None) => {}
            }
        }
        Ok(())
    }

    async fn delete_mapping(&self, name: &str, uuid: &str) -> Result<(), CloudError> {
        match self.client.delete_event_source_mapping().uuid(uuid).send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(lambda_error("DeleteEventSourceMapping", name, e)),
        }
    }
}

/// Lambda requires a batching window of at least one second for SQS batches over 10.
fn batching_window(batch: i32) -> Option<i32> {
    (batch > 10).then_some(1)
}

/// Lambda answers 409 while a function is busy with a change, and 400 for a role IAM has
/// not yet propagated: both pass.
fn lambda_error<E>(operation: &str, name: &str, err: SdkError<E>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = err
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or_default()
        .to_owned();
    if error_code(&err) == Some("ResourceConflictException") {
        return CloudError::Transient {
            reason: Reason::ProviderError,
            message: format!("{operation} {name}: the function is busy with another change ({message}); trying again"),
            retry_after: Some(Duration::from_secs(3)),
        };
    }
    if message.contains("cannot be assumed by Lambda") {
        return CloudError::transient(format!(
            "{operation} {name}: {message} (a new role takes a few seconds to propagate; check its trust policy \
             allows lambda.amazonaws.com)"
        ));
    }
    classify(operation, name, err)
}

#[async_trait]
impl ExternalResource for LambdaFunction {
    type State = FunctionState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<FunctionState>>, CloudError> {
        let out = match self.client.get_function().function_name(name).send().await {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(lambda_error("GetFunction", name, e)),
        };
        let config = out
            .configuration()
            .ok_or_else(|| CloudError::transient(format!("GetFunction {name}: no configuration")))?;
        let all_tags = out.tags().cloned().unwrap_or_default();
        let arn = config.function_arn().unwrap_or_default().to_owned();
        let package_type = config.package_type().map_or("Zip", PackageType::as_str).to_owned();
        let code = if package_type == PACKAGE_IMAGE {
            out.code().and_then(|c| c.image_uri()).unwrap_or_default().to_owned()
        } else {
            self.code_identity(config.code_sha256().unwrap_or_default(), &all_tags)
                .await?
        };
        let queue_triggers = self
            .queue_mappings(name)
            .await?
            .into_iter()
            .map(|(queue, (_, batch))| (queue, batch))
            .collect();
        let state = FunctionState {
            package_type,
            runtime: config.runtime().map(|r| r.as_str().to_owned()),
            handler: config.handler().map(str::to_owned),
            memory_mb: config.memory_size().unwrap_or_default(),
            timeout_seconds: config.timeout().unwrap_or_default(),
            env: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            code,
            role_arn: config.role().map(str::to_owned),
            architecture: config
                .architectures()
                .first()
                .map_or(crate::function::DEFAULT_ARCHITECTURE, Architecture::as_str)
                .to_owned(),
            queue_triggers,
            tags: all_tags
                .into_iter()
                // The code's record is this backend's own; the owner tag is the loop's.
                .filter(|(k, _)| k != SOURCE_TAG && k != REVISION_TAG)
                .collect(),
            upload: None,
        };
        let state_name = config.state().map_or("Active", State::as_str);
        let update = config
            .last_update_status()
            .map_or("Successful", LastUpdateStatus::as_str);
        let pending = (state_name != "Active" || update != "Successful").then(|| {
            let reason = config
                .last_update_status_reason()
                .or(config.state_reason())
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("State is {state_name}, LastUpdateStatus is {update}{reason}")
        });
        let outputs = Outputs {
            arn: Some(arn),
            url: None,
            id: Some(name.to_owned()),
            ..Default::default()
        };
        Ok(Some(Observed {
            state,
            outputs,
            pending,
        }))
    }

    /// Lambda keeps a new function Pending for a while and refuses changes meanwhile, so
    /// CreateFunction carries every setting it accepts rather than leaving them to `update`;
    /// the observe and diff that follow check them like any other. Triggers follow in `update`.
    async fn create(&self, name: &str, desired: &FunctionState) -> Result<(), CloudError> {
        let mut code = FunctionCode::builder();
        let mut object = None;
        match &desired.upload {
            Some(CodeUpload::Zip(bytes)) => code = code.zip_file(Blob::new(bytes.as_slice())),
            Some(CodeUpload::Image(uri)) => code = code.image_uri(uri),
            Some(CodeUpload::Object { bucket, key }) => {
                object = Some((bucket, key, self.missing_object(bucket, key).await?));
                code = code.s3_bucket(bucket).s3_key(key);
            }
            None => return Err(CloudError::transient("no code to deploy in the desired state")),
        }
        let variables: HashMap<String, String> = desired.env.clone().into_iter().collect();
        let request = self
            .client
            .create_function()
            .function_name(name)
            .package_type(PackageType::from(desired.package_type.as_str()))
            .code(code.build())
            .set_role(desired.role_arn.clone())
            .set_runtime(desired.runtime.as_deref().map(Runtime::from))
            .set_handler(desired.handler.clone())
            .memory_size(desired.memory_mb)
            .timeout(desired.timeout_seconds)
            .environment(Environment::builder().set_variables(Some(variables)).build())
            .architectures(Architecture::from(desired.architecture.as_str()))
            .set_tags(Some(desired.tags.clone().into_iter().collect()));
        let out = match request.send().await {
            Ok(out) => out,
            // Observed absent a moment ago: someone else's function appeared in between.
            Err(e) if error_code(&e) == Some("ResourceConflictException") => {
                return Err(CloudError::Rejected {
                    reason: Reason::AlreadyExists,
                    message: format!(
                        "a function named '{name}' already exists: choose another name, or set spec.externalName: \
                         {name} to adopt it"
                    ),
                });
            }
            Err(e) => return Err(lambda_error("CreateFunction", name, e)),
        };
        if let Some((bucket, key, etag)) = object {
            let arn = out.function_arn().unwrap_or_default();
            self.record_object(name, arn, bucket, key, &etag, out.code_sha256().unwrap_or_default())
                .await?;
        }
        Ok(())
    }

    async fn update(&self, name: &str, desired: &FunctionState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let status = self.update_configuration(name, desired, diffs).await?;
        if touches(diffs, "code") || touches(diffs, "architecture") {
            self.settle(name, status.as_ref()).await?;
            self.deploy_code(name, desired).await?;
        }
        if touches(diffs, "queueTriggers") {
            self.converge_queue_triggers(name, desired, diffs).await?;
        }
        if touches(diffs, "tags") {
            let arn = self.function_arn(name).await?;
            self.converge_tags(name, &arn, desired, diffs).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        // Triggers first: a mapping left behind points at nothing.
        if self.find_arn(name).await?.is_none() {
            return Ok(());
        }
        for (uuid, _) in self.queue_mappings(name).await?.into_values() {
            self.delete_mapping(name, &uuid).await?;
        }
        match self.client.delete_function().function_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(lambda_error("DeleteFunction", name, e)),
        }
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["packageType"]
    }

    fn settles_async(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_over_ten_need_a_window() {
        assert_eq!(batching_window(10), None);
        assert_eq!(batching_window(11), Some(1));
    }
}
