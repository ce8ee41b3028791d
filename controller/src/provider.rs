//! Turns a resource's `providerConfigRef` into a ProviderContext a backend can use.

use cloudkit_crds::reason::Reason;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudkit_crds::DriftPolicy;
use cloudkit_crds::provider_config::{AzureProviderSettings, Cloud, CredentialsSource, ProviderConfig};
use cloudkit_crds::validation;
use cloudkit_reconcilers::{ProviderContext, ResolvedCredentials};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::error::Failure;

/// How often resources are re-observed when the ProviderConfig does not say.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(600);
const DEFAULT_AWS_REGION: &str = "us-east-1";

pub struct ResolvedProvider {
    pub ctx: ProviderContext,
    pub resync: Duration,
    /// The ProviderConfig's default for objects that set no `driftPolicy`.
    pub drift_policy: Option<DriftPolicy>,
}

/// The context each ProviderConfig last resolved to, so that objects being deleted can still
/// reach their cloud when the Secret (or the ProviderConfig) went first: `kubectl delete -f`
/// of a whole stack and namespace deletion remove things in no useful order, and deletion
/// must not depend on that order. Only cleanup reads it. It lives in memory: after a restart
/// with the Secret already gone, cleanup waits for it (`CredentialsNotFound`, escalated
/// after `--stall-after`) as before.
#[derive(Default)]
pub struct LastResolved(Mutex<HashMap<(String, String), ProviderContext>>);

impl LastResolved {
    /// Records what `namespace/name` resolved to; true when its credentials are not the
    /// ones it last resolved to (or it never resolved before): the objects that failed with
    /// the old ones should try again now.
    pub fn remember(&self, namespace: &str, name: &str, ctx: &ProviderContext) -> bool {
        let Ok(mut map) = self.0.lock() else {
            return false;
        };
        let before = map.insert((namespace.to_owned(), name.to_owned()), ctx.clone());
        before.is_none_or(|b| b.credentials != ctx.credentials)
    }

