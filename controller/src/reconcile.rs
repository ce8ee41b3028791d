//! The one reconcile loop every kind runs: resolve the ProviderConfig, validate, observe,
//! create or update from one diff, write status only when it changed, delete on cleanup.

use cloudkit_crds::reason::Reason;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudkit_crds::common::FieldDrift;
use cloudkit_crds::provider_config::ProviderConfig;
use cloudkit_crds::{DeletionPolicy, DriftPolicy, ManagedStatus, ManagementPolicy};
use cloudkit_drift::FieldDiff;
use cloudkit_reconcilers::rate_budget::Admission;
use cloudkit_reconcilers::{Clouds, Outputs, SharedMaps, Tagged};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::dag::Key;
use crate::decide::{self, Decision};
use crate::error::{Error, Failure};
use crate::kinds::ManagedKind;
use crate::metrics::Metrics;
use crate::references::{self, Stores};
use crate::status::{self, Outcome, READY, STALLED};
use crate::{connection_secret, finalizer, identity, provider, recovery, resync, shared_maps};

/// Bounds a whole reconcile. Each cloud call has its own timeouts (60 s an operation on AWS)
/// and a reconcile makes a handful, so this is only reached by a hang nothing else bounds;
/// then the worker is freed, and what was cut short is settled by the next run, as after a
/// crash (tests/e2e/tests/crash.rs).
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(300);
const FIELD_MANAGER: &str = "cloudkit";

pub struct Context {
    pub client: Client,
    pub clouds: Clouds,
    pub provider_configs: Store<ProviderConfig>,
    pub recorder: crate::events::Recorder,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    pub stores: Stores,
    /// How long a generation may fail for reasons that usually heal before it is reported
    /// Stalled (`--stall-after`).
    pub stall_after: Duration,
    /// The shortest resync interval any ProviderConfig gets (`--min-resync-interval`).
    pub min_resync: Duration,
    /// Workers resyncs may take, so watch-triggered work is not queued behind them.
    pub resync_slots: Arc<resync::Slots>,
    /// Where ProviderConfigs may use the controller's own credentials.
    pub ambient: provider::Ambient,
    /// What each ProviderConfig resolved to last, for cleanup after its Secret is gone.
    pub last_resolved: provider::LastResolved,
    /// Credentials Secrets as last read or watched (provider::SecretCache).
    pub secrets: Arc<provider::SecretCache>,
    /// The watches that keep `secrets` current.
    pub secret_watches: crate::secret_watch::SecretWatches,
    /// This cluster's name in owner tags (`--cluster-name`).
    pub cluster: String,
    /// Told when a cloud answers an object that it had not answered before.
    pub recovered: tokio::sync::broadcast::Sender<recovery::Recovered>,
}

/// What a successful sync did.
struct Synced {
    outputs: Outputs,
    drift: Vec<FieldDrift>,
    /// The drift is left in the cloud (`driftPolicy: Report`).
    drifted: bool,
    changed: bool,
    resync: Duration,
    region: String,
    /// `ProviderContext::target`, recorded in `status.provider`.
    provider: String,
}

