//! Every condition reason CloudKit writes, and whether it heals without a human. Status,
//! Events, metrics and docs/troubleshooting.md all name reasons from here, so a reason
//! cannot be written that the troubleshooting page (a test checks it) does not explain.

use std::fmt;

/// Whether the situation a reason reports goes away without anyone changing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heals {
    /// Not a problem: the object is Ready or on its way.
    Progress,
    /// Waits for something that is already under way (a dependency reconciling, the cloud
    /// provisioning); never escalated, because what it waits for reports its own trouble.
    Waits,
    /// Usually passes by itself (a ProviderConfig or Secret applied a moment later, a cloud
    /// outage, permissions granted outside Kubernetes). Retried; reported `Stalled` once it
    /// has lasted longer than the controller's `--stall-after` on the same generation.
    Usually,
    /// A human must change something; retrying the same request cannot help.
    Never,
}

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident => $heals:ident,)*) => {
        /// A condition reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }

            pub fn heals(self) -> Heals {
                match self {
                    $(Reason::$name => Heals::$heals,)*
                }
            }
        }
    };
}

reasons! {
    /// The cloud resource matches the manifest.
    Available => Progress,
    /// The last reconcile found nothing to do or finished its changes.
    ReconcileSuccess => Progress,
    /// The cloud resource is being created.
    Creating => Progress,
    /// The cloud accepted the change and is still applying it (a DynamoDB table CREATING).
    Provisioning => Waits,
    /// The cloud accepted the delete and is still carrying it out (a DynamoDB table DELETING);
    /// the object is released once the resource is gone.
    Deleting => Waits,
    /// No field differs from the manifest (condition `Drifted=False`).
    InSync => Progress,
    /// Fields were changed outside CloudKit and set back (`driftPolicy: Correct`).
    DriftCorrected => Progress,
    /// Fields were changed outside CloudKit and left so (`driftPolicy: Report`): condition
    /// `Drifted=True`, the fields in `status.drift`.
    DriftDetected => Progress,
    /// The cloud resource was deleted outside CloudKit and `driftPolicy` says not to make
    /// it again.
    ExternalResourceMissing => Never,
    /// The `Reconciling` reason while an error is retried.
    RetryingAfterError => Progress,
    /// A ProviderConfig's settings are valid and its credentials present.
    Valid => Progress,
    /// A referenced object exists but is not Ready at its generation yet.
    DependencyNotReady => Waits,
    /// A referenced object does not exist (yet).
    DependencyNotFound => Usually,
    /// Deletion waits for the objects that still reference this one.
    DependentsExist => Usually,
    /// `spec.providerConfigRef` names a ProviderConfig that does not exist (yet).
    ProviderConfigNotFound => Usually,
    /// The ProviderConfig's credentials Secret does not exist (yet).
    CredentialsNotFound => Usually,
    /// A cloud call failed in a way that usually passes (network, throttling, 5xx).
    ProviderError => Usually,
    /// The cloud refused the credentials permission (HTTP 403); may be granted later.
    AccessDenied => Usually,
    /// The identity provider (Entra ID) gave no token: it refused the client secret or the
    /// federated token, or could not be reached. Secrets are rotated and outages pass, so
    /// it is retried.
    TokenRequestFailed => Usually,
    /// The bucket still holds objects, so it cannot be deleted.
    BucketNotEmpty => Usually,
    /// A Kubernetes API call (Secret, status) failed.
    KubernetesError => Usually,
    /// The spec breaks a rule the CRD schema cannot express.
    InvalidSpec => Never,
    /// The ProviderConfig's settings are invalid.
    InvalidProviderConfig => Never,
    /// The credentials Secret lacks the keys the cloud needs.
    CredentialsInvalid => Never,
    /// The ProviderConfig asks for the controller's own (ambient) credentials in a namespace
    /// the operator has not allowed them in.
    CredentialsNotAllowed => Never,
    /// The cloud of the ProviderConfig cannot serve this kind or a field set in the spec.
    UnsupportedForProvider => Never,
    /// References form a cycle.
    DependencyCycle => Never,
    /// A resource with this name exists in the cloud and was not created by this object.
    AlreadyExists => Never,
    /// The resource carries another object's owner tag (`cloudkit.dev/owner`): another
    /// namespace or cluster manages it.
    OwnedByAnother => Never,
    /// The name is taken by someone else in the cloud's global namespace.
    ExternalNameTaken => Never,
    /// A field the cloud fixes at creation differs from the live resource.
    ImmutableFieldChanged => Never,
    /// The ProviderConfig now points at another cloud, region, account or endpoint than the
    /// one the resource was created in.
    ProviderChanged => Never,
    /// The cloud rejected the request as it stands.
    CloudRejected => Never,
    /// The request could not be built from the spec.
    InvalidRequest => Never,
    /// The controller could not make sense of what it saw; report it as a bug.
    InternalError => Never,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The troubleshooting page explains every reason the code can write.
    #[test]
    fn troubleshooting_page_covers_every_reason() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/troubleshooting.md");
        let page = std::fs::read_to_string(path).unwrap_or_default();
        let missing: Vec<&str> = Reason::ALL
            .iter()
            .map(|r| r.as_str())
            .filter(|r| {
                !page
                    .lines()
                    .any(|l| l.starts_with("### ") && l.contains(&format!("`{r}`")))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "docs/troubleshooting.md has no `### \\`Reason\\`` section for {missing:?}"
        );
    }

    #[test]
    fn names_are_unique_and_spelled_as_written() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(Reason::AccessDenied.to_string(), "AccessDenied");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
