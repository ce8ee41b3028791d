//! Table checks: placeholder until the Table backend lands.

use super::FieldError;
use crate::provider_config::Cloud;
use crate::table::TableSpec;

/// Checks a Table spec against the rules of the target cloud.
pub fn table(_name: &str, _name_field: &str, _spec: &TableSpec, _cloud: Cloud) -> Vec<FieldError> {
    Vec::new()
}