pub async fn reconcile<K: ManagedKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Held to the end, like the budget's admission below.
    let _slot = if in_sync(&*obj) {
        match ctx.resync_slots.take(K::KIND.as_str()) {
            Ok(slot) => Some(slot),
            Err(wait) => return Ok(Action::requeue(wait)),
        }
    } else {
        None
    };
    // Held to the end: what the budget reserved for this reconcile is released on drop.
    let _admission = match admit(&*obj, &ctx) {
        Ok(admission) => admission,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    let started = Instant::now();
    ctx.metrics.reconcile_started(&references::object_id(&Key {
        kind: K::KIND,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let reconciled = async {
        if obj.meta().deletion_timestamp.is_none() {
            // The finalizer is added on the way, before anything is made (see finalizer.rs).
            return apply(&api, &obj, &ctx).await;
        }
        if !finalizer::holds(&*obj) {
            // Nothing of ours to clean up; other finalizers are for others to release.
            return Ok(Action::await_change());
        }
        let action = cleanup(&api, &obj, &ctx).await?;
        finalizer::release(&api, &*obj).await?;
        Ok(action)
    };
    let result = match tokio::time::timeout(RECONCILE_TIMEOUT, reconciled).await {
        Ok(result) => result,
        Err(_) => Err(Error::TimedOut(RECONCILE_TIMEOUT)),
    };
    ctx.metrics.reconciled(&K::kind(&()), started.elapsed());
    result
}

/// Whether the object is Ready at its generation and not being deleted: run now, it is a
/// resync (or a ProviderConfig change) and may wait behind what the watches bring.
fn in_sync<K: ManagedKind>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_none()
        && obj.managed_status().is_some_and(|s| {
            s.observed_generation == obj.meta().generation
                && status::condition(Some(s), READY).is_some_and(|c| c.status == "True")
        })
}

/// Asks the ProviderConfig's request budget (see rate_budget) for room for one reconcile;
/// when it has none, says when to come back. Status is left as it is: being put off is
/// neither progress nor failure, and writing it would cost the apiserver what the cloud saved.
fn admit<K: ManagedKind>(obj: &K, ctx: &Context) -> Result<Admission, Duration> {
    let config = format!(
        "{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.managed().provider_config_ref.name
    );
    // No budget yet: no request was ever made with this ProviderConfig.
    let Some(budget) = ctx.clouds.budgets.get(&config) else {
        return Ok(Admission::free());
    };
    budget.admit().inspect_err(|wait| {
        ctx.metrics.budget_waited(&config, *wait);
        debug!(kind = %K::kind(&()), object = %key(obj), provider_config = %config, ?wait,
            "put off: the ProviderConfig's request budget is spent");
    })
}

pub fn error_policy<K: ManagedKind>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let at_least = match err {
        Error::Cleanup(failure) => failure.retry_after(),
        _ => None,
    };
    let delay = ctx.backoff.next(&backoff_key(&*obj), at_least);
    warn!(kind = %K::kind(&()), object = %key(&*obj), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    key(obj)
}

fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// An object's backoff is kept by UID, not name: an object deleted and made again under the
/// same name starts afresh, and its entry is dropped when the watch sees it go.
pub fn backoff_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_else(|| key(obj))
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn apply<K: ManagedKind>(api: &Api<K>, obj: &K, ctx: &Context) -> Result<Action, Error> {
    let name = obj.desired_external_name();
    let generation = obj.meta().generation;
    // The status as last written; sync may record the external name before creating.
    let mut current = obj.managed_status().cloned();
    match sync(api, obj, ctx, &name, &mut current).await {
        Ok(synced) => {
            ctx.backoff.reset(&backoff_key(obj));
            if recovery::was_unreachable(current.as_ref()) {
                // Its neighbours on the same ProviderConfig need not wait out their backoff.
                let _ = ctx.recovered.send(recovery::Recovered {
                    namespace: obj.namespace().unwrap_or_default(),
                    config: obj.managed().provider_config_ref.name.clone(),
                    cause: recovery::Cause::CloudAnswered,
                });
            }
            let outcome = Outcome::InSync {
                outputs: &synced.outputs,
                drift: synced.drift,
                drifted: synced.drifted,
                changed: synced.changed,
            };
            let mut next = status::next(current.as_ref(), generation, &name, &outcome, &now());
            next.provider = Some(synced.provider);
            let drifted = status::condition(Some(&next), status::DRIFTED).is_some_and(|c| c.status == "True");
            ctx.metrics.set_drifted(&key(obj), drifted);
            if current.as_ref() != Some(&next)
                && let Err(failure) = write_connection_secret(ctx, obj, &next, &synced.region).await
            {
                // Ready only once the applications' Secret holds the outputs too.
                report_failure(api, obj, ctx, &name, &failure, &mut current).await?;
                return Ok(Action::requeue(ctx.backoff.next(&backoff_key(obj), None)));
            }
            write_status(api, obj, &mut current, next).await?;
            // On the object's own phase of the interval: see resync.rs.
            let interval = synced.resync.max(ctx.min_resync);
            Ok(Action::requeue(resync::next(&backoff_key(obj), interval)))
        }
        Err(failure) => {
            if !matches!(failure, Failure::Waiting { .. }) {
                // Perhaps the credentials changed: the retry reads them again.
                ctx.secrets.forget_namespace(&obj.namespace().unwrap_or_default());
            }
            report_failure(api, obj, ctx, &name, &failure, &mut current).await?;
            let delay = match &failure {
                // Nothing failed: look again soon, and keep the backoff for real errors.
                Failure::Waiting { after, .. } => *after,
                _ => ctx.backoff.next(&backoff_key(obj), failure.retry_after()),
            };
            Ok(Action::requeue(delay))
        }
    }
}

/// Brings the cloud resource in line with the manifest. Every error is a Failure for status.
async fn sync<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    name: &str,
    current: &mut Option<ManagedStatus>,
) -> Result<Synced, Failure> {
    let managed = obj.managed();
    let namespace = obj.namespace().unwrap_or_default();
    let config_name = &managed.provider_config_ref.name;
    let mut provider = provider::resolve(
        &ctx.client,
        &ctx.provider_configs,
        &ctx.secrets,
        &namespace,
        config_name,
        &ctx.ambient,
    )
    .await?;
    // Remembered as the ProviderConfig has it; placed for this object after.
    if ctx.last_resolved.remember(&namespace, config_name, &provider.ctx) {
        let _ = ctx.recovered.send(recovery::Recovered {
            namespace: namespace.clone(),
            config: config_name.clone(),
            cause: recovery::Cause::NewCredentials,
        });
    }
    provider.ctx = obj.placed(&provider.ctx);
    let cloud = provider.ctx.cloud;

    let mut recorded = identity::recorded(obj);
    let target = provider.ctx.target();
    if recorded.is_some() {
        decide::pinned(current.as_ref(), &target, name, config_name)?;
    }
    decide::check(obj, cloud, name, recorded.as_deref(), &ctx.stores)?;
    // The backend first: a kind this cloud cannot serve is answered before any wait.
    let backend = K::backend(&provider.ctx, &ctx.clouds).await?;
    let owner = backend.owner_tag(&obj.owner(&ctx.cluster));
    let mut desired = decide::desired(obj, &ctx.stores, &owner)?;
    let requested = desired.shared_keys();
    let applied_keys = shared_maps::applied(obj.annotations());
    let adopt = managed.external_name.is_some();
    let mut created = false;
    // Whether this reconcile already wrote the managed keys (with the create's record).
    let mut keys_recorded = false;
    let mut observed = backend.observe(name).await?;
    if let Some(found) = &observed {
        shared_maps::keep_foreign(&mut desired, &found.state, applied_keys.as_ref());
    }
    if managed.management_policy == Some(ManagementPolicy::ObserveOnly) {
        // Nothing is deleted on cleanup, but the connection Secret is.
        finalizer::ensure(api, obj).await?;
        let seen = Seen {
            name,
            cloud: cloud.as_str(),
            owner: &owner,
            current: current.as_ref(),
            unobserved: backend.unobserved(),
        };
        let (outputs, drift) = observe_only(api, obj, ctx, &seen, observed, desired).await?;
        return Ok(Synced {
            outputs,
            drifted: !drift.is_empty(),
            drift,
            changed: false,
            resync: provider.resync,
            region: provider.ctx.region,
            provider: target,
        });
    }
    if recorded.is_none() && observed.is_some() && !adopt {
        // Found, and nothing here says it is ours: before calling it someone else's, read
        // the object itself, as the cache may not have seen our own record yet (a retry
        // right after a create).
        let fresh = api.get(&obj.name_any()).await.map_err(|e| Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("reading the object before deciding whose '{name}' is: {e}"),
            after: None,
        })?;
        recorded = identity::recorded(&fresh);
        if recorded.is_some() {
            *current = fresh.managed_status().cloned();
        }
    }
    let mut decision = decide::decide(
        observed.as_ref(),
        &desired,
        name,
        recorded.is_some(),
        adopt,
        backend.immutable(),
        backend.unobserved(),
        &owner,
    )?;
    let policy = managed.drift_policy.or(provider.drift_policy).unwrap_or_default();
    let vanished = decide::vanished(&decision, recorded.is_some() && identity::existed(obj), policy, name)?;
    let first_create = decision == Decision::Create && recorded.is_none();
    if !first_create {
        // A new object's first create adds it with the external name, in one write.
        finalizer::ensure(api, obj).await?;
    }
    if decision == Decision::Create {
        if first_create {
            // The keys are recorded as managed before the create applies them: a create
            // that fails leaves a record of keys on nothing, which nothing reads.
            identity::record_before_create(api, obj, name, &now(), shared_maps::annotations(&requested)).await?;
            keys_recorded = true;
            let mut creating = status::next(
                current.as_ref(),
                obj.meta().generation,
                name,
                &Outcome::Creating,
                &now(),
            );
            creating.provider = Some(target.clone());
            write_status(api, obj, current, creating)
                .await
                .map_err(|e| Failure::Retrying {
                    reason: Reason::KubernetesError,
                    message: format!("recording the external name before creating: {e}"),
                    after: None,
                })?;
        }
        if let Err(e) = backend.create(name, &desired).await {
            // A refused create made nothing: forget the name, so that the user may pick
            // another and a delete does not touch a resource that is not ours.
            if !e.is_retryable() {
                if let Some(s) = current.as_mut() {
                    s.external_name = None;
                }
                identity::refused(api, obj, &now()).await?;
            }
            return Err(e.into());
        }
        created = true;
        identity::created(api, obj, &now()).await?;
        let (reason, note) = if vanished {
            (
                "Recreated",
                format!("'{name}' was deleted outside CloudKit; created it again"),
            )
        } else {
            ("Created", format!("created '{name}'"))
        };
        info!(kind = %K::kind(&()), object = %key(obj), "{note}");
        publish(ctx, obj, EventType::Normal, reason, note).await;
        observed = Some(backend.observe(name).await?.ok_or_else(|| Failure::Retrying {
            reason: Reason::ProviderError,
            message: format!("'{name}' was created but is not visible yet"),
            after: Some(Duration::from_secs(2)),
        })?);
        if let Some(found) = &observed {
            // Tags the cloud itself put on the new resource are not ours to remove.
            shared_maps::keep_foreign(&mut desired, &found.state, Some(&requested));
        }
        decision = decide::decide(
            observed.as_ref(),
            &desired,
            name,
            true,
            adopt,
            backend.immutable(),
            backend.unobserved(),
            &owner,
        )?;
    }
    let (Decision::Converge { diffs, adopting }, Some(observed)) = (decision, observed) else {
        return Err(Failure::stalled(
            Reason::InternalError,
            format!("'{name}' was neither found nor created"),
        ));
    };
    let decide::Drift {
        found: is_drift,
        left: leave,
    } = decide::drift(current.as_ref(), obj.meta().generation, &diffs, created, policy);
    let mut outputs = observed.outputs;
    if !diffs.is_empty() && !leave {
        backend.update(name, &desired, &diffs).await?;
        if backend.settles_async() {
            let after = backend.observe(name).await?.ok_or_else(|| Failure::Retrying {
                reason: Reason::ProviderError,
                message: format!("'{name}' disappeared while being updated"),
                after: None,
            })?;
            if let Some(pending) = &after.pending {
                return Err(decide::provisioning(name, pending));
            }
            // Clouds that take one change at a time converge over several rounds.
            let left = decide::diff(&desired, &after.state, backend.unobserved())?;
            if !left.is_empty() {
                let fields: Vec<&str> = left.iter().map(|d| d.path.as_str()).collect();
                return Err(decide::provisioning(
                    name,
                    &format!("still to apply: {}", fields.join(", ")),
                ));
            }
            outputs = after.outputs;
        }
    }
    let drift: Vec<FieldDrift> = if is_drift && policy != DriftPolicy::Ignore {
        diffs.iter().map(field_drift).collect()
    } else {
        Vec::new()
    };
    // Left drift is reported when it differs from what status already says.
    let news = !drift.is_empty() && (!leave || current.as_ref().is_none_or(|s| !status::same_drift(&s.drift, &drift)));
    if news {
        ctx.metrics.drift_detected(&K::kind(&()), provider.ctx.cloud.as_str());
    }
    let adopted = adopting && !created;

    let mut top_level: Vec<&str> = diffs
        .iter()
        .map(|d| d.path.split('.').next().unwrap_or_default())
        .collect();
    top_level.dedup();
    let set = if top_level.is_empty() {
        String::new()
    } else {
        format!(" and set {}", top_level.join(", "))
    };
    let (reason, note) = if created {
        // Announced when the create call succeeded.
        ("", String::new())
    } else if adopted {
        let kept = match managed.deletion_policy {
            Some(DeletionPolicy::Delete) => "; it is deleted with this object (deletionPolicy: Delete)",
            _ => "; it stays in the cloud when this object is deleted (set spec.deletionPolicy: Delete to change that)",
        };
        ("Adopted", format!("adopted existing '{name}'{set}{kept}"))
    } else if leave {
        if news {
            (
                "DriftDetected",
                format!(
                    "'{name}' was changed outside CloudKit; left as is (driftPolicy: Report): {}",
                    describe(&diffs)
                ),
            )
        } else {
            ("", String::new())
        }
    } else if !drift.is_empty() {
        (
            "DriftCorrected",
            format!("'{name}' was changed outside CloudKit; set back: {}", describe(&diffs)),
        )
    } else if !diffs.is_empty() {
        ("Updated", format!("updated {} on '{name}'", top_level.join(", ")))
    } else {
        ("", String::new())
    };
    if !reason.is_empty() {
        info!(kind = %K::kind(&()), object = %key(obj), %note, "{reason}");
        publish(ctx, obj, EventType::Normal, reason, note).await;
    }
    if !keys_recorded {
        shared_maps::record(api, obj, &requested).await?;
    }
    if adopted {
        identity::adopted(api, obj, name, &now()).await?;
    } else if !created {
        if obj.annotations().contains_key(identity::CREATE_PENDING) {
            // The create's answer was lost (a crash after the call): the resource is there.
            identity::created(api, obj, &now()).await?;
        } else if !obj.annotations().contains_key(identity::EXTERNAL_NAME) {
            identity::remember(api, obj, name).await?;
        }
    }
    Ok(Synced {
        outputs,
        drift,
        drifted: leave && policy == DriftPolicy::Report,
        changed: created || adopted || (!diffs.is_empty() && !leave),
        resync: provider.resync,
        region: provider.ctx.region,
        provider: target,
    })
}

