//! AWS: SDK configuration from a ProviderContext, and error classification.

pub mod bucket;
pub mod function;
pub mod queue;
pub mod table;
pub mod topic;

use cloudkit_crds::reason::Reason;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ErrorMetadata, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::Builder as HttpClientBuilder;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_types::config_bag::ConfigBag;

use cloudkit_crds::common::Tags;
use cloudkit_drift::FieldDiff;

use crate::rate_budget::{Budget, RateBudgets};
use crate::{CallObserver, CloudError, ProviderContext, ResolvedCredentials};

/// An endpoint that accepts a connection and never answers must not hold a worker: each
/// attempt, and each call with its retries, has a bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests one ProviderConfig may have waiting on the cloud at once; the rest wait for a
/// place before they connect. Every worker of every kind may call at the same moment (five
/// kinds × `--concurrency` 128), and each request in flight holds a connection and its
/// buffers: 763 connections to one endpoint at 1,000 objects of five kinds, for no more
/// answers a second than 64 give. 64 in flight at real AWS latencies (20–100 ms) is
/// 640–3,200 requests a second, above what an account's API quotas allow.
const IN_FLIGHT_PER_CONFIG: usize = 64;

/// Error codes that arrive as 400s but name a passing condition (throttling, timeouts).
const RETRYABLE_CODES: &[&str] = &[
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "RequestLimitExceeded",
    "OperationAborted",
];

/// One HTTP client, and one SDK configuration and set of service clients per
/// ProviderConfig, reused by every reconcile. A service client built per reconcile cost
/// more CPU than the reconcile's own calls: each `from_conf` builds and validates a TLS
/// connector, parsing every root certificate (docs/bench/scale.md, "CPU per resync").
pub struct Clients {
    http: SharedHttpClient,
    configs: Mutex<HashMap<String, PerConfig>>,
    calls: CountCalls,
    budgets: std::sync::Arc<RateBudgets>,
    pub(crate) sns_memory: std::sync::Arc<topic::SnsMemory>,
}

/// The shared HTTP client, drawing on one ProviderConfig's request budget: every attempt the
/// SDK sends (retries included, whichever service) spends a token, and a throttling answer
/// slows the budget down.
#[derive(Debug)]
struct Budgeted {
    http: SharedHttpClient,
    budget: std::sync::Arc<Budget>,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl HttpClient for Budgeted {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(BudgetedConnector {
            inner: self.http.http_connector(settings, components),
            budget: self.budget.clone(),
            in_flight: self.in_flight.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.http.validate_base_client_config(runtime_components, cfg)
    }
}

/// What is kept for one ProviderConfig, as of the settings in `seen`: a change replaces it.
struct PerConfig {
    seen: ProviderContext,
    sdk: SdkConfig,
    s3: Option<aws_sdk_s3::Client>,
    sqs: Option<aws_sdk_sqs::Client>,
    sns: Option<aws_sdk_sns::Client>,
    lambda: Option<aws_sdk_lambda::Client>,
    dynamodb: Option<aws_sdk_dynamodb::Client>,
}

#[derive(Debug)]
struct BudgetedConnector {
    inner: SharedHttpConnector,
    budget: std::sync::Arc<Budget>,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl HttpConnector for BudgetedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.budget.spend();
        let (inner, budget, in_flight) = (self.inner.clone(), self.budget.clone(), self.in_flight.clone());
        HttpConnectorFuture::new(async move {
            // The wait counts against the attempt's timeout, like a slow connect. Held until
            // the answer's headers are in: the body is read at once after.
            let _place = in_flight
                .acquire_owned()
                .await
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let mut response = inner.call(request).await?;
            let status = response.status().as_u16();
            let headers = response.headers();
            // JSON protocols name the error in a header; S3 throttles with 503 SlowDown.
            let code = headers
                .get("x-amzn-ErrorType")
                .or_else(|| headers.get("x-amzn-query-error"))
                .unwrap_or_default()
                .to_owned();
            let throttled =
                throttling(status, &code) || (code.is_empty() && status == 400 && xml_throttling(&mut response).await);
            if throttled {
                budget.throttled();
            }
            Ok(response)
        })
    }
}

/// The largest error body read for its code: AWS error documents are a few hundred bytes.
const ERROR_BODY_LIMIT: u64 = 16 * 1024;

/// Whether a 400 without an error header names throttling in its XML body, as SNS and the
/// other Query services do (`<Code>Throttling</Code>`). The body is read into memory and put
/// back for the SDK to parse.
async fn xml_throttling(response: &mut HttpResponse) -> bool {
    let body = response.take_body();
    if body.content_length().is_none_or(|n| n > ERROR_BODY_LIMIT) {
        *response.body_mut() = body;
        return false;
    }
    let bytes = match aws_smithy_types::byte_stream::ByteStream::new(body).collect().await {
        Ok(aggregated) => aggregated.into_bytes(),
        // The SDK reports a broken body; an empty one makes it say so.
        Err(_) => Default::default(),
    };
    let code = xml_error_code(&bytes).unwrap_or_default().to_owned();
    *response.body_mut() = aws_smithy_types::body::SdkBody::from(bytes);
    throttling(400, &code)
}

/// The first `<Code>` of an AWS XML error document.
fn xml_error_code(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].trim())
}

