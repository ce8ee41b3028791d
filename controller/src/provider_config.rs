//! Status for ProviderConfigs, so a broken one shows up on itself (and in Flux or Argo CD),
//! not only on the resources that use it.

use std::sync::Arc;
use std::time::Duration;

use cloudkit_crds::ProviderConfig;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::error::Error;
use crate::provider;
use crate::reconcile::{Context, apply_status, now, publish};
use crate::status;

/// A Ready ProviderConfig is re-checked this often, since its Secret is not watched.
const RECHECK: Duration = Duration::from_secs(600);

pub async fn reconcile(config: Arc<ProviderConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = provider::from_config(&ctx.client, &config).await.map(|_| ());
    let failure = result.as_ref().err();
    let old = config.status.as_ref();
    let next = status::provider_config(old, config.meta().generation, result.as_ref().copied(), &now());
    if old != Some(&next) {
        let api: Api<ProviderConfig> = Api::namespaced(ctx.client.clone(), &config.namespace().unwrap_or_default());
        apply_status(&api, &config.name_any(), &next).await?;
        let was = old
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::READY))
            .map(|c| c.reason.as_str());
        if let Some(f) = failure.filter(|f| was != Some(f.reason().as_str())) {
            publish(&ctx, &*config, EventType::Warning, f.reason().as_str(), f.to_string()).await;
        }
    }
    let key = key(&config);
    Ok(match failure {
        None => {
            ctx.backoff.reset(&key);
            Action::requeue(RECHECK)
        }
        Some(failure) => Action::requeue(ctx.backoff.next(&key, failure.retry_after())),
    })
}

pub fn error_policy(config: Arc<ProviderConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = key(&config);
    tracing::warn!(object = %key, error = %err, "ProviderConfig status update failed");
    Action::requeue(ctx.backoff.next(&key, None))
}

fn key(config: &ProviderConfig) -> String {
    format!(
        "ProviderConfig/{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    )
}
