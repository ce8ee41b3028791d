//! When a cloud answers again after an outage, the objects on the same ProviderConfig that
//! were failing with `ProviderError` are retried at once, instead of each waiting out its
//! own backoff (up to 5 min): before this, tests/e2e/tests/outage.rs saw objects Ready up
//! to 60 s after the cloud came back while their neighbours already were. Likewise when a
//! ProviderConfig's credentials change (its Secret fixed or rotated): every object on it
//! that is not Ready is retried at once with them (tests/e2e/tests/secrets.rs).

use cloudkit_crds::reason::Reason;
use futures::Stream;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::broadcast;

use crate::kinds::ManagedKind;
use crate::status::{self, READY};

/// Objects of a ProviderConfig to retry now, and why.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub namespace: String,
    pub config: String,
    pub cause: Cause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A call through it succeeded after failures: retry those the cloud did not answer.
    CloudAnswered,
    /// It resolved to other credentials than before: retry every object not Ready.
    NewCredentials,
}

pub fn channel() -> broadcast::Sender<Recovered> {
    broadcast::channel(256).0
}

/// Whether a status says the last attempt failed because the cloud did not answer.
pub fn was_unreachable(status: Option<&cloudkit_crds::ManagedStatus>) -> bool {
    status::condition(status, READY).is_some_and(|c| c.reason == Reason::ProviderError.as_str())
}

/// The objects of kind `K` to retry now: on the recovered ProviderConfig, last failed with
/// `ProviderError` (or not Ready, for new credentials).
pub fn retries<K: ManagedKind>(
    rx: broadcast::Receiver<Recovered>,
    objects: Store<K>,
) -> impl Stream<Item = ObjectRef<K>> {
    // A missed one only means waiting out the backoff, as before. Each woken object that
    // succeeds announces the recovery again; that is kept on purpose: objects whose retry
    // failed in the moment the cloud came back are woken by the next announcement (a
    // 10 s debounce made recovery after a 60 s outage take 37 s instead of 6 s).
    let recovered = crate::references::received(rx);
    futures::StreamExt::flat_map(recovered, move |wake: Recovered| {
        let refs: Vec<ObjectRef<K>> = objects
            .state()
            .into_iter()
            .filter(|o| {
                o.namespace().as_deref() == Some(wake.namespace.as_str())
                    && o.managed().provider_config_ref.name == wake.config
                    && match wake.cause {
                        Cause::CloudAnswered => was_unreachable(o.managed_status()),
                        Cause::NewCredentials => {
                            status::condition(o.managed_status(), READY).is_none_or(|c| c.status != "True")
                        }
                    }
            })
            .map(|o| ObjectRef::from_obj(&*o))
            .collect();
        futures::stream::iter(refs)
    })
}