/// Whether an answer says "slow down": 429, 503 (S3's SlowDown), or a throttling error code.
fn throttling(status: u16, code: &str) -> bool {
    status == 429
        || status == 503
        || ["Throttl", "SlowDown", "TooManyRequests", "RequestLimitExceeded"]
            .iter()
            .any(|c| code.contains(c))
}

/// Reports each request attempt, by the service and operation the SDK names it.
#[derive(Clone)]
pub(crate) struct CountCalls(CallObserver);

impl fmt::Debug for CountCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountCalls")
    }
}

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            (self.0)(meta.service(), meta.name());
        }
        Ok(())
    }
}

impl Clients {
    pub fn new(observer: CallObserver, budgets: std::sync::Arc<RateBudgets>) -> Self {
        // ring, like kube's rustls: two crypto providers in one process make rustls panic.
        let http = HttpClientBuilder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        Self {
            http,
            configs: Mutex::new(HashMap::new()),
            calls: CountCalls(observer),
            budgets,
            sns_memory: Default::default(),
        }
    }

    /// The interceptor every service client carries, so each call is counted.
    pub(crate) fn counter(&self) -> CountCalls {
        self.calls.clone()
    }

    /// The S3 client for a ProviderContext (path-style addressing on a custom endpoint, and
    /// its checksum mode).
    pub(crate) async fn s3(&self, ctx: &ProviderContext) -> aws_sdk_s3::Client {
        self.client(
            ctx,
            |c| &mut c.s3,
            |sdk| {
                let mut config = aws_sdk_s3::config::Builder::from(sdk).interceptor(self.counter());
                if ctx.endpoint.is_some() {
                    // Emulators and S3-compatible stores are addressed by path: virtual-host
                    // names such as `bucket.127.0.0.1` do not resolve.
                    config = config.force_path_style(true);
                }
                if ctx.aws.request_checksum_calculation == cloudkit_crds::provider_config::ChecksumMode::WhenRequired {
                    config = config
                        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
                        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
                }
                aws_sdk_s3::Client::from_conf(config.build())
            },
        )
        .await
    }

    /// A service client kept in `slot` of the ProviderConfig's entry, built on first use.
    async fn client<C: Clone>(
        &self,
        ctx: &ProviderContext,
        slot: fn(&mut PerConfig) -> &mut Option<C>,
        build: impl FnOnce(&SdkConfig) -> C,
    ) -> C {
        let sdk = self.sdk_config(ctx).await;
        let mut configs = self.lock();
        match configs.get_mut(&ctx.key) {
            Some(entry) if entry.seen == *ctx => slot(entry).get_or_insert_with(|| build(&sdk)).clone(),
            // Replaced by other settings in the meantime: this reconcile's own, not kept.
            _ => build(&sdk),
        }
    }