/// `managementPolicy: ObserveOnly`: the resource's outputs, and how it differs from the
/// manifest, reported and left. Nothing is written to the cloud: no create, no update, not
/// even the owner tag.
async fn observe_only<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    seen: &Seen<'_>,
    observed: Option<cloudkit_reconcilers::Observed<K::State>>,
    mut desired: K::State,
) -> Result<(Outputs, Vec<FieldDrift>), Failure> {
    let Seen {
        name,
        cloud,
        owner,
        current,
        ..
    } = *seen;
    let Some(found) = observed else {
        return Err(Failure::stalled(
            Reason::ExternalResourceMissing,
            format!(
                "'{name}' does not exist, and managementPolicy: ObserveOnly never creates: create it \
                 elsewhere, name an existing one in spec.externalName, or set managementPolicy: Full"
            ),
        ));
    };
    if let Some(pending) = &found.pending {
        return Err(decide::provisioning(name, pending));
    }
    // The owner tag is not ours to add here; whatever the resource carries is left as is.
    match found.state.tags().get(&owner.key) {
        Some(value) => desired.tags_mut().insert(owner.key.clone(), value.clone()),
        None => desired.tags_mut().remove(&owner.key),
    };
    let diffs = decide::diff(&desired, &found.state, seen.unobserved)?;
    let drift: Vec<FieldDrift> = diffs.iter().map(field_drift).collect();
    if !drift.is_empty() && current.is_none_or(|s| !status::same_drift(&s.drift, &drift)) {
        ctx.metrics.drift_detected(&K::kind(&()), cloud);
        publish(
            ctx,
            obj,
            EventType::Normal,
            "DriftDetected",
            format!(
                "'{name}' differs from the manifest; left as is (managementPolicy: ObserveOnly): {}",
                describe(&diffs)
            ),
        )
        .await;
    }
    if !obj.annotations().contains_key(identity::ADOPTED) {
        // Someone else's resource: should the policy become Full, it is kept on delete
        // unless the manifest says otherwise, as any adopted resource.
        identity::adopted(api, obj, name, &now()).await?;
    }
    Ok((found.outputs, drift))
}

