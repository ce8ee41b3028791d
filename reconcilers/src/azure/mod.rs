//! Azure Storage: one account per ProviderConfig, reached through the official
//! `azure_storage_blob` / `azure_storage_queue` clients (and a thin Table REST client on the
//! same pipeline), with our own request signing and error classification.
//!
//! The official clients accept Entra ID tokens only; a storage account key signs requests in
//! [`Sign`], a per-try pipeline policy (a SAS token is appended there too, and an Entra ID
//! token from [`entra`] set as the bearer).

pub mod bucket;
mod entra;
pub mod queue;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{ClientOptions, Context, Request, RetryOptions, Transport, Url};
use azure_core::time::{OffsetDateTime, to_rfc7231};
use cloudkit_crds::common::Tags;
use cloudkit_crds::reason::Reason;

use crate::error::causes;
use crate::rate_budget::{Budget, RateBudgets};
use crate::{CallObserver, CloudError, ProviderContext, ResolvedCredentials};

/// An endpoint that accepts a connection and never answers must not hold a worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Each request; the SDK's own retries are off (the controller's loop retries with backoff).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Each call, whatever the pipeline does.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The Azure Storage services CloudKit uses, each at its own endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Blob,
    Queue,
    Table,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Blob => "blob",
            Service::Queue => "queue",
            Service::Table => "table",
        }
    }
}

/// A storage account as one ProviderConfig reaches it.
pub struct Account {
    pub name: String,
    blob: Url,
    queue: Url,
    table: Url,
    /// Client options carrying the signing policy and the shared HTTP client, for the blob
    /// and queue services and for the table service (signed in its own form).
    options: ClientOptions,
    table_options: ClientOptions,
    /// The SAS token, to scrub it from error messages (reqwest prints the URL).
    sas: Option<String>,
    subscription_id: Option<String>,
    resource_group: Option<String>,
    observer: CallObserver,
    budget: Arc<Budget>,
}

impl Account {
    /// The service endpoint, without a trailing slash.
    pub fn endpoint(&self, service: Service) -> &Url {
        match service {
            Service::Blob => &self.blob,
            Service::Queue => &self.queue,
            Service::Table => &self.table,
        }
    }

    /// `<endpoint>/<name>`: the address of a container, queue or table.
    pub fn url(&self, service: Service, name: &str) -> Result<Url, CloudError> {
        let endpoint = self.endpoint(service);
        let mut url = endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| CloudError::Rejected {
                reason: Reason::InvalidRequest,
                message: format!("the {} endpoint {endpoint} cannot hold a path", service.as_str()),
            })?
            .pop_if_empty()
            .push(name);
        Ok(url)
    }

    /// The ARM resource ID of a resource in this account, when the ProviderConfig names the
    /// subscription and resource group.
    pub fn resource_id(&self, path: &str) -> Option<String> {
        let (sub, rg) = (self.subscription_id.as_ref()?, self.resource_group.as_ref()?);
        Some(format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{}/{path}",
            self.name
        ))
    }

    pub fn client_options(&self, service: Service) -> ClientOptions {
        match service {
            Service::Table => self.table_options.clone(),
            Service::Blob | Service::Queue => self.options.clone(),
        }
    }

    /// The pipeline for requests CloudKit builds itself (the Table service has no official
    /// client): the same transport, timeouts and signing as the official clients.
    pub(crate) fn pipeline(&self, service: Service) -> azure_core::http::Pipeline {
        azure_core::http::Pipeline::new(
            Some("cloudkit"),
            Some(env!("CARGO_PKG_VERSION")),
            self.client_options(service),
            Vec::new(),
            Vec::new(),
            None,
        )
    }

    /// Runs one cloud call: counted, bounded in time, its error sorted into retry-later or
    /// needs-a-human with the status and Azure error code kept for the caller to inspect.
    pub(crate) async fn call<T>(
        &self,
        service: Service,
        operation: &str,
        name: &str,
        request: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<T, Failed> {
        (self.observer)(service.as_str(), operation);
        // One request a call: the pipeline does not retry (RetryOptions::none).
        self.budget.spend();
        match tokio::time::timeout(OPERATION_TIMEOUT, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let failed = Failed::from_error(self, operation, name, &e);
                // Storage throttles with 503 ServerBusy (and 429 from the management plane).
                if matches!(failed.status, Some(429 | 503)) {
                    self.budget.throttled();
                }
                Err(failed)
            }
            Err(_) => Err(Failed {
                status: None,
                code: None,
                error: CloudError::transient(format!(
                    "{operation} {name}: no answer from the {} service within {}s",
                    service.as_str(),
                    OPERATION_TIMEOUT.as_secs()
                )),
            }),
        }
    }

    fn scrub(&self, text: String) -> String {
        let text = match &self.sas {
            Some(token) if !token.is_empty() => text.replace(token.as_str(), "<sas>"),
            _ => text,
        };
        scrub_signature(&text)
    }
}