    /// The SDK configuration for a ProviderContext, built once per version of its settings.
    pub async fn sdk_config(&self, ctx: &ProviderContext) -> SdkConfig {
        if let Some(entry) = self.lock().get(&ctx.key)
            && entry.seen == *ctx
        {
            return entry.sdk.clone();
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(ctx.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .http_client(SharedHttpClient::new(Budgeted {
                http: self.http.clone(),
                budget: self.budgets.budget(&ctx.key, ctx.rate_limit),
                in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_CONFIG)),
            }));
        if let Some(endpoint) = &ctx.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let ResolvedCredentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } = &ctx.credentials
        {
            let creds = Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "cloudkit-secret",
            );
            loader = loader.credentials_provider(creds);
        }
        let config = loader.load().await;
        self.lock().insert(
            ctx.key.clone(),
            PerConfig {
                seen: ctx.clone(),
                sdk: config.clone(),
                s3: None,
                sqs: None,
                sns: None,
                lambda: None,
                dynamodb: None,
            },
        );
        config
    }

    /// Drops a deleted ProviderConfig's SDK configuration and clients.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PerConfig>> {
        // A panic while holding the lock leaves only a cache behind; keep using it.
        self.configs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The getters of the service clients that need nothing but the SDK configuration and the
/// call counter.
macro_rules! plain_clients {
    ($($name:ident: $sdk:ident),+ $(,)?) => {
        impl Clients {
            $(
                pub(crate) async fn $name(&self, ctx: &ProviderContext) -> $sdk::Client {
                    self.client(ctx, |c| &mut c.$name, |sdk| {
                        $sdk::Client::from_conf($sdk::config::Builder::from(sdk).interceptor(self.counter()).build())
                    })
                    .await
                }
            )+
        }
    };
}

plain_clients!(sqs: aws_sdk_sqs, sns: aws_sdk_sns, lambda: aws_sdk_lambda, dynamodb: aws_sdk_dynamodb);

/// Splits the `tags.<key>` diffs into tags to set (with their wanted values) and keys to
/// remove, for services that tag and untag key by key.
pub(crate) fn tag_changes(desired: &Tags, diffs: &[FieldDiff]) -> (Tags, Vec<String>) {
    let mut set = Tags::new();
    let mut removed = Vec::new();
    for key in diffs.iter().filter_map(|d| d.path.strip_prefix("tags.")) {
        match desired.get(key) {
            Some(value) => {
                set.insert(key.to_owned(), value.clone());
            }
            None => removed.push(key.to_owned()),
        }
    }
    (set, removed)
}

/// The AWS error code of a service error, if the call got that far.
pub(crate) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

/// Sorts an SDK error into retry-later or needs-a-human, with the operation in the message.
pub(crate) fn classify<E>(operation: &str, name: &str, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            let message = match service.err().code() {
                Some(code) => {
                    let detail = service.err().message().map(|m| format!(": {m}")).unwrap_or_default();
                    format!("{operation} {name}: {code} (HTTP {status}){detail}")
                }
                // No AWS error code (HEAD responses have no body, or the body could not be read).
                None => format!("{operation} {name}: HTTP {status}: {}", causes(service.err())),
            };
            // 404 here means the resource vanished between calls (deleted out of band, or
            // not yet visible after create): the next observe sorts it out.
            let passing = status >= 500 || status == 429 || status == 404 || RETRYABLE_CODES.contains(&code);
            if passing {
                CloudError::transient(message)
            } else if status == 403 {
                // Permissions can be granted outside Kubernetes at any time, so keep trying.
                CloudError::Transient {
                    reason: Reason::AccessDenied,
                    message: format!("{message}; check the ProviderConfig's credentials and their permissions"),
                    retry_after: None,
                }
            } else {
                CloudError::Rejected {
                    reason: Reason::CloudRejected,
                    message,
                }
            }
        }
        SdkError::ConstructionFailure(_) => CloudError::Rejected {
            reason: Reason::InvalidRequest,
            message: format!("{operation} {name}: {}", causes(&err)),
        },
        _ => CloudError::transient(format!("{operation} {name}: {}", causes(&err))),
    }
}

