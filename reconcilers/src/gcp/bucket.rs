//! GCS buckets over the JSON API: labels (tags), versioning, public access prevention with
//! uniform bucket-level access, the default Cloud KMS key, the default storage class. The
//! location comes from the ProviderConfig and is fixed once the bucket exists.

use std::sync::Arc;

use async_trait::async_trait;
use cloudkit_crds::bucket::{GcsStorageClass, PublicAccessBlock};
use cloudkit_crds::reason::Reason;
use cloudkit_drift::{FieldDiff, touches};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Clients, Project, labels_patch, labels_to_tags};
use crate::bucket::BucketState;
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct GcsBucket {
    project: Arc<Project>,
}

impl GcsBucket {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        Ok(Self {
            project: clients.project(ctx)?,
        })
    }

    fn outputs(&self, name: &str, found: &Value) -> Outputs {
        let self_link = found["selfLink"].as_str().map(str::to_owned);
        let mut extra = std::collections::BTreeMap::new();
        if let Some(link) = &self_link {
            extra.insert("selfLink".to_owned(), link.clone());
        }
        if let Some(location) = found["location"].as_str() {
            extra.insert("location".to_owned(), location.to_owned());
        }
        Outputs {
            url: Some(format!("gs://{name}")),
            // `arn` is the cloud identifier in every status: the bucket's self link here.
            arn: self_link,
            id: Some(name.to_owned()),
            extra,
        }
    }

    /// The body fields setting everything `desired` asks for (all of them at create, only
    /// those `diffs` touch on update). Public access prevention and uniform bucket-level
    /// access always travel together: `blockPublicAccess` is the pair.
    fn settings(desired: &BucketState, diffs: Option<&[FieldDiff]>) -> Map<String, Value> {
        let wants = |field: &str| diffs.is_none_or(|d| touches(d, field));
        let mut body = Map::new();
        if wants("tags") {
            let removed = diffs
                .unwrap_or_default()
                .iter()
                .filter(|d| d.desired.is_null())
                .filter_map(|d| d.path.strip_prefix("tags."))
                .map(str::to_owned);
            body.insert("labels".into(), labels_patch(&desired.tags, removed));
        }
        if wants("versioning") {
            body.insert("versioning".into(), json!({"enabled": desired.versioning}));
        }
        if wants("publicAccessBlock") {
            let blocked = blocked(&desired.public_access_block);
            body.insert(
                "iamConfiguration".into(),
                json!({
                    "uniformBucketLevelAccess": {"enabled": blocked},
                    "publicAccessPrevention": if blocked { "enforced" } else { "inherited" },
                }),
            );
        }
        if wants("encryptionKeyId") {
            // A null key clears it: back to Google-managed encryption. The null goes inside
            // `encryption` (PATCH clears nested fields on GCS) because gcp-storage-emulator
            // skips top-level nulls.
            body.insert(
                "encryption".into(),
                json!({"defaultKmsKeyName": desired.encryption_key_id}),
            );
        }
        if wants("storageClass") {
            body.insert(
                "storageClass".into(),
                json!(class_name(desired.storage_class.unwrap_or_default())),
            );
        }
        body
    }
}

/// GCS has one pair of switches; "every S3-style block on" is the pair on.
fn blocked(block: &PublicAccessBlock) -> bool {
    block.block_public_acls && block.ignore_public_acls && block.block_public_policy && block.restrict_public_buckets
}

fn block_for(blocked: bool) -> PublicAccessBlock {
    PublicAccessBlock {
        block_public_acls: blocked,
        ignore_public_acls: blocked,
        block_public_policy: blocked,
        restrict_public_buckets: blocked,
    }
}

fn class_name(class: GcsStorageClass) -> &'static str {
    match class {
        GcsStorageClass::Standard => "STANDARD",
        GcsStorageClass::Nearline => "NEARLINE",
        GcsStorageClass::Coldline => "COLDLINE",
        GcsStorageClass::Archive => "ARCHIVE",
    }
}

/// A class CloudKit cannot name (`MULTI_REGIONAL`, `REGIONAL`, legacy `DURABLE_REDUCED_AVAILABILITY`)
/// is reported as its own error rather than mistaken for one it knows.
fn parse_class(name: &str, bucket: &str) -> Result<Option<GcsStorageClass>, CloudError> {
    match name.to_ascii_uppercase().as_str() {
        "" | "STANDARD" => Ok(None),
        "NEARLINE" => Ok(Some(GcsStorageClass::Nearline)),
        "COLDLINE" => Ok(Some(GcsStorageClass::Coldline)),
        "ARCHIVE" => Ok(Some(GcsStorageClass::Archive)),
        other => Err(CloudError::Rejected {
            reason: Reason::CloudRejected,
            message: format!(
                "bucket '{bucket}' has storage class {other}, which CloudKit does not manage: change it to \
                 STANDARD, NEARLINE, COLDLINE or ARCHIVE in GCS first"
            ),
        }),
    }
}