/// One storage account per ProviderConfig, rebuilt when its settings change.
pub struct Clients {
    /// Shared by every account; an error (no TLS setup) is reported by each Azure resource.
    http: Result<Arc<reqwest::Client>, String>,
    accounts: Mutex<HashMap<String, (ProviderContext, Arc<Account>)>>,
    observer: CallObserver,
    budgets: Arc<RateBudgets>,
}

impl Clients {
    pub fn new(observer: CallObserver, budgets: Arc<RateBudgets>) -> Self {
        Self {
            http: http_client().map(Arc::new),
            accounts: Mutex::new(HashMap::new()),
            observer,
            budgets,
        }
    }

    /// The account for a ProviderContext, built once per version of its settings.
    pub fn account(&self, ctx: &ProviderContext) -> Result<Arc<Account>, CloudError> {
        if let Some((seen, account)) = self.lock().get(&ctx.key)
            && seen == ctx
        {
            return Ok(account.clone());
        }
        let account = Arc::new(self.build(ctx)?);
        self.lock().insert(ctx.key.clone(), (ctx.clone(), account.clone()));
        Ok(account)
    }

    fn build(&self, ctx: &ProviderContext) -> Result<Account, CloudError> {
        let invalid = |message: String| CloudError::Rejected {
            reason: Reason::InvalidProviderConfig,
            message,
        };
        // Validation of the ProviderConfig requires it; checked again so no request goes out
        // signed for an empty account.
        let name = ctx
            .azure
            .storage_account
            .clone()
            .ok_or_else(|| invalid("spec.azure.storageAccount is required with provider azure".into()))?;
        let endpoints = ctx.azure.endpoints.clone().unwrap_or_default();
        let endpoint = |service: Service, given: &Option<String>| -> Result<Url, CloudError> {
            let text = given
                .clone()
                .unwrap_or_else(|| format!("https://{name}.{}.core.windows.net", service.as_str()));
            let url = Url::parse(text.trim_end_matches('/')).map_err(|e| {
                invalid(format!(
                    "spec.azure.endpoints.{}: '{text}' is not a URL: {e}",
                    service.as_str()
                ))
            })?;
            if url.cannot_be_a_base() || url.query().is_some() {
                return Err(invalid(format!(
                    "spec.azure.endpoints.{}: '{text}' must be a base URL without a query (give a SAS in the Secret)",
                    service.as_str()
                )));
            }
            Ok(url)
        };
        let http = self.http.clone().map_err(|message| CloudError::Rejected {
            reason: Reason::InternalError,
            message,
        })?;
        let (sign, sas) = match &ctx.credentials {
            ResolvedCredentials::AzureSharedKey { account, key } => {
                // The key must decode, or every request fails with a message about HMAC.
                azure_core::base64::decode(key).map_err(|_| CloudError::Rejected {
                    reason: Reason::CredentialsInvalid,
                    message:
                        "the Secret's accountKey is not base64: copy the storage account's key as the portal shows it"
                            .into(),
                })?;
                let sign = Sign::SharedKey {
                    account: account.clone(),
                    key: Secret::new(key.clone()),
                    table: false,
                };
                (sign, None)
            }
            ResolvedCredentials::AzureSas { token } => (Sign::Sas { token: token.clone() }, Some(token.clone())),
            ResolvedCredentials::Static { .. }
            | ResolvedCredentials::GcpServiceAccount { .. }
            | ResolvedCredentials::Anonymous => {
                return Err(CloudError::Rejected {
                    reason: Reason::CredentialsInvalid,
                    message: "Azure needs the storage account's accountKey, a sasToken or an Entra ID clientSecret \
                              in the ProviderConfig's Secret"
                        .into(),
                });
            }
            entra @ (ResolvedCredentials::AzureClientSecret { .. }
            | ResolvedCredentials::AzureWorkloadIdentity { .. }
            | ResolvedCredentials::Ambient) => {
                let credential = entra::credential(entra, &ctx.azure, http.clone())?;
                (Sign::Bearer { credential }, None)
            }
        };
        let options = |sign: Sign| ClientOptions {
            transport: Some(Transport::new(http.clone())),
            // The controller's loop retries with backoff and counts each request; the SDK's
            // retries would sleep inside a worker.
            retry: RetryOptions::none(),
            per_try_policies: vec![Arc::new(sign) as Arc<dyn Policy>],
            ..Default::default()
        };
        let table_sign = match &sign {
            Sign::SharedKey { account, key, .. } => Sign::SharedKey {
                account: account.clone(),
                key: key.clone(),
                table: true,
            },
            other @ (Sign::Sas { .. } | Sign::Bearer { .. }) => other.clone(),
        };
        let (options, table_options) = (options(sign), options(table_sign));
        Ok(Account {
            blob: endpoint(Service::Blob, &endpoints.blob)?,
            queue: endpoint(Service::Queue, &endpoints.queue)?,
            table: endpoint(Service::Table, &endpoints.table)?,
            name,
            options,
            table_options,
            sas,
            subscription_id: ctx.azure.subscription_id.clone(),
            resource_group: ctx.azure.resource_group.clone(),
            observer: self.observer.clone(),
            budget: self.budgets.budget(&ctx.key, ctx.rate_limit),
        })
    }

