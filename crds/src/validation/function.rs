//! Function checks: placeholder until the Function backend lands.

use super::FieldError;
use crate::function::FunctionSpec;
use crate::provider_config::Cloud;

/// Checks a Function spec against the rules of the target cloud.
pub fn function(_name: &str, _name_field: &str, _spec: &FunctionSpec, _cloud: Cloud) -> Vec<FieldError> {
    Vec::new()
}
