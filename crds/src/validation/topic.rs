//! Topic checks: SNS naming, FIFO rules, subscription targets and filter policies.

use std::collections::BTreeMap;

use super::{FieldError, fifo_name, in_range, name_error, pubsub_name, tags};
use crate::provider_config::Cloud;
use crate::topic::{Subscription, SubscriptionProtocol, TopicSpec};

/// Checks a Topic spec against the rules of the target cloud.
pub fn topic(name: &str, name_field: &str, spec: &TopicSpec, cloud: Cloud) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if cloud == Cloud::Aws {
        if let Some(problem) = sns_name(name, spec.fifo) {
            errors.push(name_error(name_field, name, "SNS topic", &problem));
        }
        if spec.aws.as_ref().is_some_and(|a| a.content_based_deduplication) && !spec.fifo {
            errors.push(FieldError::new(
                "spec.aws.contentBasedDeduplication",
                "applies to FIFO topics only: set spec.fifo: true or remove it",
            ));
        }
    }
    if cloud == Cloud::Gcp {
        if let Some(problem) = pubsub_name(name) {
            errors.push(name_error(name_field, name, "Pub/Sub topic", &problem));
        }
        errors.extend(tags(&spec.tags, cloud));
        in_range(
            &mut errors,
            "spec.gcp.messageRetentionSeconds",
            spec.gcp.as_ref().and_then(|g| g.message_retention_seconds),
            600..=2_678_400,
        );
    }
    // The first index each target appears at, to name the duplicate's original.
    let mut seen: BTreeMap<(SubscriptionProtocol, String), usize> = BTreeMap::new();
    for (i, s) in spec.subscriptions.iter().enumerate() {
        let field = format!("spec.subscriptions[{i}]");
        errors.extend(subscription(&field, s));
        if spec.fifo && s.protocol != SubscriptionProtocol::Queue {
            errors.push(FieldError::new(
                format!("{field}.protocol"),
                format!(
                    "FIFO topics deliver to queues only, not {}: use a Queue subscription or a non-FIFO topic",
                    s.protocol
                ),
            ));
        }
        if let Some(target) = target(s) {
            match seen.get(&(s.protocol, target.to_owned())) {
                Some(first) => errors.push(FieldError::new(
                    field,
                    format!("duplicates spec.subscriptions[{first}]: list each target once"),
                )),
                None => {
                    seen.insert((s.protocol, target.to_owned()), i);
                }
            }
        }
    }
    errors.extend(tags(&spec.tags, cloud));
    errors
}

/// What a subscription delivers to, as the user wrote it.
fn target(s: &Subscription) -> Option<&str> {
    match s.protocol {
        SubscriptionProtocol::Queue => s.queue_ref.as_ref().map(|r| r.name.as_str()),
        SubscriptionProtocol::Function => s.function_ref.as_ref().map(|r| r.name.as_str()),
        SubscriptionProtocol::Https | SubscriptionProtocol::Email => s.endpoint.as_deref(),
    }
}

fn subscription(field: &str, s: &Subscription) -> Vec<FieldError> {
    use SubscriptionProtocol::*;
    let mut errors = Vec::new();
    let protocol = s.protocol;
    let present = [
        ("queueRef", s.queue_ref.is_some()),
        ("functionRef", s.function_ref.is_some()),
        ("endpoint", s.endpoint.is_some()),
    ];
    let needed = match protocol {
        Queue => "queueRef",
        Function => "functionRef",
        Https | Email => "endpoint",
    };
    for (name, is_set) in present {
        if name == needed && !is_set {
            errors.push(FieldError::new(
                format!("{field}.{name}"),
                format!("is required for protocol {protocol}"),
            ));
        } else if name != needed && is_set {
            errors.push(FieldError::new(
                format!("{field}.{name}"),
                format!("does not apply to protocol {protocol}: remove it, or set {needed} instead"),
            ));
        }
    }
    let empty_ref = |r: &Option<crate::common::LocalRef>| r.as_ref().is_some_and(|r| r.name.is_empty());
    for (name, r) in [("queueRef", &s.queue_ref), ("functionRef", &s.function_ref)] {
        if empty_ref(r) {
            errors.push(FieldError::new(
                format!("{field}.{name}.name"),
                "is empty: name an object",
            ));
        }
    }
    if let Some(endpoint) = &s.endpoint {
        let problem = match protocol {
            Https if !https_url(endpoint) => Some("must be an https:// URL with a host, e.g. https://example.com/hook"),
            Email if !email_address(endpoint) => Some("must be an email address, e.g. ops@example.com"),
            _ => None,
        };
        if let Some(problem) = problem {
            errors.push(FieldError::new(format!("{field}.endpoint"), problem));
        }
    }
    if s.raw_message_delivery && matches!(protocol, Function | Email) {
        errors.push(FieldError::new(
            format!("{field}.rawMessageDelivery"),
            format!("applies to Queue and Https subscriptions only, not {protocol}: remove it"),
        ));
    }
    if let Some(policy) = &s.filter_policy {
        let problem = match serde_json::from_str::<serde_json::Value>(policy) {
            Ok(serde_json::Value::Object(map)) if map.is_empty() => {
                Some("is an empty object: remove filterPolicy to deliver every message".to_owned())
            }
            Ok(serde_json::Value::Object(_)) => None,
            Ok(_) => Some("must be a JSON object, e.g. {\"event\": [\"created\"]}".to_owned()),
            Err(e) => Some(format!(
                "is not valid JSON ({e}): write a JSON object, e.g. {{\"event\": [\"created\"]}}"
            )),
        };
        if let Some(problem) = problem {
            errors.push(FieldError::new(format!("{field}.filterPolicy"), problem));
        }
    }
    errors
}