/// What `observe_only` reports against.
#[derive(Clone, Copy)]
struct Seen<'a> {
    name: &'a str,
    cloud: &'a str,
    owner: &'a cloudkit_reconcilers::OwnerTag,
    current: Option<&'a ManagedStatus>,
    /// Fields the cloud does not store (`ExternalResource::unobserved`).
    unobserved: &'a [&'a str],
}

/// Writes the outputs into the Secret the spec names, if it names one.
async fn write_connection_secret<K: ManagedKind>(
    ctx: &Context,
    obj: &K,
    status: &ManagedStatus,
    region: &str,
) -> Result<(), Failure> {
    let Some(secret) = &obj.managed().write_connection_secret_to_ref else {
        return Ok(());
    };
    connection_secret::write(&ctx.client, obj, &secret.name, connection_secret::data(status, region))
        .await
        .map_err(|e| Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("writing connection Secret '{}': {e}", secret.name),
            after: None,
        })
}

async fn cleanup<K: ManagedKind>(api: &Api<K>, obj: &K, ctx: &Context) -> Result<Action, Error> {
    let managed = obj.managed();
    let namespace = obj.namespace().unwrap_or_default();
    if let Some(secret) = &managed.write_connection_secret_to_ref
        && let Err(e) = connection_secret::delete(&ctx.client, &namespace, &secret.name).await
    {
        let failure = Failure::Retrying {
            reason: Reason::KubernetesError,
            message: format!("deleting connection Secret '{}': {e}", secret.name),
            after: None,
        };
        return Err(Error::Cleanup(failure));
    }
    // Only a recorded name is ours: it is written before any create call.
    let Some(name) = identity::recorded(obj) else {
        return Ok(Action::await_change());
    };
    let observe_only = managed.management_policy == Some(ManagementPolicy::ObserveOnly);
    if observe_only || identity::deletion_policy(managed.deletion_policy, obj.annotations()) == DeletionPolicy::Retain {
        publish(
            ctx,
            obj,
            EventType::Normal,
            "Retained",
            match managed.deletion_policy {
                _ if observe_only => format!("left '{name}' in the cloud (managementPolicy: ObserveOnly)"),
                Some(_) => format!("left '{name}' in the cloud (deletionPolicy: Retain)"),
                None => format!("left '{name}' in the cloud: it was adopted, and spec.deletionPolicy is unset"),
            },
        )
        .await;
        return Ok(Action::await_change());
    }
    // Reverse order: what others still read from stays until they are gone.
    let users = ctx.stores.referrers(K::KIND, &namespace, &obj.name_any());
    if !users.is_empty() && ctx.stores.cycle(K::KIND, &namespace, &obj.name_any()).is_none() {
        let failure = Failure::waiting(
            Reason::DependentsExist,
            format!(
                "'{name}' is kept while {} still reference it: delete them first or remove the references \
                 (or set spec.deletionPolicy: Retain to release it now)",
                users.join(", ")
            ),
            references::DEPENDENCY_RECHECK,
        );
        report_failure(api, obj, ctx, &name, &failure, &mut obj.managed_status().cloned()).await?;
        return Err(Error::Cleanup(failure));
    }
    let result = async {
        let config_name = &managed.provider_config_ref.name;
        let provider = match provider::resolve(
            &ctx.client,
            &ctx.provider_configs,
            &ctx.secrets,
            &namespace,
            config_name,
            &ctx.ambient,
        )
        .await
        {
            Ok(provider) => obj.placed(&provider.ctx),
            Err(failure) => {
                let last = ctx.last_resolved.instead_of(&namespace, config_name, &failure);
                let Some(last) = last else { return Err(failure) };
                info!(kind = %K::kind(&()), object = %key(obj),
                    "deleting '{name}' with the credentials ProviderConfig '{config_name}' last had: {failure}");
                obj.placed(&last)
            }
        };
        decide::pinned(obj.managed_status(), &provider.target(), &name, config_name)?;
        let backend = K::backend(&provider, &ctx.clouds).await?;
        backend.delete(&name).await?;
        // Delete, then observe until gone: a cloud that deletes in the background is not
        // reported done while the resource (and its name) still exists.
        if backend.settles_async() {
            decide::gone(backend.observe(&name).await?.as_ref(), &name)?;
        }
        Ok::<(), Failure>(())
    }
    .await;
    match result {
        Ok(()) => {
            ctx.backoff.reset(&backoff_key(obj));
            ctx.metrics.set_drifted(&key(obj), false);
            info!(kind = %K::kind(&()), object = %key(obj), "deleted '{name}'");
            publish(ctx, obj, EventType::Normal, "Deleted", format!("deleted '{name}'")).await;
            Ok(Action::await_change())
        }
        Err(failure) => {
            let failure = match failure {
                Failure::Stalled { reason, message } => Failure::Stalled {
                    reason,
                    message: format!(
                        "cannot delete '{name}': {message}; or set spec.deletionPolicy: Retain to keep it"
                    ),
                },
                retrying => retrying,
            };
            report_failure(api, obj, ctx, &name, &failure, &mut obj.managed_status().cloned()).await?;
            Err(Error::Cleanup(failure))
        }
    }
}

