//! `cloudkit plan --live`: what applying the manifests would do, read from the cluster and
//! the clouds without writing to either. Each object goes through the controller's own
//! judging steps (`crate::decide`: check, desired state from the references, observe,
//! decide), so a plan says what the controller will do, field by field from the same diff.

use cloudkit_crds::reason::Reason;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use cloudkit_crds::{Bucket, DeletionPolicy, Function, ProviderConfig, Queue, Table, Topic};
use cloudkit_reconcilers::Clouds;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use crate::dag::Key;
use crate::decide::{self, Decision};
use crate::error::Failure;
use crate::kinds::ManagedKind;
use crate::plan::{self, Loaded};
use crate::provider;
use crate::references::Stores;

/// What applying one object would do.
enum Change {
    Create {
        name: String,
        target: String,
    },
    /// Created once what it references is Ready; its settings read outputs not known yet.
    CreateAfter {
        name: String,
        target: String,
        waiting: String,
    },
    Update {
        name: String,
        lines: Vec<String>,
        adopt: bool,
    },
    Unchanged {
        name: String,
    },
    /// The object can be applied but the controller will wait (dependency, provisioning).
    Wait {
        why: String,
    },
    /// The controller would stall or fail on it.
    Refused(Failure),
    /// In the cluster, not in the manifests: deleted if the apply prunes.
    Prune {
        name: Option<String>,
        retain: bool,
    },
}

/// The cluster's objects of every kind in these namespaces, with the manifests laid over
/// them as they will be once applied (the manifest's spec, the cluster's status).
struct World {
    /// The controller's `--cluster-name`, which owner tags carry.
    cluster: String,
    stores: Stores,
    live: BTreeMap<Key, Value>,
    configs: BTreeMap<(String, String), ProviderConfig>,
}

