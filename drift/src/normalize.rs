//! Normalisation: what clouds write differently from how a manifest says the same thing.
//!
//! An untouched resource must never show drift, so before the one diff compares desired and
//! observed, both sides are put in one spelling by these rules. Each rule is a pure function
//! with its own test; docs/concepts.md ("Normalisation") lists them and where they apply.

use std::collections::BTreeMap;

use serde_json::Value;

/// A JSON document (policy, filter policy) in canonical text: object keys sorted, no
/// whitespace. Absent, blank, `{}` and `null` all mean "no document" (`None`): clouds
/// return one where a manifest has the other. Text that is not JSON is kept as written
/// (trimmed), so the cloud's refusal is what the user sees rather than a silent match.
pub fn json_document(text: Option<&str>) -> Option<String> {
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let entries: BTreeMap<String, Value> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(entries.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => None,
        Ok(Value::Object(map)) if map.is_empty() => None,
        Ok(value) => serde_json::to_string(&sorted(value)).ok(),
        Err(_) => Some(text.to_owned()),
    }
}

/// An AWS KMS key reference as the observed side should read it: the desired spelling
/// when both name the same key. A key is named by its ID or its key ARN
/// (`arn:aws:kms:<region>:<account>:key/<id>`), an alias by `alias/<name>` or its alias ARN;
/// S3 and other services may return the ARN for what was set as an ID or name. An alias
/// and the key it points at cannot be matched without a KMS call, so they stay different
/// (S3 returns the reference as it was set, so that only shows when the manifest changes
/// from one to the other — which is a change, not drift).
pub fn kms_key(desired: Option<&str>, observed: Option<&str>) -> Option<String> {
    /// `key/<id>` or `alias/<name>`, and the ARN's region and account when given.
    fn parts(reference: &str) -> (String, Option<(&str, &str)>) {
        let reference = reference.trim();
        if let Some(rest) = reference.strip_prefix("arn:")
            && let [_partition, "kms", region, account, resource] = rest.splitn(5, ':').collect::<Vec<_>>()[..]
        {
            return (resource.to_owned(), Some((region, account)));
        }
        if reference.starts_with("alias/") || reference.starts_with("key/") {
            (reference.to_owned(), None)
        } else {
            (format!("key/{reference}"), None)
        }
    }
    let observed = observed?;
    let Some(desired) = desired else {
        return Some(observed.to_owned());
    };
    let ((want, want_place), (got, got_place)) = (parts(desired), parts(observed));
    // Two ARNs must agree on region and account too: same ID elsewhere is another key.
    let same_place = match (want_place, got_place) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if want == got && same_place {
        Some(desired.to_owned())
    } else {
        Some(observed.to_owned())
    }
}

/// A boolean a cloud returns as text (`"true"`, `"True"`, `"TRUE"`); anything else — absent
/// included — is false, the default of every such flag.
pub fn flag(observed: Option<&str>) -> bool {
    observed.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Optional text where the cloud returns empty for unset (an SNS display name, a Lambda
/// description): empty and absent are one value, spelled empty.
pub fn text_or_empty(value: Option<&str>) -> String {
    value.map(str::trim).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_key_order_and_whitespace_do_not_matter() {
        assert_eq!(
            json_document(Some("{\"b\": 1, \"a\": [ {\"d\":1, \"c\":2} ]}")),
            json_document(Some("{\"a\":[{\"c\":2,\"d\":1}],\"b\":1}"))
        );
        // Array order is meaning (a statement list, an allowed-values list): kept.
        assert_eq!(json_document(Some("{\"a\": [2, 1]}")).as_deref(), Some("{\"a\":[2,1]}"));
    }

    #[test]
    fn json_empty_and_absent_are_one() {
        for none in [None, Some(""), Some("  "), Some("{}"), Some(" { } "), Some("null")] {
            assert_eq!(json_document(none), None, "{none:?}");
        }
        // Not JSON: kept, so the cloud's own error surfaces.
        assert_eq!(json_document(Some(" {nope ")).as_deref(), Some("{nope"));
    }

    #[test]
    fn kms_arn_and_id_of_one_key_are_one() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let arn = format!("arn:aws:kms:eu-west-1:111122223333:key/{id}");
        assert_eq!(kms_key(Some(id), Some(&arn)).as_deref(), Some(id));
        assert_eq!(kms_key(Some(&arn), Some(id)).as_deref(), Some(arn.as_str()));
        let alias_arn = "arn:aws:kms:eu-west-1:111122223333:alias/data";
        assert_eq!(
            kms_key(Some("alias/data"), Some(alias_arn)).as_deref(),
            Some("alias/data")
        );
        assert_eq!(
            kms_key(Some("arn:aws-us-gov:kms:us-gov-west-1:1:key/k"), Some("k")).as_deref(),
            Some("arn:aws-us-gov:kms:us-gov-west-1:1:key/k")
        );
    }

    #[test]
    fn kms_other_keys_stay_different() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        // Another account's key with the same ID, another alias, an alias for a key ID.
        let mine = format!("arn:aws:kms:eu-west-1:111122223333:key/{id}");
        let theirs = format!("arn:aws:kms:eu-west-1:444455556666:key/{id}");
        assert_eq!(kms_key(Some(&mine), Some(&theirs)), Some(theirs.clone()));
        assert_eq!(kms_key(Some("alias/a"), Some("alias/b")).as_deref(), Some("alias/b"));
        assert_eq!(kms_key(Some("alias/data"), Some(id)).as_deref(), Some(id));
        // Nothing observed, or nothing desired: the observed value as it is.
        assert_eq!(kms_key(Some(id), None), None);
        assert_eq!(kms_key(None, Some(id)).as_deref(), Some(id));
    }

    #[test]
    fn flags_read_any_case_and_default_false() {
        assert!(flag(Some("True")) && flag(Some("true")) && flag(Some(" TRUE ")));
        assert!(!flag(Some("false")) && !flag(Some("")) && !flag(None) && !flag(Some("yes")));
    }

    #[test]
    fn empty_text_and_absent_text_are_one() {
        assert_eq!(text_or_empty(None), text_or_empty(Some("")));
        assert_eq!(text_or_empty(Some(" orders ")), "orders");
    }
}