    /// What `namespace/name` last resolved to, when `failure` says it cannot be resolved
    /// now only because it or its Secret is gone.
    pub fn instead_of(&self, namespace: &str, name: &str, failure: &Failure) -> Option<ProviderContext> {
        if !matches!(
            failure.reason(),
            Reason::CredentialsNotFound | Reason::ProviderConfigNotFound
        ) {
            return None;
        }
        let map = self.0.lock().ok()?;
        map.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

/// How soon an object whose ProviderConfig or Secret is missing looks again.
const RECHECK: Duration = Duration::from_secs(10);

/// How long a credentials Secret read by a GET is used without reading it again, where it
/// cannot be watched (`--secret-access get`): a deleted or rotated Secret is seen within
/// this (tests/e2e/tests/drift.rs deletes one and waits for CredentialsNotFound). One GET
/// per Secret per 30 s, where there was one per reconcile.
const SECRET_MAX_AGE: Duration = Duration::from_secs(30);

/// Credentials Secrets, by namespace and name. Without it every reconcile cost one Secret
/// GET (two for a new object): 10,000 objects resyncing every 10 minutes were 17 GETs a
/// second of the same Secret. A watched Secret's entry is kept current by its watch
/// (secret_watch.rs) and never expires; one read by a GET expires, is refreshed by the
/// ProviderConfig check, and is dropped for a namespace whenever a reconcile there fails, so
/// a rotated key that the cloud refuses is read again at the retry.
#[derive(Default)]
pub struct SecretCache(Mutex<HashMap<(String, String), CachedSecret>>);

enum CachedSecret {
    /// Read by a GET at this instant.
    Read(std::time::Instant, Arc<Secret>),
    /// As its watch last saw it: `None` while it does not exist.
    Watched(Option<Arc<Secret>>),
}

/// What the cache knows of a Secret.
enum Lookup {
    Found(Arc<Secret>),
    /// Its watch says it does not exist.
    Missing,
    /// Not known, or too old: read it.
    Unknown,
}

impl SecretCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CachedSecret>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `fresh`: an entry read by a GET is not good enough (a watched one always is).
    fn lookup(&self, namespace: &str, name: &str, fresh: bool) -> Lookup {
        match self.lock().get(&(namespace.to_owned(), name.to_owned())) {
            Some(CachedSecret::Watched(Some(secret))) => Lookup::Found(secret.clone()),
            Some(CachedSecret::Watched(None)) => Lookup::Missing,
            Some(CachedSecret::Read(at, secret)) if !fresh && at.elapsed() < SECRET_MAX_AGE => {
                Lookup::Found(secret.clone())
            }
            _ => Lookup::Unknown,
        }
    }

    /// Keeps what a GET read, unless a watch keeps the entry (it knows better).
    fn put(&self, namespace: &str, name: &str, secret: Arc<Secret>) {
        let mut map = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if !matches!(map.get(&key), Some(CachedSecret::Watched(_))) {
            map.insert(key, CachedSecret::Read(std::time::Instant::now(), secret));
        }
    }

    /// What the Secret's watch sees now. Returns whether that differs from what was known
    /// (nothing known counts as different: the ProviderConfig is checked once more).
    pub fn watched(&self, namespace: &str, name: &str, secret: Option<Arc<Secret>>) -> bool {
        let mut map = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let before = match map.get(&key) {
            Some(CachedSecret::Watched(s)) => Some(s.as_ref().map(|s| &s.data)),
            _ => None,
        };
        let changed = before != Some(secret.as_ref().map(|s| &s.data));
        map.insert(key, CachedSecret::Watched(secret));
        changed
    }

    /// The Secret's watch stopped (failed, refused, or no longer wanted): its entry is
    /// dropped and the next reconcile reads the Secret with a GET.
    pub fn unwatch(&self, namespace: &str, name: &str) {
        let mut map = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if matches!(map.get(&key), Some(CachedSecret::Watched(_))) {
            map.remove(&key);
        }
    }

    /// Whether a watch keeps this Secret's entry current.
    pub fn is_watched(&self, namespace: &str, name: &str) -> bool {
        matches!(
            self.lock().get(&(namespace.to_owned(), name.to_owned())),
            Some(CachedSecret::Watched(_))
        )
    }

    /// Forgets a namespace's Secrets read by GETs: the next reconcile there reads them again.
    pub fn forget_namespace(&self, namespace: &str) {
        self.lock()
            .retain(|(ns, _), entry| ns != namespace || matches!(entry, CachedSecret::Watched(_)));
    }
}

/// Where `from_config` reads a Secret: through the cache, or afresh (refreshing it) unless
/// a watch keeps it current.
#[derive(Clone, Copy)]
pub enum SecretRead<'a> {
    Cached(&'a SecretCache),
    Fresh(&'a SecretCache),
    /// Tools that run once (`cloudkit plan --live`): no cache.
    Uncached,
}

/// Looks the ProviderConfig up in the watch cache (no API call) and resolves it.
pub async fn resolve(
    client: &Client,
    configs: &Store<ProviderConfig>,
    secrets: &SecretCache,
    namespace: &str,
    name: &str,
    ambient: &Ambient,
) -> Result<ResolvedProvider, Failure> {
    // Not yet, perhaps: applied later in the same commit. Its creation wakes the objects
    // naming it (see main.rs), so the recheck is only a safety net.
    let config = configs.get(&ObjectRef::new(name).within(namespace)).ok_or_else(|| {
        Failure::waiting(
            Reason::ProviderConfigNotFound,
            format!(
                "ProviderConfig '{name}' not found in namespace '{namespace}': create it, or set \
                 spec.providerConfigRef.name to an existing one"
            ),
            RECHECK,
        )
    })?;
    from_config(client, &config, ambient, SecretRead::Cached(secrets)).await
}

/// The namespaces whose ProviderConfigs may use the controller's own (ambient) credentials:
/// in a cluster shared by teams, a ProviderConfig with `source: Environment` would otherwise
/// lend the controller's cloud identity to anyone who may create one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ambient {
    Everywhere,
    Only(Vec<String>),
}

impl Ambient {
    /// `*` for every namespace, else a comma-separated list (empty: none).
    pub fn parse(text: &str) -> Self {
        let names: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if names.iter().any(|n| n == "*") {
            Self::Everywhere
        } else {
            Self::Only(names)
        }
    }

    fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::Everywhere => true,
            Self::Only(names) => names.iter().any(|n| n == namespace),
        }
    }
}

/// Validates a ProviderConfig and reads its Secret.
pub async fn from_config(
    client: &Client,
    config: &ProviderConfig,
    ambient: &Ambient,
    secrets: SecretRead<'_>,
) -> Result<ResolvedProvider, Failure> {
    let namespace = config.namespace().unwrap_or_default();
    let namespace = namespace.as_str();
    let name = config.name_any();
    let name = name.as_str();
    let spec = &config.spec;
    validation::provider_config(spec).map_err(|e| {
        Failure::stalled(
            Reason::InvalidProviderConfig,
            format!("ProviderConfig '{name}' is invalid: {e}"),
        )
    })?;
    let credentials = match spec.credentials.source {
        CredentialsSource::Secret => {
            let secret_name = spec
                .credentials
                .secret_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .unwrap_or_default();
            let secret = read_secret(client, secrets, namespace, secret_name, name).await?;
            let azure = spec.azure.clone().unwrap_or_default();
            static_credentials(spec.provider, &secret, secret_name, &azure)?
        }
        // Azure's workload identity may name its application per ProviderConfig; the rest of
        // what it needs is in the pod's environment.
        CredentialsSource::WorkloadIdentity if spec.provider == Cloud::Azure && ambient.allows(namespace) => {
            let azure = spec.azure.clone().unwrap_or_default();
            ResolvedCredentials::AzureWorkloadIdentity {
                tenant_id: azure.tenant_id,
                client_id: azure.client_id,
            }
        }
        // Lends no identity, so the operator's ambient allow-list does not apply; validation
        // allows it only for GCP with an emulator endpoint.
        CredentialsSource::Anonymous => ResolvedCredentials::Anonymous,
        CredentialsSource::Environment | CredentialsSource::WorkloadIdentity if ambient.allows(namespace) => {
            ResolvedCredentials::Ambient
        }
        CredentialsSource::Environment | CredentialsSource::WorkloadIdentity => {
            return Err(Failure::stalled(
                Reason::CredentialsNotAllowed,
                format!(
                    "ProviderConfig '{name}' asks for the controller's own credentials (source {:?}), which the \
                     operator does not allow in namespace '{namespace}': use source Secret with keys of your own, \
                     or ask for '{namespace}' to be added to --ambient-credentials-namespaces",
                    spec.credentials.source
                ),
            ));
        }
    };
    let region = match spec.provider {
        Cloud::Aws => spec.region.clone().unwrap_or_else(|| DEFAULT_AWS_REGION.to_owned()),
        Cloud::Azure => spec.region.clone().unwrap_or_default(),
        // Where buckets are made; status.region shows it.
        Cloud::Gcp => spec.gcp.as_ref().and_then(|g| g.location.clone()).unwrap_or_default(),
    };
    let resync = match &spec.resync_interval {
        Some(text) => validation::parse_duration(text).unwrap_or(DEFAULT_RESYNC),
        None => DEFAULT_RESYNC,
    };
    let ctx = ProviderContext {
        key: format!("{namespace}/{name}"),
        cloud: spec.provider,
        region,
        endpoint: spec.endpoint.clone(),
        credentials,
        aws: spec.aws.clone().unwrap_or_default(),
        azure: spec.azure.clone().unwrap_or_default(),
        gcp: spec.gcp.clone().unwrap_or_default(),
        gcp_instance: None,
        rate_limit: spec.rate_limit,
    };
    Ok(ResolvedProvider {
        ctx,
        resync,
        drift_policy: spec.drift_policy,
    })
}