/// Writes a failure into status and, when it is news, into an Event.
async fn report_failure<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    name: &str,
    failure: &Failure,
    current: &mut Option<ManagedStatus>,
) -> Result<(), Error> {
    ctx.metrics.failed(&K::kind(&()), failure.reason().as_str());
    let is_news = status::condition(current.as_ref(), READY).is_none_or(|c| {
        c.reason != failure.reason().as_str() || c.message.as_deref() != Some(failure.to_string().as_str())
    });
    if is_news {
        let type_ = if let Failure::Waiting { .. } = failure {
            info!(kind = %K::kind(&()), object = %key(obj), reason = failure.reason().as_str(), "{failure}");
            EventType::Normal
        } else {
            warn!(kind = %K::kind(&()), object = %key(obj), reason = failure.reason().as_str(), "{failure}");
            EventType::Warning
        };
        publish(ctx, obj, type_, failure.reason().as_str(), failure.to_string()).await;
    }
    let now = now();
    let mut next = status::next(
        current.as_ref(),
        obj.meta().generation,
        name,
        &Outcome::Failed(failure),
        &now,
    );
    let was_stalled = status::condition(current.as_ref(), STALLED).is_some_and(|c| c.status == "True");
    if status::escalate(&mut next, failure, &now, ctx.stall_after) && !was_stalled {
        let message = status::condition(Some(&next), STALLED)
            .and_then(|c| c.message.clone())
            .unwrap_or_default();
        warn!(kind = %K::kind(&()), object = %key(obj), reason = failure.reason().as_str(), "stalled: {message}");
        publish(ctx, obj, EventType::Warning, "Stalled", message).await;
    }
    write_status(api, obj, current, next).await
}

/// Server-side applies the status, and only when it differs from the last one written.
async fn write_status<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    current: &mut Option<ManagedStatus>,
    status: ManagedStatus,
) -> Result<(), Error> {
    if current.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(api, &obj.name_any(), &status).await?;
    *current = Some(status);
    Ok(())
}

/// Server-side applies `status` as the controller's field manager: fields it no longer
/// sets are removed, which a merge patch would leave behind.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(object = %key(obj), error = %e, "could not publish event");
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn field_drift(d: &FieldDiff) -> FieldDrift {
    FieldDrift {
        detected_at: None,
        field: d.path.clone(),
        desired: d.desired.to_string(),
        observed: d.observed.to_string(),
    }
}

fn describe(diffs: &[FieldDiff]) -> String {
    diffs
        .iter()
        .map(|d| format!("{} (wanted {}, found {})", d.path, d.desired, d.observed))
        .collect::<Vec<_>>()
        .join(", ")
}