#[async_trait]
impl ExternalResource for GcsBucket {
    type State = BucketState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<BucketState>>, CloudError> {
        let found = match self
            .project
            .storage("GetBucket", name, Method::GET, &format!("b/{name}"), &[], None)
            .await
        {
            Ok(found) => found,
            Err(f) if f.status == Some(404) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        // A bucket's location never changes: one elsewhere than the ProviderConfig says (an
        // adopted one, or the ProviderConfig edited) is not this manifest's bucket.
        let location = found["location"].as_str().unwrap_or_default();
        if !location.is_empty() && !location.eq_ignore_ascii_case(&self.project.location) {
            return Err(CloudError::Rejected {
                reason: Reason::ImmutableFieldChanged,
                message: format!(
                    "bucket '{name}' is in location {location} but the ProviderConfig's spec.gcp.location is {}: a \
                     bucket's location is fixed; use a ProviderConfig for {location}, or another bucket name",
                    self.project.location
                ),
            });
        }
        let iam = &found["iamConfiguration"];
        let is_blocked = iam["publicAccessPrevention"].as_str() == Some("enforced")
            && iam["uniformBucketLevelAccess"]["enabled"].as_bool() == Some(true);
        let state = BucketState {
            versioning: found["versioning"]["enabled"].as_bool().unwrap_or(false),
            tags: labels_to_tags(&found["labels"]),
            public_access_block: block_for(is_blocked),
            encryption_key_id: found["encryption"]["defaultKmsKeyName"]
                .as_str()
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            public_access: None,
            default_encryption_scope: None,
            storage_class: parse_class(found["storageClass"].as_str().unwrap_or_default(), name)?,
        };
        Ok(Some(Observed::ready(state, self.outputs(name, &found))))
    }

    async fn create(&self, name: &str, desired: &BucketState) -> Result<(), CloudError> {
        // Everything at once, as real GCS takes it; the emulators ignore all but the name
        // (labels, versioning, …), and the controller's update after create converges those.
        let mut body = Self::settings(desired, None);
        body.insert("name".into(), json!(name));
        body.insert("location".into(), json!(self.project.location));
        let project = self.project.id.clone();
        match self
            .project
            .storage(
                "InsertBucket",
                name,
                Method::POST,
                "b",
                &[("project", project.as_str())],
                Some(&Value::Object(body)),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Bucket names are global. 409 after a lost answer means it is ours already;
            // it may as well be another project's: a read tells which (403 then).
            Err(f) if f.status == Some(409) => {
                match self
                    .project
                    .storage("GetBucket", name, Method::GET, &format!("b/{name}"), &[], None)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(g) if g.status == Some(403) => Err(CloudError::Rejected {
                        reason: Reason::AlreadyExists,
                        message: format!(
                            "bucket name '{name}' is taken by another project (GCS bucket names are global): \
                             choose another name"
                        ),
                    }),
                    Err(g) => Err(g.into()),
                }
            }
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &BucketState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let body = Self::settings(desired, Some(diffs));
        if body.is_empty() {
            return Ok(());
        }
        // PATCH changes only the fields sent (labels key by key): everything else on the
        // bucket (CORS, lifecycle, other tools' labels) stays as it is.
        self.project
            .storage(
                "PatchBucket",
                name,
                Method::PATCH,
                &format!("b/{name}"),
                &[],
                Some(&Value::Object(body)),
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        match self
            .project
            .storage("DeleteBucket", name, Method::DELETE, &format!("b/{name}"), &[], None)
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.status == Some(404) => Ok(()),
            // GCS deletes only empty buckets; deleting data is never implied.
            Err(f) if f.status == Some(409) => Err(CloudError::Transient {
                reason: Reason::BucketNotEmpty,
                message: format!(
                    "bucket '{name}' is not empty: delete its objects, or set deletionPolicy: Retain to keep it"
                ),
                retry_after: Some(std::time::Duration::from_secs(60)),
            }),
            Err(f) => Err(f.into()),
        }
    }

    fn owner_tag(&self, owner: &str) -> crate::OwnerTag {
        super::owner_tag(owner)
    }
}

#[cfg(test)]
mod tests {
    use cloudkit_crds::common::Tags;

    use super::*;

    fn state() -> BucketState {
        BucketState {
            versioning: true,
            tags: Tags::from([("team".to_owned(), "data".to_owned())]),
            public_access_block: block_for(true),
            encryption_key_id: None,
            public_access: None,
            default_encryption_scope: None,
            storage_class: Some(GcsStorageClass::Nearline),
        }
    }

    #[test]
    fn create_sends_every_setting() {
        let body = GcsBucket::settings(&state(), None);
        assert_eq!(body["labels"], json!({"team": "data"}));
        assert_eq!(body["versioning"], json!({"enabled": true}));
        assert_eq!(
            body["iamConfiguration"],
            json!({"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"})
        );
        assert_eq!(body["encryption"], json!({"defaultKmsKeyName": null}));
        assert_eq!(body["storageClass"], json!("NEARLINE"));
    }

    #[test]
    fn update_sends_only_what_differs_and_removes_labels_by_null() {
        let diffs = [
            FieldDiff {
                path: "tags.old".into(),
                desired: Value::Null,
                observed: json!("x"),
            },
            FieldDiff {
                path: "versioning".into(),
                desired: json!(true),
                observed: json!(false),
            },
        ];
        let body = GcsBucket::settings(&state(), Some(&diffs));
        assert_eq!(body.keys().collect::<Vec<_>>(), ["labels", "versioning"]);
        assert_eq!(body["labels"], json!({"team": "data", "old": null}));
    }

    #[test]
    fn storage_classes_round_trip() {
        for class in [
            GcsStorageClass::Nearline,
            GcsStorageClass::Coldline,
            GcsStorageClass::Archive,
        ] {
            assert_eq!(parse_class(class_name(class), "b").expect("known"), Some(class));
        }
        assert_eq!(parse_class("STANDARD", "b").expect("known"), None);
        assert!(parse_class("REGIONAL", "b").is_err());
    }
}
