//! The field reference, `docs/reference.md`, rendered from the same CRD objects
//! [`crate::crds`] returns (so from the same schemas `cloudkit crds` prints): per kind, every
//! field path with its type, whether it is required, its default, its allowed values and its
//! description. A test keeps the committed page in step; regenerate it with
//! `CLOUDKIT_BLESS=1 cargo test -p cloudkit-crds reference`.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// The command that rewrites `docs/reference.md`.
pub const REGENERATE: &str = "CLOUDKIT_BLESS=1 cargo test -p cloudkit-crds reference";

/// One row of a kind's field table.
struct Row {
    path: String,
    type_: String,
    required: bool,
    default: String,
    values: String,
    description: String,
}

/// `docs/reference.md`: every kind [`crate::crds`] serves, in that order.
pub fn markdown() -> String {
    render(&crate::crds())
}

/// The field reference of `crds`, as Markdown.
pub fn render(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::new();
    out.push_str("# Field reference\n\n");
    out.push_str(
        "<!-- Generated from the CRD schemas by crds/src/reference.rs; do not edit. -->\n\
         <!-- Regenerate: ",
    );
    out.push_str(REGENERATE);
    out.push_str(" -->\n\n");
    out.push_str(
        "Every field of every CloudKit kind, read from the CRD schemas the controller serves \
         (`cloudkit crds`). A field marked required is required when the object holding it is \
         set; `[]` stands for every item of a list. Rules the schema cannot express (name \
         formats, ranges, one field of several) are checked by the controller, which reports \
         them as `InvalidSpec` (see [troubleshooting.md](troubleshooting.md)); `cloudkit plan \
         -f FILE` runs the same checks offline. What the fields mean is in \
         [concepts.md](concepts.md).\n\n",
    );
    for crd in crds {
        let kind = &crd.spec.names.kind;
        let _ = writeln!(out, "- [{kind}](#{})", kind.to_lowercase());
    }
    for crd in crds {
        out.push('\n');
        render_kind(&mut out, crd);
    }
    out
}

fn render_kind(out: &mut String, crd: &CustomResourceDefinition) {
    let names = &crd.spec.names;
    let _ = writeln!(out, "## {}\n", names.kind);
    for version in &crd.spec.versions {
        let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
        if let Some(description) = schema.and_then(|s| s.description.as_deref()) {
            let _ = writeln!(out, "{}\n", description.trim());
        }
        let _ = write!(
            out,
            "`apiVersion: {}/{}`, `kind: {}`, {}",
            crd.spec.group,
            version.name,
            names.kind,
            crd.spec.scope.to_lowercase()
        );
        let _ = write!(out, "; `kubectl get {}`", names.plural);
        let short: Vec<String> = names.short_names.iter().flatten().map(|s| format!("`{s}`")).collect();
        if !short.is_empty() {
            let _ = write!(out, " or {}", short.join(", "));
        }
        let categories: Vec<String> = names.categories.iter().flatten().map(|c| format!("`{c}`")).collect();
        if !categories.is_empty() {
            let _ = write!(out, " (category {})", categories.join(", "));
        }
        out.push('.');
        let columns: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| format!("{} (`{}`)", c.name, c.json_path))
            .collect();
        if !columns.is_empty() {
            let _ = write!(out, " Columns: {}.", columns.join(", "));
        }
        out.push_str("\n\n");

        let mut rows = Vec::new();
        if let Some(schema) = schema {
            walk(schema, "", &mut rows);
        }
        out.push_str("| field | type | required | default | values | description |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for row in rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                row.path,
                row.type_,
                if row.required { "yes" } else { "no" },
                row.default,
                row.values,
                row.description
            );
        }
    }
}

/// Appends a row for every property of `schema` (an object), depth first, in the schema's
/// (sorted) order, each followed by the fields inside it.
fn walk(schema: &JSONSchemaProps, prefix: &str, rows: &mut Vec<Row>) {
    let required = schema.required.as_deref().unwrap_or_default();
    for (name, field) in schema.properties.iter().flatten() {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        rows.push(Row {
            path: path.clone(),
            type_: type_name(field),
            required: required.iter().any(|r| r == name),
            default: field
                .default
                .as_ref()
                .map(|d| code(&json_text(&d.0)))
                .unwrap_or_default(),
            values: field
                .enum_
                .iter()
                .flatten()
                .map(|v| code(&json_text(&v.0)))
                .collect::<Vec<_>>()
                .join(", "),
            description: cell(field.description.as_deref().unwrap_or_default()),
        });
        descend(field, &path, rows);
    }
}

/// The fields inside `field`: its properties, its items' (`path[]`) or its map values'
/// (`path.<key>`).
fn descend(field: &JSONSchemaProps, path: &str, rows: &mut Vec<Row>) {
    if field.properties.is_some() {
        walk(field, path, rows);
    }
    if let Some(item) = single_items(field) {
        let item_path = format!("{path}[]");
        if item.properties.is_some() {
            walk(item, &item_path, rows);
        } else {
            descend(item, &item_path, rows);
        }
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = &field.additional_properties
        && value.properties.is_some()
    {
        walk(value, &format!("{path}.<key>"), rows);
    }
}

fn single_items(field: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &field.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => Some(item),
        _ => None,
    }
}

/// `string`, `integer (int32)`, `list of object`, `map of string`, …
fn type_name(field: &JSONSchemaProps) -> String {
    if let Some(item) = single_items(field) {
        return format!("list of {}", type_name(item));
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = &field.additional_properties {
        return format!("map of {}", type_name(value));
    }
    let base = field.type_.clone().unwrap_or_else(|| "any".to_owned());
    match &field.format {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

/// A default or enum value: strings as written, anything else as compact JSON.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Inline code for a table cell.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

/// A description as one table cell: lines joined, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reference.md");

    /// docs/reference.md is what the schemas say; `CLOUDKIT_BLESS=1` rewrites it.
    #[test]
    fn committed_reference_doc_matches_generated() {
        let generated = markdown();
        if std::env::var_os("CLOUDKIT_BLESS").is_some()
            && let Err(e) = std::fs::write(PATH, &generated)
        {
            panic!("cannot write docs/reference.md: {e}");
        }
        let committed = std::fs::read_to_string(PATH).unwrap_or_default();
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(c, g)| c != g)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        assert!(
            committed == generated,
            "docs/reference.md is stale (first difference at line {}): run `{REGENERATE}`",
            first_difference + 1
        );
    }

    #[test]
    fn every_kind_and_nested_field_is_listed() {
        let page = markdown();
        for crd in crate::crds() {
            assert!(page.contains(&format!("\n## {}\n", crd.spec.names.kind)));
        }
        for row in [
            "| `spec.tags` | map of string | no | `{}` |",
            "| `spec.deletionPolicy` | string | no |  | `Delete`, `Retain` |",
            "| `spec.visibilityTimeoutSeconds` | integer (int32) | no |",
            "| `spec.aws.kmsKeyId` | string | no |",
            "| `spec.deadLetter.queueRef.name` | string | yes |",
            "| `spec.subscriptions[].protocol` | string | yes |",
            "| `status.conditions[].reason` | string | yes |",
            "| `spec.provider` | string | yes |  | `aws`, `azure`, `gcp` |",
        ] {
            assert!(page.contains(row), "missing {row}");
        }
    }

    #[test]
    fn cells_stay_on_one_line() {
        assert_eq!(cell("a\n  b | c"), "a b \\| c");
        assert_eq!(code("x|y"), "`x\\|y`");
        assert_eq!(
            json_text(&serde_json::json!({"name": "default"})),
            r#"{"name":"default"}"#
        );
    }
}
