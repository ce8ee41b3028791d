#![forbid(unsafe_code)]
//! `cloudkit`: the CloudKit controller and its tools.

mod backoff;
mod change_set;
mod connection_secret;
mod dag;
mod decide;
mod drift_report;
mod error;
mod events;
mod finalizer;
mod identity;
mod kinds;
mod leader;
mod metrics;
mod plan;
mod provider;
mod provider_config;
mod reconcile;
mod recovery;
mod references;
mod resync;
mod secret_watch;
mod shared_maps;
mod status;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cloudkit_crds::{Bucket, Function, ProviderConfig, Queue, Table, Topic};
use cloudkit_reconcilers::Clouds;
use futures::{StreamExt, TryStreamExt};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::broadcast;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::backoff::Backoff;
use crate::kinds::ManagedKind;
use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::references::{Signal, Stores};

/// CloudKit: one Kubernetes API for buckets, tables, queues, topics and functions on AWS,
/// Azure and GCP.
#[derive(Parser)]
#[command(name = "cloudkit", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: watch CloudKit resources and make the clouds match them.
    ///
    /// Connects to Kubernetes like kubectl does (in-cluster service account, else
    /// KUBECONFIG or ~/.kube/config). Log level comes from RUST_LOG (default `info`).
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML, e.g. `cloudkit crds | kubectl apply -f -`.
    Crds,
    /// Check manifests offline and print the order they would be created in.
    ///
    /// Runs the controller's own spec checks on every CloudKit object in the files, checks
    /// that each reference names an object among them, finds cycles, and prints the
    /// creation order in waves (deletion goes in reverse). Exit code 1 when anything is
    /// wrong, with each problem named by file, object and field.
    ///
    /// With `--live`, reads the cluster KUBECONFIG names and the clouds (never writing to
    /// either) and prints the change set: what would be created, updated field by field,
    /// left alone, kept waiting, refused, or pruned.
    Plan(ManifestArgs),
    /// List the objects whose cloud resources were changed outside CloudKit and left so
    /// (`driftPolicy: Report`), field by field, from the cluster KUBECONFIG names.
    ///
    /// Exit code 2 when any object has drift, 0 when none, 1 on error.
    Drift {
        /// Namespace to read; all namespaces when omitted.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = drift_report::Format::Table)]
        output: drift_report::Format,
    },
    /// Print the dependency graph of manifests: `text`, Graphviz `dot` or `mermaid`.
    ///
    /// With `-f`, of manifests offline; without, of a namespace of the cluster KUBECONFIG
    /// names, each object marked Ready or not.
    Graph {
        /// Manifest files or directories; omit to read the cluster.
        #[arg(short = 'f', long = "filename")]
        files: Vec<std::path::PathBuf>,
        /// Namespace to read from the cluster, or of manifest objects that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(long, value_enum, default_value_t = plan::GraphFormat::Text)]
        format: plan::GraphFormat,
    },
}