    /// Drops a deleted ProviderConfig's account.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ProviderContext, Arc<Account>)>> {
        // A panic while holding the lock leaves only a cache behind; keep using it.
        self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn http_client() -> Result<reqwest::Client, String> {
    crate::https::client("Azure", CONNECT_TIMEOUT, REQUEST_TIMEOUT)
}

/// A failed call: the error the controller acts on, and what the caller may match on.
#[derive(Debug)]
pub(crate) struct Failed {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub error: CloudError,
}

impl From<Failed> for CloudError {
    fn from(f: Failed) -> Self {
        f.error
    }
}

impl Failed {
    fn from_error(account: &Account, operation: &str, name: &str, e: &azure_core::Error) -> Self {
        match e.kind() {
            ErrorKind::HttpResponse { status, error_code, .. } => {
                let status = u16::from(*status);
                let code = error_code.clone();
                let detail = code.as_deref().map(|c| format!("{c} ")).unwrap_or_default();
                let message = format!("{operation} {name}: {detail}(HTTP {status})");
                Self {
                    error: classify_status(status, code.as_deref(), message),
                    status: Some(status),
                    code,
                }
            }
            // Entra ID refused the secret or federated token, or was unreachable: retried,
            // since secrets are rotated outside Kubernetes and outages pass.
            ErrorKind::Credential => Self {
                status: None,
                code: None,
                error: CloudError::Transient {
                    reason: Reason::TokenRequestFailed,
                    message: account.scrub(format!("{operation} {name}: Entra ID gave no token: {}", causes(e))),
                    retry_after: None,
                },
            },
            // Refused before sending (a header value, a URL): the same request fails again.
            ErrorKind::DataConversion => Self {
                status: None,
                code: None,
                error: CloudError::Rejected {
                    reason: Reason::InvalidRequest,
                    message: account.scrub(format!("{operation} {name}: {e}")),
                },
            },
            _ => Self {
                status: None,
                code: None,
                error: CloudError::transient(account.scrub(format!("{operation} {name}: {}", causes(e)))),
            },
        }
    }
}

/// Codes that arrive as 4xx but name a passing condition.
const RETRYABLE_CODES: &[&str] = &[
    "ContainerBeingDeleted",
    "QueueBeingDeleted",
    "TableBeingDeleted",
    "OperationTimedOut",
    "ServerBusy",
];

fn classify_status(status: u16, code: Option<&str>, message: String) -> CloudError {
    // 404 here means the resource vanished between calls: the next observe sorts it out.
    if status >= 500
        || status == 429
        || status == 408
        || status == 404
        || code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
    {
        CloudError::transient(message)
    } else if status == 403 {
        // A wrong key answers 403 too (AuthenticationFailed): a human fixes the Secret, but
        // permissions and network rules may change outside Kubernetes, so keep trying.
        CloudError::Transient {
            reason: Reason::AccessDenied,
            message: format!(
                "{message}; check the ProviderConfig's credentials (accountKey or sasToken) and the account's network rules"
            ),
            retry_after: None,
        }
    } else {
        CloudError::Rejected {
            reason: Reason::CloudRejected,
            message,
        }
    }
}

/// Replaces the value of every `sig=` in a text (URLs in transport errors) with `<redacted>`.
fn scrub_signature(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("<redacted>");
        rest = &rest[i + 4..];
        let end = rest
            .find(|c: char| c == '&' || c == ')' || c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The metadata entry recording which object manages a container or queue: metadata keys
/// must be C# identifiers, so `cloudkit.dev/owner` cannot be one.
/// Validation reserves the `cloudkit_` prefix on Azure, so a manifest cannot forge it.
pub const OWNER_METADATA_KEY: &str = "cloudkit_owner";

pub(crate) fn owner_tag(owner: &str) -> crate::OwnerTag {
    crate::OwnerTag {
        key: OWNER_METADATA_KEY.to_owned(),
        value: owner.to_owned(),
    }
}

/// Tags become metadata (name/value pairs sent as `x-ms-meta-<name>` headers) and back:
/// one place to map keys that Azure cannot hold (validation refuses what needs no mapping).
pub(crate) fn tags_to_metadata(tags: &Tags) -> HashMap<String, String> {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn metadata_to_tags(metadata: HashMap<String, String>) -> Tags {
    metadata.into_iter().collect::<BTreeMap<_, _>>()
}

/// Authenticates each request to the storage account.
#[derive(Clone)]
enum Sign {
    /// Shared Key: an HMAC of the request under the account key; the Table service signs
    /// a shorter string than Blob and Queue.
    SharedKey { account: String, key: Secret, table: bool },
    /// A SAS token, appended to the query.
    Sas { token: String },
    /// An Entra ID bearer token, cached and renewed before it expires by the credential.
    Bearer { credential: Arc<dyn TokenCredential> },
}

impl std::fmt::Debug for Sign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sign::SharedKey { account, .. } => write!(f, "SharedKey({account}, <redacted>)"),
            Sign::Sas { .. } => f.write_str("Sas(<redacted>)"),
            Sign::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
        }
    }
}

const X_MS_DATE: &str = "x-ms-date";

#[async_trait]
impl Policy for Sign {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        match self {
            Sign::Sas { token } => {
                let url = request.url_mut();
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{token}"),
                    _ => token.clone(),
                };
                url.set_query(Some(&query));
            }
            Sign::Bearer { credential } => {
                let token = credential.get_token(&[entra::STORAGE_SCOPE], None).await?;
                request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
            }
            Sign::SharedKey { account, key, table } => {
                request.insert_header(X_MS_DATE, to_rfc7231(&OffsetDateTime::now_utc()));
                let to_sign = string_to_sign(account, request, *table);
                let signature = azure_core::hmac::hmac_sha256(&to_sign, key)?;
                request.insert_header("authorization", format!("SharedKey {account}:{signature}"));
            }
        }
        match next.split_first() {
            Some((first, rest)) => first.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "the Azure pipeline has no transport after the signing policy",
            )),
        }
    }
}

