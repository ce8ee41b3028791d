//! `cloudkit plan -f FILE|DIR …`: checks manifests offline with the controller's own spec
//! checks (the same `ManagedKind::spec_errors` each reconcile runs), resolves references
//! between them, finds cycles, and prints the order the controller will create them in.
//! `cloudkit graph` prints the same graph as text, Graphviz dot or Mermaid.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use cloudkit_crds::validation::{self, FieldError};
use cloudkit_crds::{Bucket, Cloud, Function, ProviderConfig, Queue, Reference, Table, Topic};
use kube::ResourceExt;
use serde_json::Value;

use crate::dag::{Graph, Key};
use crate::kinds::ManagedKind;

/// One manifest that made it through parsing.
pub struct Object {
    pub key: Key,
    pub file: String,
    refs: Vec<Reference>,
    /// The manifest, with its namespace filled in; `None` when read from a cluster.
    pub doc: Option<Value>,
}

/// What the manifests (or a namespace of the cluster) hold, and every problem found in them.
pub struct Loaded {
    pub objects: Vec<Object>,
    problems: Vec<String>,
    /// Whether each object is Ready, when read from a cluster.
    ready: BTreeMap<Key, bool>,
    /// The ProviderConfigs among the files.
    pub configs: Vec<ProviderConfig>,
}

/// The CloudKit objects of one namespace of the cluster, with whether each is Ready.
pub async fn load_live(client: &kube::Client, namespace: &str) -> Result<Loaded, String> {
    let mut loaded = Loaded {
        objects: Vec::new(),
        problems: Vec::new(),
        ready: BTreeMap::new(),
        configs: Vec::new(),
    };
    live::<Bucket>(client, namespace, &mut loaded).await?;
    live::<Table>(client, namespace, &mut loaded).await?;
    live::<Queue>(client, namespace, &mut loaded).await?;
    live::<Topic>(client, namespace, &mut loaded).await?;
    live::<Function>(client, namespace, &mut loaded).await?;
    Ok(loaded)
}

async fn live<K: ManagedKind>(client: &kube::Client, namespace: &str, loaded: &mut Loaded) -> Result<(), String> {
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| format!("listing {}s in namespace '{namespace}': {e}", K::KIND))?;
    for obj in list.items {
        let key = Key {
            kind: K::KIND,
            namespace: namespace.to_owned(),
            name: obj.name_any(),
        };
        let ready =
            crate::status::condition(obj.managed_status(), crate::status::READY).is_some_and(|c| c.status == "True");
        loaded.ready.insert(key.clone(), ready);
        loaded.objects.push(Object {
            key,
            file: format!("namespace {namespace}"),
            refs: obj.references(),
            doc: None,
        });
    }
    Ok(())
}

/// Reads every `.yaml`/`.yml` file named or below a named directory, in name order.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let yaml: Vec<PathBuf> = entries
                .into_iter()
                .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            out.extend(files(&yaml)?);
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(out)
}

/// Parses the manifests and runs the spec checks. ProviderConfigs not among the files are
/// looked for in `cluster`, else `provider` stands in for them.
pub fn load(
    paths: &[PathBuf],
    namespace: &str,
    provider: Option<Cloud>,
    cluster: &[ProviderConfig],
) -> Result<Loaded, String> {
    let mut docs: Vec<(String, Value)> = Vec::new();
    for file in files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let shown = display(&file);
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{shown}: not valid YAML: {e}"))?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()).map(|d| (shown.clone(), d)));
    }
    let mut loaded = Loaded {
        objects: Vec::new(),
        problems: Vec::new(),
        ready: BTreeMap::new(),
        configs: Vec::new(),
    };
    // ProviderConfigs first: every object's checks depend on its cloud.
    let mut clouds: BTreeMap<(String, String), Cloud> = cluster
        .iter()
        .map(|pc| ((pc.namespace().unwrap_or_default(), pc.name_any()), pc.spec.provider))
        .collect();
    for (file, doc) in docs.iter().filter(|(_, d)| is_cloudkit(d, "ProviderConfig")) {
        match serde_json::from_value::<ProviderConfig>(with_namespace(doc, namespace)) {
            Ok(pc) => {
                let name = pc.name_any();
                if let Err(e) = validation::provider_config(&pc.spec) {
                    loaded.problems.push(format!("{file}: ProviderConfig/{name}: {e}"));
                }
                clouds.insert((pc.namespace().unwrap_or_default(), name), pc.spec.provider);
                loaded.configs.push(pc);
            }
            Err(e) => loaded.problems.push(format!("{file}: ProviderConfig: {e}")),
        }
    }
    for (file, doc) in &docs {
        let doc = with_namespace(doc, namespace);
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !is_cloudkit(&doc, kind) {
            continue;
        }
        let checked = match kind {
            "Bucket" => check::<Bucket>(file, doc, &clouds, provider),
            "Table" => check::<Table>(file, doc, &clouds, provider),
            "Queue" => check::<Queue>(file, doc, &clouds, provider),
            "Topic" => check::<Topic>(file, doc, &clouds, provider),
            "Function" => check::<Function>(file, doc, &clouds, provider),
            "ProviderConfig" => continue,
            other => (None, vec![format!("{file}: {other}: not a CloudKit kind")]),
        };
        let (object, problems) = checked;
        loaded.objects.extend(object);
        loaded.problems.extend(problems);
    }
    Ok(loaded)
}

