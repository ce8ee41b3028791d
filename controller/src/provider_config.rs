//! ProviderConfigs: their own status, so a broken one shows up on itself (and in Flux or
//! Argo CD), not only on the resources that use it; and a finalizer that keeps one while
//! objects still use it, so deleting a whole stack (`kubectl delete -f stack/`, `kpt live
//! destroy`) does not take away the credentials their cleanup needs.

use std::sync::Arc;
use std::time::Duration;

use cloudkit_crds::ProviderConfig;
use cloudkit_crds::provider_config::ProviderConfigStatus;
use cloudkit_crds::reason::Reason;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};

use crate::error::{Error, Failure};
use crate::provider;
use crate::reconcile::{Context, apply_status, now, publish};
use crate::recovery::{Cause, Recovered};
use crate::secret_watch;
use crate::status;

/// Held while any object in the namespace names the ProviderConfig.
pub const IN_USE: &str = "cloudkit.dev/provider-config-in-use";

/// A Ready ProviderConfig is re-checked this often.
const RECHECK: Duration = Duration::from_secs(600);
/// One that reads a Secret while objects using it are not Ready, this often: one GET per
/// ProviderConfig, which also keeps the Secret cache fresh for every object using it.
const SECRET_RECHECK: Duration = Duration::from_secs(30);

/// How often a deleted ProviderConfig looks again for the objects still using it. It reads
/// the controller's caches only, so this costs no API call.
const USERS_RECHECK: Duration = Duration::from_secs(2);

pub async fn reconcile(config: Arc<ProviderConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<ProviderConfig> = Api::namespaced(ctx.client.clone(), &config.namespace().unwrap_or_default());
    finalizer(&api, IN_USE, config, |event| async {
        match event {
            FinalizerEvent::Apply(config) => check(&api, &config, &ctx).await,
            FinalizerEvent::Cleanup(config) => release(&api, &config, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

pub fn error_policy(config: Arc<ProviderConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    if let Error::Finalizer(inner) = err
        && let finalizer::Error::CleanupFailed(Error::Cleanup(failure)) = inner.as_ref()
    {
        return Action::requeue(failure.retry_after().unwrap_or(USERS_RECHECK));
    }
    let key = key(&config);
    tracing::warn!(object = %key, error = %err, "ProviderConfig reconcile failed");
    Action::requeue(ctx.backoff.next(&key, None))
}

/// Validates the settings and the credentials, and says so in status.
async fn check(api: &Api<ProviderConfig>, config: &ProviderConfig, ctx: &Context) -> Result<Action, Error> {
    // Each check runs after a ProviderConfig appeared or its spec changed: the moment the
    // set of Secrets to watch may have changed.
    ctx.secret_watches.sync(&ctx.provider_configs, None);
    // Afresh unless watched: this check is what keeps a Secret read by GETs from going stale.
    let result = provider::from_config(
        &ctx.client,
        config,
        &ctx.ambient,
        provider::SecretRead::Fresh(&ctx.secrets),
    )
    .await
    .map(|resolved| {
        let namespace = config.namespace().unwrap_or_default();
        if ctx
            .last_resolved
            .remember(&namespace, &config.name_any(), &resolved.ctx)
        {
            let _ = ctx.recovered.send(Recovered {
                namespace,
                config: config.name_any(),
                cause: Cause::NewCredentials,
            });
        }
    });
    let failure = result.as_ref().err();
    write_status(api, config, ctx, failure).await?;
    let key = key(config);
    // A Secret read by GETs (not watched: `--secret-access get`, or its watch not running)
    // is read again every 30 s while objects using it fail, so that a fixed or rotated one
    // reaches them at once. A watched one wakes this check itself when it changes; and when
    // all are Ready nobody waits for it, and an idle controller makes no request.
    let namespace = config.namespace().unwrap_or_default();
    let recheck = match secret_watch::named_secret(config) {
        Some((ns, secret))
            if !ctx.secrets.is_watched(&ns, &secret)
                && (failure.is_some()
                    || ctx
                        .stores
                        .provider_config_has_failing_users(&namespace, &config.name_any())) =>
        {
            SECRET_RECHECK
        }
        _ => RECHECK,
    };
    Ok(match failure {
        None => {
            ctx.backoff.reset(&key);
            Action::requeue(recheck)
        }
        Some(failure) => Action::requeue(ctx.backoff.next(&key, failure.retry_after()).min(recheck)),
    })
}

/// Lets a deleted ProviderConfig go once nothing uses it; until then it stays, Ready=False
/// with `DependentsExist` naming the users, and the objects' own cleanup can still reach
/// their cloud.
async fn release(api: &Api<ProviderConfig>, config: &ProviderConfig, ctx: &Context) -> Result<Action, Error> {
    let users = ctx
        .stores
        .users_of_provider_config(&config.namespace().unwrap_or_default(), &config.name_any());
    if users.is_empty() {
        // Its clients and request budget go with it, so those caches hold only live ones.
        let namespace = config.namespace().unwrap_or_default();
        ctx.clouds.forget(&format!("{namespace}/{}", config.name_any()));
        ctx.secret_watches.sync(&ctx.provider_configs, Some(config));
        return Ok(Action::await_change());
    }
    let failure = Failure::waiting(
        Reason::DependentsExist,
        format!(
            "kept while {} still use it (their deletion needs its credentials); it goes once they are gone",
            users.join(", ")
        ),
        USERS_RECHECK,
    );
    write_status(api, config, ctx, Some(&failure)).await?;
    Err(Error::Cleanup(failure))
}

/// Writes the status `failure` (or its absence) implies when it differs, with a Warning
/// event when the reason is new.
async fn write_status(
    api: &Api<ProviderConfig>,
    config: &ProviderConfig,
    ctx: &Context,
    failure: Option<&Failure>,
) -> Result<(), Error> {
    let old = config.status.as_ref();
    let now = now();
    let mut next = status::provider_config(old, config.meta().generation, failure.map_or(Ok(()), Err), &now);
    let escalated = failure.is_some_and(|f| status::escalate(&mut next, f, &now, ctx.stall_after));
    if old == Some(&next) {
        return Ok(());
    }
    apply_status(api, &config.name_any(), &next).await?;
    let condition = |status: Option<&ProviderConfigStatus>, type_: &str| {
        status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .cloned()
    };
    let was = condition(old, status::READY).map(|c| c.reason);
    if let Some(f) = failure.filter(|f| was.as_deref() != Some(f.reason().as_str())) {
        publish(ctx, config, EventType::Warning, f.reason().as_str(), f.to_string()).await;
    }
    let was_stalled = condition(old, status::STALLED).is_some_and(|c| c.status == "True");
    if escalated && !was_stalled {
        let message = condition(Some(&next), status::STALLED)
            .and_then(|c| c.message)
            .unwrap_or_default();
        publish(ctx, config, EventType::Warning, "Stalled", message).await;
    }
    Ok(())
}

fn key(config: &ProviderConfig) -> String {
    format!(
        "ProviderConfig/{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    )
}