/// The Shared Key string to sign: the Blob and Queue form (every standard header and the
/// `x-ms-` ones), or the shorter Table form.
fn string_to_sign(account: &str, request: &Request, table: bool) -> String {
    let header = |name: &str| -> String {
        request
            .headers()
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.as_str().to_owned())
            .unwrap_or_default()
    };
    let url = request.url();
    let method = request.method().as_ref().to_uppercase();
    // Path-style (emulator) URLs carry the account in the path too: `/acct/acct/container`.
    let mut resource = format!("/{account}{}", url.path());
    if table {
        // Table: only `comp` of the query is signed.
        if let Some((_, comp)) = url.query_pairs().find(|(k, _)| k == "comp") {
            resource.push_str(&format!("?comp={comp}"));
        }
        return format!(
            "{method}\n{}\n{}\n{}\n{resource}",
            header("content-md5"),
            header("content-type"),
            header(X_MS_DATE)
        );
    }
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        params.entry(k.to_lowercase()).or_default().push(v.into_owned());
    }
    for (k, mut values) in params {
        values.sort();
        resource.push_str(&format!("\n{k}:{}", values.join(",")));
    }
    let mut canonical: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-ms-"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_str().trim().to_owned()))
        .collect();
    canonical.sort();
    let headers: String = canonical.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let length = match request.body().len() {
        Some(0) | None => String::new(),
        Some(n) => n.to_string(),
    };
    format!(
        "{method}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n{headers}{resource}",
        header("content-encoding"),
        header("content-language"),
        header("content-md5"),
        header("content-type"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    )
}