async fn read_secret(
    client: &Client,
    cache: SecretRead<'_>,
    namespace: &str,
    secret: &str,
    config: &str,
) -> Result<Arc<Secret>, Failure> {
    let not_found = || {
        // Not yet, perhaps: External Secrets and the like create it a moment later.
        Failure::waiting(
            Reason::CredentialsNotFound,
            format!(
                "Secret '{secret}' named by ProviderConfig '{config}' not found in namespace '{namespace}': create it"
            ),
            RECHECK,
        )
    };
    let lookup = match cache {
        SecretRead::Cached(cache) => cache.lookup(namespace, secret, false),
        SecretRead::Fresh(cache) => cache.lookup(namespace, secret, true),
        SecretRead::Uncached => Lookup::Unknown,
    };
    match lookup {
        Lookup::Found(found) => return Ok(found),
        Lookup::Missing => return Err(not_found()),
        Lookup::Unknown => {}
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(secret).await {
        Ok(Some(s)) => {
            let s = crate::secret_watch::lighten(s);
            if let SecretRead::Cached(cache) | SecretRead::Fresh(cache) = cache {
                cache.put(namespace, secret, s.clone());
            }
            Ok(s)
        }
        Ok(None) => Err(not_found()),
        Err(e) => Err(Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("reading Secret '{secret}': {e}"),
            after: None,
        }),
    }
}