fn https_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && !text.chars().any(char::is_whitespace)
}

fn email_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// SNS topic names: 1 to 256 characters.
fn sns_name(name: &str, fifo: bool) -> Option<String> {
    fifo_name(name, fifo, 256, "topic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> TopicSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn sns_names() {
        assert_eq!(sns_name("orders", false), None);
        assert_eq!(sns_name("Orders_2-x.fifo", true), None);
        assert!(sns_name("orders", true).expect("needs suffix").contains(".fifo"));
        assert!(sns_name("orders.fifo", false).expect("not fifo").contains("spec.fifo"));
        assert!(sns_name("my.topic", false).is_some());
        assert!(sns_name(&"t".repeat(257), false).is_some());
        assert_eq!(sns_name(&"t".repeat(256), false), None);
        assert!(sns_name(".fifo", true).is_some());
        assert!(sns_name("", false).is_some());
    }

    #[test]
    fn a_valid_spec_has_no_errors() {
        let s = spec(serde_json::json!({
            "displayName": "Orders",
            "tags": {"team": "orders"},
            "subscriptions": [
                {"protocol": "Queue", "queueRef": {"name": "q"}, "rawMessageDelivery": true,
                 "filterPolicy": "{\"event\": [\"created\"]}"},
                {"protocol": "Function", "functionRef": {"name": "f"}},
                {"protocol": "Https", "endpoint": "https://example.com/hook", "rawMessageDelivery": true},
                {"protocol": "Email", "endpoint": "ops@example.com"}
            ]
        }));
        assert_eq!(topic("orders", "metadata.name", &s, Cloud::Aws), vec![]);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let s = spec(serde_json::json!({
            "aws": {"contentBasedDeduplication": true},
            "tags": {"aws:x": "y"},
            "subscriptions": [
                {"protocol": "Queue", "endpoint": "https://example.com"},
                {"protocol": "Https", "endpoint": "http://example.com"},
                {"protocol": "Email", "endpoint": "not-an-address", "rawMessageDelivery": true},
                {"protocol": "Queue", "queueRef": {"name": "q"}, "filterPolicy": "[1]"},
                {"protocol": "Queue", "queueRef": {"name": "q"}, "filterPolicy": "{nope"},
                {"protocol": "Function", "functionRef": {"name": ""}, "filterPolicy": "{}"}
            ]
        }));
        let errors = topic("bad name", "metadata.name", &s, Cloud::Aws);
        let messages: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        assert_eq!(
            fields(errors),
            [
                "metadata.name",
                "spec.aws.contentBasedDeduplication",
                "spec.subscriptions[0].queueRef",
                "spec.subscriptions[0].endpoint",
                "spec.subscriptions[1].endpoint",
                "spec.subscriptions[2].endpoint",
                "spec.subscriptions[2].rawMessageDelivery",
                "spec.subscriptions[3].filterPolicy",
                "spec.subscriptions[4].filterPolicy",
                "spec.subscriptions[4]",
                "spec.subscriptions[5].functionRef.name",
                "spec.subscriptions[5].filterPolicy",
                "spec.tags.aws:x",
            ],
            "{messages:#?}"
        );
        assert!(
            messages[9].contains("duplicates spec.subscriptions[3]"),
            "{}",
            messages[9]
        );
        assert!(
            messages[2].contains("is required for protocol Queue"),
            "{}",
            messages[2]
        );
    }

    #[test]
    fn fifo_topics_deliver_to_queues_only() {
        let s = spec(serde_json::json!({
            "fifo": true,
            "aws": {"contentBasedDeduplication": true},
            "subscriptions": [
                {"protocol": "Queue", "queueRef": {"name": "q"}},
                {"protocol": "Email", "endpoint": "ops@example.com"}
            ]
        }));
        let errors = topic("events", "metadata.name", &s, Cloud::Aws);
        assert_eq!(
            fields(errors.clone()),
            ["metadata.name", "spec.subscriptions[1].protocol"],
            "{errors:?}"
        );
        assert!(
            errors[0].message.contains("must end in '.fifo'"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.contains("set spec.externalName"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn addresses_and_urls() {
        assert!(https_url("https://example.com"));
        assert!(https_url("https://example.com:8443/a?b=c"));
        assert!(!https_url("https://"));
        assert!(!https_url("https:///path"));
        assert!(!https_url("https://exa mple.com"));
        assert!(email_address("a.b+c@example.co.uk"));
        assert!(!email_address("a@b"));
        assert!(!email_address("@example.com"));
        assert!(!email_address("a@@example.com"));
        assert!(!email_address("a b@example.com"));
    }
}