/// An error and its sources, by their Display only: Debug output carries request IDs and
/// dates, which would make every retry look like a new error (a new event, a new status).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        // Error metadata prints the request ID; its message is already in the text above.
        let text = match e.downcast_ref::<ErrorMetadata>() {
            Some(meta) => meta.message().unwrap_or_default().to_owned(),
            None => e.to_string(),
        };
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service_error(status: u16, code: Option<&str>) -> SdkError<GetBucketTaggingError, HttpResponse> {
        service_error_with_request_id(status, code, "REQ1")
    }

    fn service_error_with_request_id(
        status: u16,
        code: Option<&str>,
        request_id: &str,
    ) -> SdkError<GetBucketTaggingError, HttpResponse> {
        let mut meta = ErrorMetadata::builder()
            .message("details")
            .custom("aws_request_id", request_id);
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let status = StatusCode::try_from(status).expect("valid status");
        let mut response = HttpResponse::new(status, SdkBody::empty());
        response.headers_mut().insert("x-amz-request-id", request_id.to_owned());
        SdkError::service_error(GetBucketTaggingError::generic(meta.build()), response)
    }

    /// Retries of the same failure must read the same, or each would write status and an event.
    #[test]
    fn messages_do_not_change_between_retries() {
        for code in [None, Some("AccessDenied")] {
            let a = classify("HeadBucket", "b", service_error_with_request_id(403, code, "REQ1")).to_string();
            let b = classify("HeadBucket", "b", service_error_with_request_id(403, code, "REQ2")).to_string();
            assert_eq!(a, b);
            assert!(!a.contains("REQ1"), "{a}");
        }
    }

    #[tokio::test]
    async fn a_400_naming_throttling_in_its_xml_slows_the_budget_and_keeps_its_body() {
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        let answer = |code: &str| {
            let body = format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>m</Message></Error></ErrorResponse>"
            );
            let status = StatusCode::try_from(400).expect("a status");
            (HttpResponse::new(status, SdkBody::from(body.clone())), body)
        };
        let (mut throttled, body) = answer("Throttling");
        assert!(xml_throttling(&mut throttled).await);
        assert_eq!(throttled.body().bytes(), Some(body.as_bytes()), "put back for the SDK");
        let (mut invalid, body) = answer("InvalidParameter");
        assert!(!xml_throttling(&mut invalid).await);
        assert_eq!(invalid.body().bytes(), Some(body.as_bytes()));
        assert_eq!(
            xml_error_code(b"<Error><Code> SlowDown </Code></Error>"),
            Some("SlowDown")
        );
        assert_eq!(xml_error_code(b"not xml"), None);
    }

    #[test]
    fn server_errors_and_throttling_are_retried() {
        for (status, code) in [
            (500, "InternalError"),
            (503, "SlowDown"),
            (400, "RequestLimitExceeded"),
            (400, "RequestTimeout"),
            (429, "Any"),
            (404, "NoSuchBucket"),
        ] {
            let err = classify("GetBucketTagging", "b", service_error(status, Some(code)));
            assert!(err.is_retryable(), "{status} {code}: {err}");
            assert_eq!(err.reason(), Reason::ProviderError);
        }
    }

    #[test]
    fn access_denied_is_retried_with_a_hint() {
        let err = classify("GetBucketTagging", "b", service_error(403, Some("AccessDenied")));
        assert!(err.is_retryable());
        assert_eq!(err.reason(), Reason::AccessDenied);
        assert!(
            err.to_string().contains("check the ProviderConfig's credentials"),
            "{err}"
        );
    }

    #[test]
    fn other_client_errors_need_a_human() {
        let err = classify("GetBucketTagging", "b", service_error(400, Some("InvalidArgument")));
        assert!(!err.is_retryable());
        assert_eq!(err.reason(), Reason::CloudRejected);
        assert_eq!(
            err.to_string(),
            "GetBucketTagging b: InvalidArgument (HTTP 400): details"
        );
    }

    #[test]
    fn unreadable_responses_say_why() {
        let err = classify("GetBucketTagging", "b", service_error(200, None));
        assert!(err.to_string().starts_with("GetBucketTagging b: HTTP 200: "), "{err}");
    }

    #[test]
    fn network_failures_are_retried() {
        let err: SdkError<GetBucketTaggingError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        let err = classify("GetBucketTagging", "b", err);
        assert!(err.is_retryable());
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