/// `account`: the Azure storage account the key belongs to (validated as set for Azure).
fn static_credentials(
    cloud: Cloud,
    secret: &Secret,
    name: &str,
    azure: &AzureProviderSettings,
) -> Result<ResolvedCredentials, Failure> {
    let data = secret.data.clone().unwrap_or_default();
    let get = |key: &str| -> Option<String> {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    match cloud {
        Cloud::Aws => {
            let missing: Vec<&str> = ["accessKeyId", "secretAccessKey"]
                .into_iter()
                .filter(|k| get(k).is_none())
                .collect();
            match (get("accessKeyId"), get("secretAccessKey")) {
                (Some(access_key_id), Some(secret_access_key)) => Ok(ResolvedCredentials::Static {
                    access_key_id,
                    secret_access_key,
                    session_token: get("sessionToken"),
                }),
                _ => Err(Failure::stalled(
                    Reason::CredentialsInvalid,
                    format!(
                        "Secret '{name}' lacks {}: AWS credentials need accessKeyId and secretAccessKey",
                        missing.join(" and ")
                    ),
                )),
            }
        }
        Cloud::Azure => {
            if let Some(key) = get("accountKey") {
                return Ok(ResolvedCredentials::AzureSharedKey {
                    account: azure.storage_account.clone().unwrap_or_default(),
                    key,
                });
            }
            if let Some(token) = get("sasToken") {
                return Ok(ResolvedCredentials::AzureSas {
                    token: token.trim_start_matches('?').to_owned(),
                });
            }
            let Some(secret) = get("clientSecret") else {
                return Err(Failure::stalled(
                    Reason::CredentialsInvalid,
                    format!(
                        "Secret '{name}' lacks accountKey, sasToken and clientSecret: Azure credentials need the \
                         storage account's shared key (accountKey), an account SAS (sasToken), or an Entra ID \
                         service principal (clientSecret with tenantId and clientId)"
                    ),
                ));
            };
            // The Secret wins over the ProviderConfig: it is where a rotated principal lands.
            let tenant_id = get("tenantId").or_else(|| azure.tenant_id.clone());
            let client_id = get("clientId").or_else(|| azure.client_id.clone());
            match (tenant_id, client_id) {
                (Some(tenant_id), Some(client_id))
                    if validation::entra_id(&tenant_id) && validation::entra_id(&client_id) =>
                {
                    Ok(ResolvedCredentials::AzureClientSecret {
                        tenant_id,
                        client_id,
                        secret,
                    })
                }
                (Some(tenant_id), Some(client_id)) => Err(Failure::stalled(
                    Reason::CredentialsInvalid,
                    format!(
                        "Secret '{name}': tenantId '{tenant_id}' or clientId '{client_id}' is not an Entra ID: use the \
                         GUIDs the portal shows for the directory and the application"
                    ),
                )),
                (tenant_id, _) => Err(Failure::stalled(
                    Reason::CredentialsInvalid,
                    format!(
                        "Secret '{name}' has a clientSecret but no {}: put it in the Secret or in the \
                         ProviderConfig's spec.azure",
                        if tenant_id.is_none() { "tenantId" } else { "clientId" }
                    ),
                )),
            }
        }
        Cloud::Gcp => match get("serviceAccountKey") {
            Some(key) => Ok(ResolvedCredentials::GcpServiceAccount { key }),
            None => Err(Failure::stalled(
                Reason::CredentialsInvalid,
                format!(
                    "Secret '{name}' lacks serviceAccountKey: GCP credentials from a Secret are a service account's \
                     JSON key file under that key"
                ),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn last_context_stands_in_only_for_a_missing_config_or_secret() {
        let last = LastResolved::default();
        let ctx = ProviderContext {
            key: "ns/default".into(),
            cloud: Cloud::Aws,
            region: "us-east-1".into(),
            endpoint: None,
            credentials: ResolvedCredentials::Ambient,
            aws: Default::default(),
            azure: Default::default(),
            gcp: Default::default(),
            gcp_instance: None,
            rate_limit: None,
        };
        let gone = Failure::waiting(Reason::CredentialsNotFound, "gone", RECHECK);
        assert_eq!(last.instead_of("ns", "default", &gone), None);
        assert!(last.remember("ns", "default", &ctx), "the first resolution is news");
        assert!(!last.remember("ns", "default", &ctx), "the same credentials are not");
        assert_eq!(last.instead_of("ns", "default", &gone), Some(ctx));
        assert_eq!(last.instead_of("other", "default", &gone), None);
        // A broken or forbidden config is a decision, not an accident of order.
        let refused = Failure::stalled(Reason::CredentialsNotAllowed, "no");
        assert_eq!(last.instead_of("ns", "default", &refused), None);
    }

    #[test]
    fn ambient_credentials_only_where_the_operator_allows() {
        assert!(Ambient::parse("*").allows("team-a"));
        let only = Ambient::parse(" cloudkit-system , platform ");
        assert_eq!(only, Ambient::Only(vec!["cloudkit-system".into(), "platform".into()]));
        assert!(only.allows("platform") && !only.allows("team-a"));
        assert!(!Ambient::parse("").allows("default"), "empty: nowhere");
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        let data: BTreeMap<String, ByteString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        Secret {
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn a_watched_secret_is_used_as_the_watch_saw_it_and_read_ones_expire() {
        let cache = SecretCache::default();
        let found = |l: Lookup| match l {
            Lookup::Found(s) => Some(s.data.clone()),
            _ => None,
        };
        cache.put("ns", "aws", Arc::new(secret(&[("k", "read")])));
        assert!(found(cache.lookup("ns", "aws", false)).is_some(), "a fresh GET is used");
        assert!(
            matches!(cache.lookup("ns", "aws", true), Lookup::Unknown),
            "not when asked afresh"
        );
        // The watch takes over: what it sees is what counts, even when asked afresh.
        assert!(cache.watched("ns", "aws", Some(Arc::new(secret(&[("k", "v1")])))));
        assert!(
            !cache.watched("ns", "aws", Some(Arc::new(secret(&[("k", "v1")])))),
            "no change"
        );
        assert_eq!(
            found(cache.lookup("ns", "aws", true)),
            Some(secret(&[("k", "v1")]).data)
        );
        // A GET does not overwrite it, and a failed reconcile does not drop it.
        cache.put("ns", "aws", Arc::new(secret(&[("k", "stale")])));
        cache.forget_namespace("ns");
        assert_eq!(
            found(cache.lookup("ns", "aws", false)),
            Some(secret(&[("k", "v1")]).data)
        );
        assert!(cache.is_watched("ns", "aws"));
        // Deleted: known missing, with no GET.
        assert!(cache.watched("ns", "aws", None));
        assert!(matches!(cache.lookup("ns", "aws", false), Lookup::Missing));
        // The watch stops: read again.
        cache.unwatch("ns", "aws");
        assert!(matches!(cache.lookup("ns", "aws", false), Lookup::Unknown));
        assert!(!cache.is_watched("ns", "aws"));
        // Read entries of a namespace with a failure are dropped.
        cache.put("ns", "azure", Arc::new(secret(&[("k", "read")])));
        cache.forget_namespace("ns");
        assert!(matches!(cache.lookup("ns", "azure", false), Lookup::Unknown));
    }

    #[test]
    fn aws_keys_are_read_and_never_printed() {
        let creds = static_credentials(
            Cloud::Aws,
            &secret(&[("accessKeyId", "AKIA"), ("secretAccessKey", "s3cr3t")]),
            "aws",
            &Default::default(),
        )
        .expect("complete secret");
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }

    fn account() -> AzureProviderSettings {
        AzureProviderSettings {
            storage_account: Some("acct".into()),
            ..Default::default()
        }
    }

    #[test]
    fn azure_key_or_sas_and_never_printed() {
        let key = static_credentials(Cloud::Azure, &secret(&[("accountKey", "a2V5")]), "az", &account()).expect("key");
        assert_eq!(
            key,
            ResolvedCredentials::AzureSharedKey {
                account: "acct".into(),
                key: "a2V5".into()
            }
        );
        assert!(!format!("{key:?}").contains("a2V5"));
        let sas = static_credentials(
            Cloud::Azure,
            &secret(&[("sasToken", "?sv=1&sig=s3cr3t")]),
            "az",
            &account(),
        )
        .expect("sas");
        assert_eq!(
            sas,
            ResolvedCredentials::AzureSas {
                token: "sv=1&sig=s3cr3t".into()
            }
        );
        assert!(!format!("{sas:?}").contains("s3cr3t"));
        let none = static_credentials(Cloud::Azure, &secret(&[]), "az", &account()).expect_err("empty");
        assert_eq!(none.reason(), Reason::CredentialsInvalid);
    }

    #[test]
    fn azure_service_principal_from_the_secret_or_the_provider_config() {
        let guid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let full = secret(&[("tenantId", guid), ("clientId", "app"), ("clientSecret", "s3cr3t")]);
        let sp = static_credentials(Cloud::Azure, &full, "az", &account()).expect("service principal");
        assert_eq!(
            sp,
            ResolvedCredentials::AzureClientSecret {
                tenant_id: guid.into(),
                client_id: "app".into(),
                secret: "s3cr3t".into()
            }
        );
        assert!(!format!("{sp:?}").contains("s3cr3t"));
        // IDs are not secret: they may sit in the ProviderConfig, the Secret overriding them.
        let ids = AzureProviderSettings {
            tenant_id: Some(guid.into()),
            client_id: Some("other".into()),
            ..account()
        };
        let only_secret = secret(&[("clientSecret", "s3cr3t"), ("clientId", "app")]);
        assert!(matches!(
            static_credentials(Cloud::Azure, &only_secret, "az", &ids),
            Ok(ResolvedCredentials::AzureClientSecret { client_id, .. }) if client_id == "app"
        ));
        let no_tenant = static_credentials(Cloud::Azure, &only_secret, "az", &account()).expect_err("no tenant");
        assert_eq!(no_tenant.reason(), Reason::CredentialsInvalid);
        assert!(no_tenant.to_string().contains("no tenantId"), "{no_tenant}");
        let bad = secret(&[("tenantId", "a/b"), ("clientId", "app"), ("clientSecret", "s3cr3t")]);
        let bad = static_credentials(Cloud::Azure, &bad, "az", &account()).expect_err("bad tenant");
        assert!(bad.to_string().contains("not an Entra ID"), "{bad}");
    }

    #[test]
    fn gcp_service_account_key_is_read_and_never_printed() {
        let key = r#"{"type": "service_account", "private_key": "s3cr3t"}"#;
        let creds = static_credentials(
            Cloud::Gcp,
            &secret(&[("serviceAccountKey", key)]),
            "gcp",
            &Default::default(),
        )
        .expect("a key");
        assert_eq!(creds, ResolvedCredentials::GcpServiceAccount { key: key.into() });
        assert!(!format!("{creds:?}").contains("s3cr3t"));
        let none = static_credentials(Cloud::Gcp, &secret(&[]), "gcp", &Default::default()).expect_err("empty");
        assert!(none.to_string().contains("serviceAccountKey"), "{none}");
    }

    #[test]
    fn missing_keys_are_named() {
        let err = static_credentials(
            Cloud::Aws,
            &secret(&[("accessKeyId", "AKIA")]),
            "aws",
            &Default::default(),
        )
        .expect_err("incomplete");
        assert_eq!(err.reason(), Reason::CredentialsInvalid);
        assert!(err.to_string().contains("lacks secretAccessKey"), "{err}");
    }
}