fn is_cloudkit(doc: &Value, kind: &str) -> bool {
    doc.get("apiVersion").and_then(Value::as_str) == Some("cloudkit.dev/v1alpha1")
        && doc.get("kind").and_then(Value::as_str) == Some(kind)
}

fn with_namespace(doc: &Value, namespace: &str) -> Value {
    let mut doc = doc.clone();
    if doc.pointer("/metadata/namespace").is_none()
        && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), namespace.into());
    }
    doc
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The object (unless it does not parse) and every problem found with it. An object whose
/// spec is invalid still goes into the graph with its references, so one run reports
/// everything.
fn check<K: ManagedKind>(
    file: &str,
    doc: Value,
    clouds: &BTreeMap<(String, String), Cloud>,
    provider: Option<Cloud>,
) -> (Option<Object>, Vec<String>) {
    let kind = K::KIND;
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    // The path names the field, as the apiserver's schema check would.
    let obj: K = match serde_path_to_error::deserialize(doc.clone()) {
        Ok(obj) => obj,
        Err(e) => {
            return (
                None,
                vec![format!("{file}: {kind}/{name}: {}: {}", e.path(), e.inner())],
            );
        }
    };
    let namespace = obj.namespace().unwrap_or_default();
    let config = &obj.managed().provider_config_ref.name;
    let key = Key {
        kind,
        namespace: namespace.clone(),
        name: obj.name_any(),
    };
    let object = Object {
        file: file.to_owned(),
        refs: obj.references(),
        key,
        doc: Some(doc),
    };
    let cloud = match (clouds.get(&(namespace.clone(), config.clone())).copied(), provider) {
        (Some(cloud), _) | (None, Some(cloud)) => cloud,
        (None, None) => {
            let problem = format!(
                "{file}: {kind}/{name}: ProviderConfig '{config}' (namespace '{namespace}') is not among the files: \
                 add it, or pass --provider aws|azure|gcp"
            );
            return (Some(object), vec![problem]);
        }
    };
    let mut errors: Vec<FieldError> = obj.spec_errors(cloud);
    errors.extend(obj.unsupported(cloud));
    let problems = errors
        .into_iter()
        .map(|e| format!("{file}: {kind}/{name}: {}: {}", e.field, e.message))
        .collect();
    (Some(object), problems)
}

/// The plan as text, and whether it is free of problems.
pub fn plan(loaded: &Loaded) -> (String, bool) {
    let (graph, problems) = graph_with_problems(loaded);
    let mut out = String::new();
    for p in &problems {
        let _ = writeln!(out, "error: {p}");
    }
    if let Some(waves) = graph.waves().filter(|_| problems.is_empty()) {
        let count: usize = waves.iter().map(Vec::len).sum();
        let _ = writeln!(
            out,
            "{count} objects, created in {} waves (deleted in reverse):",
            waves.len()
        );
        for (i, wave) in waves.iter().enumerate() {
            let _ = writeln!(out, "wave {}:", i + 1);
            for key in wave {
                let deps = graph.dependencies(key);
                let after = if deps.is_empty() {
                    String::new()
                } else {
                    let names: Vec<String> = deps.iter().map(ToString::to_string).collect();
                    format!("  (after {})", names.join(", "))
                };
                let _ = writeln!(out, "  {key}{after}");
            }
        }
    } else {
        let _ = writeln!(out, "{} problem(s): nothing would be applied", problems.len());
    }
    (out, problems.is_empty())
}