#[derive(clap::Args)]
struct ManifestArgs {
    /// Manifest files or directories (their .yaml and .yml files, recursively).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<std::path::PathBuf>,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Cloud for objects whose ProviderConfig is not among the files.
    #[arg(long, value_enum, conflicts_with = "live")]
    provider: Option<CloudArg>,
    /// Compare with the cluster and the clouds: print the change set.
    #[arg(long)]
    live: bool,
    /// The controller's `--cluster-name`, which its owner tags carry (with `--live`).
    #[arg(long, env = "CLOUDKIT_CLUSTER_NAME", default_value = "default", value_parser = parse_cluster_name)]
    cluster_name: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum CloudArg {
    Aws,
    Azure,
    Gcp,
}

impl From<CloudArg> for cloudkit_crds::Cloud {
    fn from(c: CloudArg) -> Self {
        match c {
            CloudArg::Aws => Self::Aws,
            CloudArg::Azure => Self::Azure,
            CloudArg::Gcp => Self::Gcp,
        }
    }
}

/// The objects `cloudkit graph` draws: from manifests, or from the cluster.
async fn graph_objects(files: Vec<std::path::PathBuf>, namespace: &str) -> Result<plan::Loaded, String> {
    if !files.is_empty() {
        return plan::load(&files, namespace, None, &[]);
    }
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes (set KUBECONFIG, or pass -f FILE): {e}"))?;
    plan::load_live(&client, namespace).await
}

impl ManifestArgs {
    /// The plan's text and whether it is clean.
    async fn plan(&self) -> Result<(String, bool), String> {
        if !self.live {
            let loaded = plan::load(&self.files, &self.namespace, self.provider.map(Into::into), &[])?;
            return Ok(plan::plan(&loaded));
        }
        let client = Client::try_default()
            .await
            .map_err(|e| format!("cannot reach Kubernetes (set KUBECONFIG, or drop --live): {e}"))?;
        let configs = kube::Api::<ProviderConfig>::all(client.clone())
            .list(&Default::default())
            .await
            .map_err(|e| format!("listing ProviderConfigs: {e}"))?;
        let loaded = plan::load(&self.files, &self.namespace, None, &configs.items)?;
        change_set::change_set(&client, &loaded, &self.cluster_name).await
    }
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Address for /metrics (Prometheus), /healthz and /readyz.
    #[arg(long, env = "CLOUDKIT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format: `json` for log collectors, `pretty` for people.
    #[arg(long, env = "CLOUDKIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CLOUDKIT_NAMESPACE")]
    namespace: Option<String>,
    /// Reconciles of one kind that may run at once. They wait on the network, not the CPU;
    /// when more objects than this turn runnable together (the dependents of one Queue
    /// turning Ready), the rest queue behind whole reconciles, so keep it above the widest
    /// fan-out you expect: at 128, 100 dependents all start within 50 ms of their dependency
    /// turning Ready; at 16, the last start after 3 s (docs/bench/latest.md).
    #[arg(long, env = "CLOUDKIT_CONCURRENCY", default_value_t = 128)]
    concurrency: u16,
    /// Requests to the Kubernetes API that may be in flight at once, all kinds together;
    /// the rest wait their turn. Each one in flight holds a connection, and connections are
    /// kept: this bounds the controller's memory at scale more than anything else does.
    #[arg(long, env = "CLOUDKIT_KUBE_REQUESTS_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    kube_requests_in_flight: u16,
    /// How long an object's generation may fail for a reason that usually heals by itself
    /// (a ProviderConfig, Secret or dependency not there yet, a cloud error, a 403) before it
    /// is reported Stalled, so pipelines stop waiting; retries go on (e.g. 90s, 5m, 1h).
    #[arg(long, env = "CLOUDKIT_STALL_AFTER", default_value = "5m", value_parser = parse_duration)]
    stall_after: Duration,
    /// The shortest `resyncInterval` a ProviderConfig may ask for: a floor, so that one
    /// ProviderConfig set to `1s` cannot make thousands of objects poll their cloud every
    /// second (the end-to-end tests lower it to see drift within seconds).
    #[arg(long, env = "CLOUDKIT_MIN_RESYNC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    min_resync_interval: Duration,
    /// Namespaces whose ProviderConfigs may use the controller's own credentials
    /// (`source: Environment` or `WorkloadIdentity`): comma-separated, `*` for all, empty for
    /// none. In a cluster shared by teams, list only the operator's namespaces.
    #[arg(long, env = "CLOUDKIT_AMBIENT_CREDENTIALS_NAMESPACES", default_value = "*")]
    ambient_credentials_namespaces: String,
    /// This cluster's name in the `cloudkit.dev/owner` tag of every resource it manages
    /// (`<cluster>/<namespace>/<kind>/<name>`). A resource tagged with another owner is
    /// never adopted, changed or deleted. Give each cluster sharing a cloud account its own;
    /// never change it, or every resource turns OwnedByAnother.
    #[arg(long, env = "CLOUDKIT_CLUSTER_NAME", default_value = "default", value_parser = parse_cluster_name)]
    cluster_name: String,
    /// Run as one of several replicas: only the holder of the Lease reconciles; the others
    /// wait and take over within 15 s of the leader dying (at once when it shuts down).
    #[arg(long, env = "CLOUDKIT_LEADER_ELECT")]
    leader_elect: bool,
    /// The Lease's namespace (default: $POD_NAMESPACE, else --namespace, else `default`).
    #[arg(long, env = "CLOUDKIT_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// The Lease's name: replicas with the same name and namespace elect one leader.
    #[arg(long, env = "CLOUDKIT_LEASE_NAME", default_value = "cloudkit")]
    lease_name: String,
    /// How credentials Secrets are read. `watch` (needs list and watch on Secrets): each
    /// Secret a ProviderConfig names is watched by name, so an idle controller reads none and
    /// a change is seen at once. `get` (get only): each is read again every 30 s.
    #[arg(long, env = "CLOUDKIT_SECRET_ACCESS", value_enum, default_value_t = SecretAccess::Watch)]
    secret_access: SecretAccess,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SecretAccess {
    Watch,
    Get,
}

impl ControllerArgs {
    fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| self.namespace.clone())
            .unwrap_or_else(|| "default".to_owned())
    }
}

