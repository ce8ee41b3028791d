//! Watches on the credentials Secrets that ProviderConfigs name, one per Secret and limited
//! to it by a field selector (`metadata.name=`), so the controller never receives any other
//! Secret. Each keeps its entry in the Secret cache current: an idle controller reads no
//! Secret at all (it used to GET each one twice a minute), a deleted Secret is seen at once,
//! and a changed one wakes the ProviderConfigs naming it, whose check retries the objects
//! that were failing.
//!
//! Watching needs `list` and `watch` on Secrets. Where the operator grants `get` only
//! (`--secret-access get`, the chart's `controller.secretAccess: get`), or a watch is
//! refused with 403, the cache falls back to entries that expire (provider::SecretCache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cloudkit_crds::ProviderConfig;
use cloudkit_crds::provider_config::CredentialsSource;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::broadcast;

use crate::provider::SecretCache;

/// A Secret by namespace and name.
pub type SecretKey = (String, String);

/// The running watches, started and stopped to match the Secrets ProviderConfigs name.
pub struct SecretWatches {
    client: Client,
    cache: Arc<SecretCache>,
    /// Off with `--secret-access get`, or once a watch was refused.
    enabled: Arc<AtomicBool>,
    running: Mutex<HashMap<SecretKey, tokio::task::JoinHandle<()>>>,
    changed: broadcast::Sender<SecretKey>,
}

impl SecretWatches {
    pub fn new(client: Client, cache: Arc<SecretCache>, enabled: bool) -> Self {
        Self {
            client,
            cache,
            enabled: Arc::new(AtomicBool::new(enabled)),
            running: Mutex::default(),
            changed: broadcast::channel(256).0,
        }
    }

    /// Starts a watch for each Secret a ProviderConfig in `configs` names and stops those no
    /// longer named; `leaving` is a ProviderConfig about to go, which no longer counts.
    /// Cheap enough to run on every ProviderConfig check: it reads the cache.
    pub fn sync(&self, configs: &Store<ProviderConfig>, leaving: Option<&ProviderConfig>) {
        let enabled = self.enabled.load(Ordering::Relaxed);
        let leaving = leaving.map(ObjectRef::from_obj);
        let wanted: std::collections::HashSet<SecretKey> = if enabled {
            configs
                .state()
                .iter()
                .filter(|c| leaving.as_ref() != Some(&ObjectRef::from_obj(&***c)))
                .filter_map(|c| named_secret(c))
                .collect()
        } else {
            Default::default()
        };
        let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
                self.cache.unwatch(&key.0, &key.1);
            }
            keep
        });
        for key in wanted {
            running.entry(key.clone()).or_insert_with(|| {
                tokio::spawn(watch(
                    self.client.clone(),
                    key,
                    self.cache.clone(),
                    self.enabled.clone(),
                    self.changed.clone(),
                ))
            });
        }
    }

    /// The ProviderConfigs to check again because a Secret they name changed or went.
    pub fn changes(&self, configs: Store<ProviderConfig>) -> impl Stream<Item = ObjectRef<ProviderConfig>> + use<> {
        let changed = crate::references::received(self.changed.subscribe());
        changed.flat_map(move |key: SecretKey| {
            let naming: Vec<ObjectRef<ProviderConfig>> = configs
                .state()
                .iter()
                .filter(|c| named_secret(c).as_ref() == Some(&key))
                .map(|c| ObjectRef::from_obj(&**c))
                .collect();
            futures::stream::iter(naming)
        })
    }
}

impl Drop for SecretWatches {
    fn drop(&mut self) {
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in running.values() {
            task.abort();
        }
    }
}

/// The Secret a ProviderConfig reads its credentials from, if any.
pub fn named_secret(config: &ProviderConfig) -> Option<SecretKey> {
    let name = config.spec.credentials.secret_ref.as_ref()?.name.clone();
    (config.spec.credentials.source == CredentialsSource::Secret && !name.is_empty())
        .then(|| (config.namespace().unwrap_or_default(), name))
}

/// Keeps one Secret's cache entry current until aborted, or until the watch is refused.
async fn watch(
    client: Client,
    key: SecretKey,
    cache: Arc<SecretCache>,
    enabled: Arc<AtomicBool>,
    changed: broadcast::Sender<SecretKey>,
) {
    let (namespace, name) = &key;
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    // What the initial list found, applied at its end so that a relist never shows the
    // Secret missing for a moment.
    let mut listed: Option<Secret> = None;
    while let Some(event) = events.next().await {
        let now = match event {
            Ok(watcher::Event::Init) => {
                listed = None;
                continue;
            }
            Ok(watcher::Event::InitApply(secret)) => {
                listed = Some(secret);
                continue;
            }
            Ok(watcher::Event::InitDone) => listed.take(),
            Ok(watcher::Event::Apply(secret)) => Some(secret),
            Ok(watcher::Event::Delete(_)) => None,
            Err(
                watcher::Error::InitialListFailed(kube::Error::Api(e))
                | watcher::Error::WatchStartFailed(kube::Error::Api(e)),
            ) if e.code == 403 => {
                // Every Secret's watch would be refused alike: the cache expires entries instead.
                if enabled.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        secret = %format!("{namespace}/{name}"),
                        "may not watch credentials Secrets ({e}): reading them again every 30 s instead; \
                         grant list and watch on Secrets, or run with --secret-access get"
                    );
                }
                cache.unwatch(namespace, name);
                return;
            }
            Err(e) => {
                // Until the watch is back, the entry ages out like one read by a GET.
                tracing::debug!(secret = %format!("{namespace}/{name}"), error = %e, "credentials Secret watch");
                cache.unwatch(namespace, name);
                continue;
            }
        };
        if cache.watched(namespace, name, now.map(lighten)) {
            let _ = changed.send(key.clone());
        }
    }
}

/// Only `data` is read; the rest is not worth keeping.
pub fn lighten(mut secret: Secret) -> Arc<Secret> {
    secret.metadata = Default::default();
    secret.string_data = None;
    Arc::new(secret)
}