/// The graph of every object that parsed, with problems: the spec checks', references to
/// objects not among the files, and cycles.
pub fn graph_with_problems(loaded: &Loaded) -> (Graph, Vec<String>) {
    let (graph, dangling) = Graph::build(loaded.objects.iter().map(|o| (o.key.clone(), o.refs.clone())));
    let mut problems = loaded.problems.clone();
    let file_of: BTreeMap<&Key, &str> = loaded.objects.iter().map(|o| (&o.key, o.file.as_str())).collect();
    for d in dangling {
        let file = file_of.get(&d.from).copied().unwrap_or_default();
        problems.push(format!(
            "{file}: {}: {}: {}/{} is not among the files",
            d.from, d.reference.field, d.reference.kind, d.reference.name
        ));
    }
    for cycle in graph.cycles() {
        let spelled: Vec<String> = cycle.iter().map(ToString::to_string).collect();
        let file = cycle.first().and_then(|k| file_of.get(k)).copied().unwrap_or_default();
        problems.push(format!("{file}: references form a cycle: {}", spelled.join(" → ")));
    }
    (graph, problems)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

/// The graph of the manifests: each object and what it waits for; objects read from a
/// cluster are marked Ready or not.
pub fn graph(loaded: &Loaded, format: GraphFormat) -> String {
    let (graph, _) = graph_with_problems(loaded);
    let mark = |k: &Key| match loaded.ready.get(k) {
        Some(true) => " [Ready]",
        Some(false) => " [not Ready]",
        None => "",
    };
    let id = |k: &Key| {
        format!(
            "{}_{}",
            k.kind,
            k.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    };
    let mut out = String::new();
    match format {
        GraphFormat::Text => {
            for key in graph.keys() {
                let deps: Vec<String> = graph.dependencies(key).iter().map(ToString::to_string).collect();
                let waits = if deps.is_empty() {
                    String::new()
                } else {
                    format!(" → waits for {}", deps.join(", "))
                };
                let _ = writeln!(out, "{key}{}{waits}", mark(key));
            }
        }
        GraphFormat::Dot => {
            out.push_str("digraph cloudkit {\n  rankdir=LR;\n");
            for key in graph.keys() {
                let color = match loaded.ready.get(key) {
                    Some(true) => ", color=green",
                    Some(false) => ", color=red",
                    None => "",
                };
                let _ = writeln!(out, "  {} [label=\"{key}{}\"{color}];", id(key), mark(key));
                for dep in graph.dependencies(key) {
                    let _ = writeln!(out, "  {} -> {};", id(&dep), id(key));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("graph LR\n");
            for key in graph.keys() {
                let _ = writeln!(out, "  {}[\"{key}{}\"]", id(key), mark(key));
                for dep in graph.dependencies(key) {
                    let _ = writeln!(out, "  {} --> {}", id(&dep), id(key));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    /// Plans a directory of `tests/plan/` and compares with its golden file; set
    /// `CLOUDKIT_BLESS=1` to rewrite the golden files after a deliberate change.
    fn golden(case: &str) -> bool {
        let dir = root().join("tests/plan").join(case);
        let loaded = load(&[dir], "default", None, &[]).expect("readable");
        let (text, ok) = plan(&loaded);
        // Paths relative to the repository, so the golden files do not depend on the checkout.
        let text = text.replace(&format!("{}/", root().display()), "");
        let golden = root().join("tests/plan").join(format!("{case}.txt"));
        if std::env::var_os("CLOUDKIT_BLESS").is_some() {
            std::fs::write(&golden, &text).expect("write golden file");
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        assert_eq!(
            text, expected,
            "tests/plan/{case}.txt differs (CLOUDKIT_BLESS=1 to rewrite)"
        );
        ok
    }

    #[test]
    fn good_manifests_plan_in_waves() {
        assert!(golden("good"));
    }

    #[test]
    fn bad_manifests_name_file_object_and_field() {
        assert!(!golden("bad"));
    }

    #[test]
    fn the_samples_plan_cleanly() {
        let loaded = load(&[root().join("samples")], "default", None, &[]).expect("readable");
        let (text, ok) = plan(&loaded);
        assert!(ok, "{text}");
    }

    #[test]
    fn graph_formats() {
        let loaded = load(&[root().join("tests/plan/good")], "default", None, &[]).expect("readable");
        let dot = graph(&loaded, GraphFormat::Dot);
        assert!(dot.starts_with("digraph cloudkit {"), "{dot}");
        assert!(dot.contains(" -> "), "{dot}");
        let mermaid = graph(&loaded, GraphFormat::Mermaid);
        assert!(mermaid.contains(" --> "), "{mermaid}");
        assert!(graph(&loaded, GraphFormat::Text).contains("→ waits for"));
    }
}