#[cfg(test)]
mod tests {
    use azure_core::http::Method;

    use super::*;

    #[test]
    fn blob_string_to_sign_follows_the_shared_key_rules() {
        let url =
            Url::parse("http://127.0.0.1:10000/devstoreaccount1/logs?restype=container&comp=metadata").expect("url");
        let mut request = Request::new(url, Method::Put);
        request.insert_header("x-ms-version", "2026-04-06");
        request.insert_header("x-ms-meta-team", " data ");
        request.insert_header(X_MS_DATE, "Tue, 01 Dec 2026 00:00:00 GMT");
        let text = string_to_sign("devstoreaccount1", &request, false);
        assert_eq!(
            text,
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Tue, 01 Dec 2026 00:00:00 GMT\nx-ms-meta-team:data\n\
             x-ms-version:2026-04-06\n/devstoreaccount1/devstoreaccount1/logs\ncomp:metadata\nrestype:container"
        );
    }

    #[test]
    fn table_string_to_sign_is_the_short_form() {
        let url = Url::parse("https://acct.table.core.windows.net/Tables('orders')").expect("url");
        let mut request = Request::new(url, Method::Get);
        request.insert_header("dataserviceversion", "3.0");
        request.insert_header(X_MS_DATE, "Tue, 01 Dec 2026 00:00:00 GMT");
        assert_eq!(
            string_to_sign("acct", &request, true),
            "GET\n\n\nTue, 01 Dec 2026 00:00:00 GMT\n/acct/Tables('orders')"
        );
    }

    #[test]
    fn signatures_never_reach_messages() {
        let text = "error sending request for url (http://h/q?sv=2022&sig=abc%2Bdef&se=x) ";
        assert_eq!(
            scrub_signature(text),
            "error sending request for url (http://h/q?sv=2022&sig=<redacted>&se=x) "
        );
    }

    #[test]
    fn status_codes_say_retry_or_not() {
        assert!(classify_status(503, None, "x".into()).is_retryable());
        assert!(classify_status(409, Some("ContainerBeingDeleted"), "x".into()).is_retryable());
        assert_eq!(
            classify_status(403, Some("AuthenticationFailed"), "x".into()).reason(),
            Reason::AccessDenied
        );
        let rejected = classify_status(400, Some("InvalidMetadata"), "x".into());
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.reason(), Reason::CloudRejected);
    }

    #[test]
    fn the_http_client_builds_with_ring_only() {
        // Two rustls providers would panic here.
        assert!(http_client().is_ok());
    }
}