/// The change set of the manifests, and whether every object would apply cleanly.
pub async fn change_set(client: &Client, loaded: &Loaded, cluster: &str) -> Result<(String, bool), String> {
    let (graph, problems) = plan::graph_with_problems(loaded);
    let mut out = String::new();
    let Some(waves) = graph.waves().filter(|_| problems.is_empty()) else {
        // A plan of manifests the controller would refuse is their problems.
        return Ok(plan::plan(loaded));
    };
    let namespaces: BTreeSet<String> = loaded.objects.iter().map(|o| o.key.namespace.clone()).collect();
    let world = World::read(client, &namespaces, loaded, cluster).await?;
    let clouds = Clouds::new(Arc::new(|_: &str, _: &str| {}), Arc::new(|_: &str| {}));

    let docs: BTreeMap<&Key, &Value> = loaded
        .objects
        .iter()
        .filter_map(|o| o.doc.as_ref().map(|d| (&o.key, d)))
        .collect();
    let mut changes: Vec<(Key, Change)> = Vec::new();
    for key in waves.iter().flatten() {
        let Some(doc) = docs.get(key) else { continue };
        let change = match key.kind {
            cloudkit_crds::common::Kind::Bucket => judge::<Bucket>(client, &clouds, &world, key, doc).await,
            cloudkit_crds::common::Kind::Table => judge::<Table>(client, &clouds, &world, key, doc).await,
            cloudkit_crds::common::Kind::Queue => judge::<Queue>(client, &clouds, &world, key, doc).await,
            cloudkit_crds::common::Kind::Topic => judge::<Topic>(client, &clouds, &world, key, doc).await,
            cloudkit_crds::common::Kind::Function => judge::<Function>(client, &clouds, &world, key, doc).await,
        };
        changes.push((key.clone(), change));
    }
    // Deletion runs in reverse order, so the objects to prune are listed that way too.
    let mut pruned: Vec<(Key, Change)> = world
        .live
        .iter()
        .filter(|(key, _)| !docs.contains_key(key))
        .map(|(key, live)| {
            let name = live
                .pointer("/status/externalName")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let policy = live
                .pointer("/spec/deletionPolicy")
                .and_then(|p| serde_json::from_value(p.clone()).ok());
            let annotations = live
                .pointer("/metadata/annotations")
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default();
            let retain = crate::identity::deletion_policy(policy, &annotations) == DeletionPolicy::Retain;
            (key.clone(), Change::Prune { name, retain })
        })
        .collect();
    pruned.reverse();
    changes.extend(pruned);

    let _ = writeln!(
        out,
        "Change set (read from the cluster and the clouds; nothing was written):"
    );
    let width = changes.iter().map(|(k, _)| k.to_string().len()).max().unwrap_or(0);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, change) in &changes {
        let (mark, what, detail) = describe(change);
        *counts.entry(what).or_default() += 1;
        let _ = writeln!(out, "{mark} {:width$}  {detail}", key.to_string());
        if let Change::Update { lines, .. } = change {
            for line in lines {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    let summary: Vec<String> = ["create", "update", "unchanged", "wait", "prune", "error"]
        .iter()
        .filter_map(|w| counts.get(w).map(|n| format!("{n} {w}")))
        .collect();
    let _ = writeln!(out, "{}", summary.join(", "));
    let ok = !counts.contains_key("error");
    Ok((out, ok))
}

/// The mark, the summary word and the line for a change.
fn describe(change: &Change) -> (&'static str, &'static str, String) {
    match change {
        Change::Create { name, target } => ("+", "create", format!("create '{name}' on {target}")),
        Change::CreateAfter { name, target, waiting } => (
            "+",
            "create",
            format!("create '{name}' on {target} once what it reads is Ready ({waiting})"),
        ),
        Change::Update { name, adopt: true, .. } => ("~", "update", format!("adopt '{name}' and update:")),
        Change::Update { name, .. } => ("~", "update", format!("update '{name}':")),
        Change::Unchanged { name } => ("=", "unchanged", format!("'{name}' matches the manifest")),
        Change::Wait { why } => ("…", "wait", why.clone()),
        Change::Refused(f) => ("!", "error", format!("{}: {f}", f.reason())),
        Change::Prune { name: None, .. } => ("-", "prune", "not in the manifests; nothing in the cloud".into()),
        Change::Prune {
            name: Some(name),
            retain: true,
        } => (
            "-",
            "prune",
            format!("not in the manifests; if pruned, '{name}' is left in the cloud (Retain)"),
        ),
        Change::Prune {
            name: Some(name),
            retain: false,
        } => (
            "-",
            "prune",
            format!("not in the manifests; if pruned, '{name}' is deleted from the cloud"),
        ),
    }
}

/// Runs one object through the controller's checks and the cloud's observe.
async fn judge<K: ManagedKind>(client: &Client, clouds: &Clouds, world: &World, key: &Key, doc: &Value) -> Change {
    let obj: K = match serde_json::from_value(overlay(world.live.get(key), doc)) {
        Ok(obj) => obj,
        Err(e) => return Change::Refused(Failure::stalled(Reason::InvalidSpec, e.to_string())),
    };
    match judged(client, clouds, world, &obj).await {
        Ok(change) | Err(change) => change,
    }
}

async fn judged<K: ManagedKind>(client: &Client, clouds: &Clouds, world: &World, obj: &K) -> Result<Change, Change> {
    let name = obj.desired_external_name();
    let namespace = obj.namespace().unwrap_or_default();
    let config_name = &obj.managed().provider_config_ref.name;
    let config = world
        .configs
        .get(&(namespace.clone(), config_name.clone()))
        .ok_or_else(|| {
            Change::Refused(Failure::stalled(
                Reason::ProviderConfigNotFound,
                format!("ProviderConfig '{config_name}' is neither among the files nor in namespace '{namespace}'"),
            ))
        })?;
    // The controller's --ambient-credentials-namespaces is not known here: the plan allows them.
    let mut provider = provider::from_config(
        client,
        config,
        &provider::Ambient::Everywhere,
        provider::SecretRead::Uncached,
    )
    .await
    .map_err(Change::Refused)?;
    provider.ctx = obj.placed(&provider.ctx);
    let target = format!("{} {}", provider.ctx.cloud, provider.ctx.region)
        .trim_end()
        .to_owned();
    let recorded = crate::identity::recorded(obj);
    if recorded.is_some() {
        decide::pinned(obj.managed_status(), &provider.ctx.target(), &name, config_name).map_err(Change::Refused)?;
    }
    decide::check(obj, provider.ctx.cloud, &name, recorded.as_deref(), &world.stores).map_err(Change::Refused)?;
    let backend = K::backend(&provider.ctx, clouds)
        .await
        .map_err(|e| Change::Refused(e.into()))?;
    let observed = backend.observe(&name).await.map_err(|e| Change::Refused(e.into()))?;
    let owner = backend.owner_tag(&obj.owner(&world.cluster));
    let mut desired = match decide::desired(obj, &world.stores, &owner) {
        Ok(desired) => desired,
        Err(Failure::Waiting { message, .. }) if observed.is_none() => {
            return Ok(Change::CreateAfter {
                name,
                target,
                waiting: message,
            });
        }
        Err(Failure::Waiting { message, .. }) => {
            return Ok(Change::Wait {
                why: format!("'{name}' exists; what changes is known once: {message}"),
            });
        }
        Err(other) => return Err(Change::Refused(other)),
    };
    if let Some(found) = &observed {
        let applied = crate::shared_maps::applied(obj.annotations());
        crate::shared_maps::keep_foreign(&mut desired, &found.state, applied.as_ref());
    }
    let managed = obj.managed();
    if managed.management_policy == Some(cloudkit_crds::ManagementPolicy::ObserveOnly) {
        // Never written to: the controller only reads it.
        return Ok(match observed {
            Some(_) => Change::Unchanged { name },
            None => Change::Refused(Failure::stalled(
                Reason::ExternalResourceMissing,
                format!("'{name}' does not exist, and managementPolicy: ObserveOnly never creates it"),
            )),
        });
    }
    let policy = managed.drift_policy.or(provider.drift_policy).unwrap_or_default();
    let adopt = managed.external_name.is_some();
    let decision = decide::decide(
        observed.as_ref(),
        &desired,
        &name,
        recorded.is_some(),
        adopt,
        backend.immutable(),
        backend.unobserved(),
        &owner,
    );
    let existed = recorded.is_some() && crate::identity::existed(obj);
    if let Ok(decision) = &decision {
        decide::vanished(decision, existed, policy, &name).map_err(Change::Refused)?;
    }
    Ok(match decision {
        Ok(Decision::Create) => Change::Create { name, target },
        Ok(Decision::Converge { diffs, .. }) if diffs.is_empty() => Change::Unchanged { name },
        // Drift the policy leaves in the cloud: applying the manifest changes nothing.
        Ok(Decision::Converge { diffs, .. })
            if decide::drift(obj.managed_status(), obj.meta().generation, &diffs, false, policy).left =>
        {
            Change::Unchanged { name }
        }
        Ok(Decision::Converge { diffs, adopting }) => Change::Update {
            name,
            lines: diffs
                .iter()
                .map(|d| format!("{}: {} → {}", d.path, d.observed, d.desired))
                .collect(),
            adopt: adopting,
        },
        Err(Failure::Waiting { message, .. }) => Change::Wait { why: message },
        Err(refused) => Change::Refused(refused),
    })
}

impl World {
    async fn read(
        client: &Client,
        namespaces: &BTreeSet<String>,
        loaded: &Loaded,
        cluster: &str,
    ) -> Result<Self, String> {
        let mut live = BTreeMap::new();
        let mut configs = BTreeMap::new();
        for namespace in namespaces {
            let api: Api<ProviderConfig> = Api::namespaced(client.clone(), namespace);
            let list = api
                .list(&Default::default())
                .await
                .map_err(|e| format!("listing ProviderConfigs in namespace '{namespace}': {e}"))?;
            for pc in list.items {
                configs.insert((namespace.clone(), pc.name_any()), pc);
            }
        }
        // What the files hold is what the cluster will hold.
        for pc in &loaded.configs {
            configs.insert((pc.namespace().unwrap_or_default(), pc.name_any()), pc.clone());
        }
        let docs: BTreeMap<Key, Value> = loaded
            .objects
            .iter()
            .filter_map(|o| o.doc.clone().map(|d| (o.key.clone(), d)))
            .collect();
        let stores = Stores::new(
            layer::<Bucket>(client, namespaces, &docs, &mut live).await?,
            layer::<Table>(client, namespaces, &docs, &mut live).await?,
            layer::<Queue>(client, namespaces, &docs, &mut live).await?,
            layer::<Topic>(client, namespaces, &docs, &mut live).await?,
            layer::<Function>(client, namespaces, &docs, &mut live).await?,
        );
        Ok(Self {
            cluster: cluster.to_owned(),
            stores,
            live,
            configs,
        })
    }
}

/// The manifest as the cluster will hold it: its spec, with the live object's status and
/// generation, so that the controller's checks see what they will see after the apply.
fn overlay(live: Option<&Value>, doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(live) = live
        && let Some(object) = doc.as_object_mut()
    {
        if let Some(status) = live.get("status") {
            object.insert("status".into(), status.clone());
        }
        if let (Some(generation), Some(meta)) = (
            live.pointer("/metadata/generation"),
            object.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("generation".into(), generation.clone());
        }
        // The controller's own records (which resource is ours, which tags it manages) are
        // on the live object, never in a manifest.
        let records: serde_json::Map<String, Value> = live
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.starts_with("cloudkit.dev/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !records.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.extend(records);
            }
        }
    }
    doc
}

/// A store of one kind: the cluster's objects, each manifest laid over its live copy.
async fn layer<K: ManagedKind>(
    client: &Client,
    namespaces: &BTreeSet<String>,
    docs: &BTreeMap<Key, Value>,
    live: &mut BTreeMap<Key, Value>,
) -> Result<Store<K>, String> {
    let (store, mut writer) = reflector::store::<K>();
    for namespace in namespaces {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| format!("listing {}s in namespace '{namespace}': {e}", K::KIND))?;
        for obj in list.items {
            let key = Key {
                kind: K::KIND,
                namespace: namespace.clone(),
                name: obj.name_any(),
            };
            let value = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
            live.insert(key, value);
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
    }
    for (key, doc) in docs.iter().filter(|(k, _)| k.kind == K::KIND) {
        let obj: K = serde_json::from_value(overlay(live.get(key), doc)).map_err(|e| format!("{key}: {e}"))?;
        writer.apply_watcher_event(&watcher::Event::Apply(obj));
    }
    Ok(store)
}