/// Unique among replicas: the pod's name (or host), and the process id for several on one host.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "cloudkit".to_owned());
    format!("{host}-{}", std::process::id())
}

/// SIGTERM or SIGINT, as kube's `shutdown_on_signal` stops the controllers on.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Owner tags must be valid on every cloud and unambiguous: a DNS label.
fn parse_cluster_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err("use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'".to_owned())
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    cloudkit_crds::validation::parse_duration(text)
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crds => match cloudkit_crds::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: could not render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Plan(args) => match args.plan().await {
            Ok((text, ok)) => {
                print!("{text}");
                if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Graph {
            files,
            namespace,
            format,
        } => match graph_objects(files, &namespace).await {
            Ok(loaded) => {
                print!("{}", plan::graph(&loaded, format));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Drift { namespace, output } => {
            let reported = match Client::try_default().await {
                Ok(client) => drift_report::report(&client, namespace.as_deref(), output).await,
                Err(e) => Err(format!("cannot reach Kubernetes (set KUBECONFIG): {e}")),
            };
            match reported {
                Ok((text, any)) => {
                    print!("{text}");
                    if any { ExitCode::from(2) } else { ExitCode::SUCCESS }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Controller(args) => {
            init_logging(args.log_format);
            match run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Where the AWS SDK logs its endpoint parameters with `{:?}` at debug level: they hold the
/// credentials, and the access key ID prints in clear (tests/e2e/tests/secrets.rs found it).
/// Held at info whatever RUST_LOG says: a more specific directive wins.
const LEAKY_TARGETS: [&str; 3] = [
    "aws_smithy_runtime::client::orchestrator::endpoints",
    "aws_smithy_runtime::client::orchestrator::auth",
    "aws_sdk_s3::endpoint_auth",
];

fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in LEAKY_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn api<K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A client whose requests to the Kubernetes API are at most `in_flight` at once. Without a
/// bound, every reconcile that writes at the same moment opens a connection of its own
/// (HTTP/1.1), and the pool keeps them all: 512 connections, ~20 MiB, at 1,000 objects of
/// five kinds. A watch holds its place only until its response starts.
async fn kube_client(in_flight: usize) -> Result<Client, kube::Error> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(in_flight))
        .build())
}

async fn run(args: ControllerArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube_client(usize::from(args.kube_requests_in_flight))
        .await
        .map_err(|e| format!("cannot reach Kubernetes (set KUBECONFIG or run in a cluster): {e}"))?;
    let namespace = args.namespace.as_deref();
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("cannot serve metrics on {}: {e}", args.metrics_addr))?;
    let server = tokio::spawn(metrics::serve(listener, metrics.clone()));

    let mut candidate = None;
    if args.leader_elect {
        let (namespace, identity) = (args.lease_namespace(), identity());
        let mut joined = leader::join(client.clone(), &namespace, &args.lease_name, &identity)
            .await
            .map_err(|e| format!("cannot join the election on Lease {namespace}/{}: {e}", args.lease_name))?;
        metrics.set_standby();
        info!(%identity, lease = %format!("{namespace}/{}", args.lease_name), "standing by until this replica holds the lease");
        tokio::select! {
            led = joined.leads() => led.map_err(|e| format!("the election ended: {e}"))?,
            _ = terminated() => {
                joined.resign().await;
                server.abort();
                return Ok(());
            }
        }
        metrics.set_leading();
        candidate = Some(joined);
    }

    // ProviderConfigs are read on every reconcile: keep them in a watch cache. That one watch
    // also feeds the ProviderConfig controller and every kind's trigger (one subscriber
    // each), where there used to be seven watches of the same objects.
    let (configs, writer) = reflector::store_shared(CONFIG_EVENTS_BUFFER);
    let config_events = writer
        .subscribe()
        .ok_or("a shared ProviderConfig store has subscribers")?;
    let config_watch = watcher(api::<ProviderConfig>(&client, namespace), watcher::Config::default())
        .modify(lighten)
        .default_backoff()
        .reflect_shared(writer)
        .touched_objects()
        .for_each(|event| async {
            if let Err(e) = event {
                error!("watching ProviderConfigs (are the CRDs installed? `cloudkit crds | kubectl apply -f -`): {e}");
            }
        });
    let config_watch = tokio::spawn(config_watch);
    configs
        .wait_until_ready()
        .await
        .map_err(|e| format!("ProviderConfig cache: {e}"))?;

    // Every kind's cache, shared so that an object can read the status of those it references.
    let (buckets, bucket_writer) = reflector::store();
    let (tables, table_writer) = reflector::store();
    let (queues, queue_writer) = reflector::store();
    let (topics, topic_writer) = reflector::store();
    let (functions, function_writer) = reflector::store();
    // What one kind's objects tell the others' (see references::Signal).
    let (signals, _) = broadcast::channel(1024);
    // Empty until the watches start: each kind's announcer then keeps the graph of
    // references in step with its cache.
    let stores = Stores::new(buckets, tables, queues, topics, functions);
    let reporter = Reporter {
        controller: "cloudkit".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let secrets = Arc::new(provider::SecretCache::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        clouds: Clouds::new(
            {
                let metrics = metrics.clone();
                Arc::new(move |service: &str, operation: &str| metrics.cloud_call(service, operation))
            },
            {
                let metrics = metrics.clone();
                Arc::new(move |provider_config: &str| metrics.budget_throttled(provider_config))
            },
        ),
        provider_configs: configs,
        recorder: events::Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        backoff: Backoff::default(),
        stores,
        stall_after: args.stall_after,
        min_resync: args.min_resync_interval,
        resync_slots: Arc::new(resync::Slots::new(usize::from(args.concurrency))),
        ambient: provider::Ambient::parse(&args.ambient_credentials_namespaces),
        recovered: recovery::channel(),
        cluster: args.cluster_name.clone(),
        last_resolved: Default::default(),
        secret_watches: secret_watch::SecretWatches::new(
            client.clone(),
            secrets.clone(),
            args.secret_access == SecretAccess::Watch,
        ),
        secrets,
    });
    metrics.watch_budgets(ctx.clouds.budgets.clone());
    metrics.set_ready();
    info!(namespace = namespace.unwrap_or("<all>"), "controller started");
    let controllers = async {
        tokio::join!(
            run_kind::<Bucket>(
                &client,
                namespace,
                config_events.clone(),
                args.concurrency,
                bucket_writer,
                signals.clone(),
                ctx.clone()
            ),
            run_kind::<Table>(
                &client,
                namespace,
                config_events.clone(),
                args.concurrency,
                table_writer,
                signals.clone(),
                ctx.clone()
            ),
            run_kind::<Queue>(
                &client,
                namespace,
                config_events.clone(),
                args.concurrency,
                queue_writer,
                signals.clone(),
                ctx.clone()
            ),
            run_kind::<Topic>(
                &client,
                namespace,
                config_events.clone(),
                args.concurrency,
                topic_writer,
                signals.clone(),
                ctx.clone()
            ),
            run_kind::<Function>(
                &client,
                namespace,
                config_events.clone(),
                args.concurrency,
                function_writer,
                signals.clone(),
                ctx.clone()
            ),
            run_provider_configs(config_events.clone(), ctx),
        )
    };
    let result = match candidate {
        None => {
            controllers.await;
            Ok(())
        }
        Some(mut candidate) => {
            let shut_down = tokio::select! {
                _ = controllers => true,
                _ = candidate.lost() => false,
            };
            if shut_down {
                candidate.resign().await;
                Ok(())
            } else {
                // Another replica reconciles now: stop at once (the restart stands by).
                Err("lost the lease to another replica".into())
            }
        }
    };
    config_watch.abort();
    server.abort();
    info!("controller stopped");
    result
}

/// Keeps each ProviderConfig's own status current until a shutdown signal.
async fn run_provider_configs(config_events: ConfigEvents, ctx: Arc<Context>) {
    // A deleted ProviderConfig is let go when no cached object uses it: with caches not yet
    // filled, that would be every one.
    if let Err(e) = ctx.stores.wait_until_ready().await {
        error!("object caches: {e}");
        return;
    }
    let configs = ctx.provider_configs.clone();
    let secret_changes = ctx.secret_watches.changes(configs.clone());
    Controller::for_shared_stream(config_events, configs)
        .reconcile_on(secret_changes)
        .shutdown_on_signal()
        .run(provider_config::reconcile, provider_config::error_policy, ctx)
        .for_each(|result| async {
            if let Err(e) = result {
                tracing::debug!("ProviderConfig controller: {e}");
            }
        })
        .await;
}

/// What kube-apiserver sends that the controller never reads, dropped before caching:
/// `managedFields` (one entry per writer, the controller's status apply being the largest)
/// and `kubectl apply`'s copy of the whole manifest in an annotation. Together they were
/// most of a cached object (docs/bench/scale.md).
fn lighten<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Drops what the controller keeps per object once the object is gone, whatever path it
/// took (released by cleanup, retained, or never given a finalizer): a long-running
/// controller's memory must not grow with every object it ever saw.
fn forget_deleted<K: ManagedKind>(ctx: Arc<Context>) -> impl FnMut(&watcher::Event<K>) {
    move |event| {
        if let watcher::Event::Delete(obj) = event {
            ctx.backoff.reset(&reconcile::backoff_key(obj));
            ctx.metrics.set_drifted(&reconcile::object_key(obj), false);
        }
    }
}

/// How many ProviderConfig events the shared watch holds for its slowest subscriber (the
/// ProviderConfig controller starts only once every cache is filled) before it waits.
const CONFIG_EVENTS_BUFFER: usize = 1024;

type ConfigEvents = reflector::ReflectHandle<ProviderConfig>;

/// The ProviderConfigs whose spec changed (or that are seen for the first time): what
/// `predicates::generation` does for a watch, for the shared stream.
fn new_generations(events: ConfigEvents) -> impl futures::Stream<Item = Arc<ProviderConfig>> + Send {
    let mut seen: std::collections::HashMap<ObjectRef<ProviderConfig>, Option<i64>> = Default::default();
    events.filter(move |config| {
        let generation = config.metadata.generation;
        futures::future::ready(seen.insert(ObjectRef::from_obj(&**config), generation) != Some(generation))
    })
}

/// Runs the generic loop for one kind until a shutdown signal.
async fn run_kind<K: ManagedKind>(
    client: &Client,
    namespace: Option<&str>,
    config_events: ConfigEvents,
    concurrency: u16,
    writer: reflector::store::Writer<K>,
    signals: broadcast::Sender<Signal>,
    ctx: Arc<Context>,
) {
    // Only spec (generation) changes start a reconcile: the controller's own writes
    // (status, annotations, the finalizer it adds mid-reconcile) would otherwise trigger a
    // second, redundant round of cloud calls. Deletion bumps the generation too, so cleanup
    // is not filtered out.
    let objects = writer.as_reader();
    let graph = ctx.stores.graph();
    // Subscribed before any object is watched, so no signal is missed.
    let metrics = ctx.metrics.clone();
    let triggers = references::triggers(signals.subscribe(), graph.clone(), K::KIND, move |object, at| {
        metrics.woken(object, at)
    });
    let changes = watcher(api::<K>(client, namespace), watcher::Config::default())
        .default_backoff()
        .modify(lighten)
        .reflect(writer)
        // Status changes and deletions are seen here, before the filter below drops them:
        // an object turning Ready wakes those that wait for it, one going away wakes those
        // it referenced (their deletion may wait for it).
        .inspect_ok(references::announcer::<K>(signals, K::KIND, graph))
        .inspect_ok(forget_deleted::<K>(ctx.clone()))
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    // Subscribed before any reconcile runs, like the triggers.
    let retries = recovery::retries(ctx.recovered.subscribe(), objects.clone());
    let controller = Controller::for_stream(changes, objects.clone())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .reconcile_on(triggers)
        .reconcile_on(retries);
    // A ProviderConfig change (new credentials, a fixed endpoint, one created late)
    // re-reconciles the objects that use it, instead of waiting for their backoff. Its
    // status writes are filtered out: they change nothing the objects depend on.
    let config_changes = new_generations(config_events);
    controller
        .watches_shared_stream(config_changes, move |config| {
            let (ns, name) = (config.namespace(), config.name_any());
            objects
                .state()
                .into_iter()
                .filter(|o| o.namespace() == ns && o.managed().provider_config_ref.name == name)
                .map(|o| ObjectRef::from_obj(&*o))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
        .for_each(|result| async {
            if let Err(e) = result {
                tracing::debug!("controller: {e}");
            }
        })
        .await;
}
