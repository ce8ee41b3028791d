#![forbid(unsafe_code)]
//! Field-level diff of desired versus observed state.
//!
//! Backends describe a resource with one serializable state type; the controller diffs the
//! state built from the manifest against the state `observe` returned. The same list drives
//! the update (which fields to converge) and the drift report in status and events.

pub mod normalize;

use serde::Serialize;
use serde_json::Value;

/// One field whose observed value differs from the desired one.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// Dotted path, e.g. `versioning` or `tags.team`.
    pub path: String,
    /// `null` when the field is absent from the desired state.
    pub desired: Value,
    /// `null` when the field is absent from the observed state.
    pub observed: Value,
}

/// Diffs two states of the same type, field by field.
///
/// Objects (structs and maps) are walked key by key so a changed tag is reported as
/// `tags.<key>`; arrays and scalars are compared whole, since their elements carry no
/// stable identity.
pub fn diff<T: Serialize>(desired: &T, observed: &T) -> Result<Vec<FieldDiff>, serde_json::Error> {
    let mut out = Vec::new();
    walk(
        "",
        &serde_json::to_value(desired)?,
        &serde_json::to_value(observed)?,
        &mut out,
    );
    Ok(out)
}

/// Whether any diff lies at `path` or below it, so a backend knows which call to make.
pub fn touches(diffs: &[FieldDiff], path: &str) -> bool {
    diffs
        .iter()
        .any(|d| d.path == path || (d.path.starts_with(path) && d.path.as_bytes().get(path.len()) == Some(&b'.')))
}

fn walk(path: &str, desired: &Value, observed: &Value, out: &mut Vec<FieldDiff>) {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => {
            let mut keys: Vec<&String> = d.keys().chain(o.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(
                    &child,
                    d.get(key).unwrap_or(&Value::Null),
                    o.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (d, o) if d != o => out.push(FieldDiff {
            path: path.to_owned(),
            desired: d.clone(),
            observed: o.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Serialize)]
    struct State {
        versioning: bool,
        tags: BTreeMap<String, String>,
        rules: Vec<u32>,
    }

    fn state(versioning: bool, tags: &[(&str, &str)], rules: Vec<u32>) -> State {
        State {
            versioning,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            rules,
        }
    }

    #[test]
    fn equal_states_have_no_diff() {
        let a = state(true, &[("team", "data")], vec![1]);
        assert_eq!(diff(&a, &a).expect("diff"), vec![]);
    }

    #[test]
    fn reports_each_field_and_map_key() {
        let desired = state(true, &[("team", "data"), ("env", "prod")], vec![1, 2]);
        let observed = state(false, &[("team", "web"), ("owner", "bob")], vec![1]);
        let paths: Vec<String> = diff(&desired, &observed)
            .expect("diff")
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(paths, ["rules", "tags.env", "tags.owner", "tags.team", "versioning"]);
    }

    #[test]
    fn missing_keys_show_as_null() {
        let d = diff(&state(false, &[], vec![]), &state(false, &[("extra", "x")], vec![])).expect("diff");
        assert_eq!(d[0].desired, Value::Null);
        assert_eq!(d[0].observed, Value::String("x".into()));
    }

    #[test]
    fn touches_matches_whole_segments_only() {
        let d = diff(&state(true, &[("a", "1")], vec![]), &state(true, &[], vec![])).expect("diff");
        assert!(touches(&d, "tags"));
        assert!(!touches(&d, "tag"));
        assert!(!touches(&d, "versioning"));
    }
}
