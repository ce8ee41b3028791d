//! Table checks: DynamoDB naming, key and index definitions, billing and capacities.

use std::collections::BTreeMap;

use super::{FieldError, azure_table_name, in_range, name_error, tags};
use crate::provider_config::Cloud;
use crate::table::{AttributeType, BillingMode, GcPolicy, TableSpec};

/// DynamoDB allows 20 global secondary indexes per table by default.
const MAX_INDEXES: usize = 20;

/// Checks a Table spec against the rules of the target cloud.
pub fn table(name: &str, name_field: &str, spec: &TableSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud == Cloud::Aws {
        if let Some(problem) = dynamodb_name(name) {
            errors.push(name_error(name_field, name, "DynamoDB table", &problem));
        }
        errors.extend(tags(&spec.tags, cloud));
    }
    if cloud == Cloud::Azure
        && let Some(problem) = azure_table_name(name)
    {
        errors.push(name_error(name_field, name, "Azure table", &problem));
    }
    if cloud == Cloud::Gcp {
        errors.extend(bigtable(name, name_field, spec));
    }
    // Every attribute used in a key has one type, wherever it is used.
    let mut types: BTreeMap<String, (AttributeType, String)> = BTreeMap::new();
    let mut key = |errors: &mut Vec<FieldError>, field: String, name: &str, type_: AttributeType| {
        if name.is_empty() || name.len() > 255 {
            errors.push(FieldError::new(format!("{field}.name"), "must be 1 to 255 characters"));
            return;
        }
        match types.get(name) {
            Some((seen, at)) if *seen != type_ => errors.push(FieldError::new(
                format!("{field}.type"),
                format!("'{name}' is {seen:?} in {at}: an attribute has one type in every key"),
            )),
            Some(_) => {}
            None => {
                types.insert(name.to_owned(), (type_, field));
            }
        }
    };
    key(
        &mut errors,
        "spec.partitionKey".into(),
        &spec.partition_key.name,
        spec.partition_key.type_,
    );
    if let Some(sort) = &spec.sort_key {
        if sort.name == spec.partition_key.name {
            errors.push(FieldError::new(
                "spec.sortKey.name",
                "must differ from the partition key",
            ));
        }
        key(&mut errors, "spec.sortKey".into(), &sort.name, sort.type_);
    }
    let provisioned = spec.billing.mode == BillingMode::Provisioned;
    capacities(
        &mut errors,
        "spec.billing",
        provisioned,
        spec.billing.read_capacity,
        spec.billing.write_capacity,
    );
    if spec.global_secondary_indexes.len() > MAX_INDEXES {
        errors.push(FieldError::new(
            "spec.globalSecondaryIndexes",
            format!(
                "{} indexes, but at most {MAX_INDEXES} are allowed",
                spec.global_secondary_indexes.len()
            ),
        ));
    }
    let mut names = BTreeMap::new();
    for (i, index) in spec.global_secondary_indexes.iter().enumerate() {
        let field = format!("spec.globalSecondaryIndexes[{i}]");
        if let Some(problem) = dynamodb_name(&index.name) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!("'{}' is not a valid index name: {problem}", index.name),
            ));
        }
        if let Some(first) = names.insert(index.name.as_str(), i) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!(
                    "'{}' is also the name of index {first}: names must be unique",
                    index.name
                ),
            ));
        }
        key(
            &mut errors,
            format!("{field}.partitionKey"),
            &index.partition_key.name,
            index.partition_key.type_,
        );
        if let Some(sort) = &index.sort_key {
            key(&mut errors, format!("{field}.sortKey"), &sort.name, sort.type_);
        }
        capacities(
            &mut errors,
            &field,
            provisioned,
            index.read_capacity,
            index.write_capacity,
        );
    }
    if spec.ttl_attribute.as_deref().is_some_and(|a| a.trim().is_empty()) {
        errors.push(FieldError::new(
            "spec.ttlAttribute",
            "is empty: name the attribute holding each item's expiry time, or remove it",
        ));
    }
    errors
}

/// Capacities go with `Provisioned` billing and only with it.
fn capacities(errors: &mut Vec<FieldError>, at: &str, provisioned: bool, read: Option<i64>, write: Option<i64>) {
    for (field, value) in [("readCapacity", read), ("writeCapacity", write)] {
        let field = format!("{at}.{field}");
        match (provisioned, value) {
            (true, None) => errors.push(FieldError::new(field, "is required with billing mode Provisioned")),
            (false, Some(_)) => errors.push(FieldError::new(
                field,
                "applies to billing mode Provisioned only: remove it, or set spec.billing.mode: Provisioned",
            )),
            (true, v) => in_range(errors, &field, v, 1..=40_000),
            (false, None) => {}
        }
    }
}

/// DynamoDB table and index names: 3 to 255 letters, digits, `_`, `-` and `.`.
fn dynamodb_name(name: &str) -> Option<String> {
    if !(3..=255).contains(&name.len()) {
        return Some(format!("must be 3 to 255 characters long, not {}", name.len()));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Some("use only letters, digits, '_', '-' and '.'".into());
    }
    None
}

