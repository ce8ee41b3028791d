//! Topic checks: placeholder until the Topic backend lands.

use super::FieldError;
use crate::provider_config::Cloud;
use crate::topic::TopicSpec;

/// Checks a Topic spec against the rules of the target cloud.
pub fn topic(_name: &str, _name_field: &str, _spec: &TopicSpec, _cloud: Cloud) -> Vec<FieldError> {
    Vec::new()
}