/// Bigtable: the instance is required; table IDs and column family names have their own
/// rules.
fn bigtable(name: &str, name_field: &str, spec: &TableSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let id_ok = |text: &str, max: usize, first_dash: bool| {
        !text.is_empty()
            && text.len() <= max
            && text.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || (first_dash && c == '-'))
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !id_ok(name, 50, false) {
        errors.push(name_error(
            name_field,
            name,
            "Bigtable table",
            "use 1 to 50 letters, digits, '-', '_' and '.', starting with a letter, digit or '_'",
        ));
    }
    let gcp = spec.gcp.clone().unwrap_or_default();
    match gcp.instance.as_deref() {
        None => errors.push(FieldError::new(
            "spec.gcp.instance",
            "is required on GCP: name the Bigtable instance holding the table",
        )),
        Some(instance) => {
            let ok = (6..=33).contains(&instance.len())
                && instance.starts_with(|c: char| c.is_ascii_lowercase())
                && !instance.ends_with('-')
                && instance
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                errors.push(FieldError::new(
                    "spec.gcp.instance",
                    format!(
                        "'{instance}' is not a Bigtable instance ID: use 6 to 33 lowercase letters, digits and \
                         hyphens, starting with a letter"
                    ),
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, family) in gcp.column_families.iter().enumerate() {
        let field = format!("spec.gcp.columnFamilies[{i}]");
        let name = &family.name;
        if !id_ok(name, 64, true) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!("'{name}' is not a column family name: use 1 to 64 letters, digits, '-', '_' and '.'"),
            ));
        } else if !seen.insert(name) {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!("'{name}' is listed twice"),
            ));
        }
        if let Some(policy) = &family.gc_policy {
            gc_policy(&mut errors, &format!("{field}.gcPolicy"), policy);
        }
    }
    errors
}

/// A GC policy is one rule or two combined; an empty one would read as "keep everything",
/// which is what leaving it out says, so it is refused rather than guessed at.
fn gc_policy(errors: &mut Vec<FieldError>, field: &str, policy: &GcPolicy) {
    match (policy.max_versions, policy.max_age_seconds) {
        (None, None) => errors.push(FieldError::new(
            field,
            "sets no rule: set maxVersions, maxAgeSeconds or both, or remove gcPolicy to keep every cell",
        )),
        (Some(_), Some(_)) => {}
        _ if policy.mode.is_some() => errors.push(FieldError::new(
            format!("{field}.mode"),
            "combines two rules: set both maxVersions and maxAgeSeconds, or remove mode",
        )),
        _ => {}
    }
    in_range(
        errors,
        &format!("{field}.maxVersions"),
        policy.max_versions.map(i64::from),
        1..=i64::from(i32::MAX),
    );
    // Bigtable's limit is protobuf's Duration: about 10,000 years.
    in_range(
        errors,
        &format!("{field}.maxAgeSeconds"),
        policy.max_age_seconds,
        1..=315_576_000_000,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> TableSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    fn fields(json: serde_json::Value) -> Vec<String> {
        table("orders", "metadata.name", &spec(json), Cloud::Aws)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_plain_table_is_valid() {
        assert!(fields(serde_json::json!({"partitionKey": {"name": "id", "type": "String"}})).is_empty());
    }

    #[test]
    fn billing_and_capacities_go_together() {
        assert_eq!(
            fields(serde_json::json!({
                "partitionKey": {"name": "id", "type": "String"},
                "billing": {"mode": "Provisioned", "readCapacity": 0}
            })),
            ["spec.billing.readCapacity", "spec.billing.writeCapacity"]
        );
        assert_eq!(
            fields(serde_json::json!({
                "partitionKey": {"name": "id", "type": "String"},
                "billing": {"readCapacity": 5}
            })),
            ["spec.billing.readCapacity"]
        );
    }

    #[test]
    fn keys_and_indexes_are_consistent() {
        let found = fields(serde_json::json!({
            "partitionKey": {"name": "id", "type": "String"},
            "sortKey": {"name": "id", "type": "Number"},
            "globalSecondaryIndexes": [
                {"name": "by-id", "partitionKey": {"name": "id", "type": "Binary"}},
                {"name": "by-id", "partitionKey": {"name": "other", "type": "String"}, "readCapacity": 1},
                {"name": "x", "partitionKey": {"name": "", "type": "String"}}
            ],
            "ttlAttribute": ""
        }));
        assert_eq!(
            found,
            [
                "spec.sortKey.name",
                "spec.sortKey.type",
                "spec.globalSecondaryIndexes[0].partitionKey.type",
                "spec.globalSecondaryIndexes[1].name",
                "spec.globalSecondaryIndexes[1].readCapacity",
                "spec.globalSecondaryIndexes[2].name",
                "spec.globalSecondaryIndexes[2].partitionKey.name",
                "spec.ttlAttribute",
            ]
        );
    }

    #[test]
    fn bigtable_families_and_gc_policies() {
        let spec = spec(serde_json::json!({
            "partitionKey": {"name": "id", "type": "String"},
            "gcp": {"instance": "main-instance", "columnFamilies": [
                {"name": "ok", "gcPolicy": {"maxVersions": 2, "maxAgeSeconds": 60, "mode": "Intersection"}},
                {"name": "no/slash"},
                {"name": "ok"},
                {"name": "empty", "gcPolicy": {}},
                {"name": "lonely", "gcPolicy": {"maxVersions": 0, "mode": "Union"}},
                {"name": "old", "gcPolicy": {"maxAgeSeconds": 0}}
            ]}
        }));
        let found: Vec<String> = table("t", "metadata.name", &spec, Cloud::Gcp)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            found,
            [
                "spec.gcp.columnFamilies[1].name",
                "spec.gcp.columnFamilies[2].name",
                "spec.gcp.columnFamilies[3].gcPolicy",
                "spec.gcp.columnFamilies[4].gcPolicy.mode",
                "spec.gcp.columnFamilies[4].gcPolicy.maxVersions",
                "spec.gcp.columnFamilies[5].gcPolicy.maxAgeSeconds",
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(dynamodb_name("Orders_2024.v1-x"), None);
        assert!(dynamodb_name("ab").is_some());
        assert!(dynamodb_name("has space").is_some());
    }
}
