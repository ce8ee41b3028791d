//! Bigtable tables: the column families with their garbage-collection rules, added,
//! changed and dropped in place, and deletion protection. The instance is the object's
//! `spec.gcp.instance` (placed into the context by the controller). Bigtable keeps one row
//! key of bytes and no key schema: `partitionKey` and `sortKey` name how the row key is
//! built, by convention, and are not stored (`unobserved`). Billing, TTL, indexes and tags
//! are refused for GCP by validation, so this backend reports them as unset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use cloudkit_crds::common::Tags;
use cloudkit_crds::reason::Reason;
use cloudkit_crds::table::{AttributeType, BillingMode, GcMode, KeyAttribute, StreamViewType};
use cloudkit_drift::{FieldDiff, touches};
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::modify_column_families_request::{
    Modification, modification::Mod,
};
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2::{
    ColumnFamily, CreateTableRequest, DeleteTableRequest, GcRule, GetTableRequest, ModifyColumnFamiliesRequest, Table,
    UpdateTableRequest,
    gc_rule::{Intersection, Rule, Union},
    table::View,
};
use prost_types::FieldMask;
use tonic::Code;

use super::{Clients, Project};
use crate::table::{BillingState, FamilyState, GcPolicyState, TableState};
use crate::{CloudError, ExternalResource, Observed, Outputs, ProviderContext};

pub struct BigtableTable {
    project: Arc<Project>,
    /// `projects/<p>/instances/<instance>`.
    instance: String,
}

impl BigtableTable {
    pub fn new(clients: &Clients, ctx: &ProviderContext) -> Result<Self, CloudError> {
        let project = clients.project(ctx)?;
        // Validation requires spec.gcp.instance on GCP; checked again so no call goes out
        // to an instance named by nothing.
        let instance = ctx.gcp_instance.clone().ok_or_else(|| CloudError::Rejected {
            reason: Reason::InvalidSpec,
            message: "a Table on GCP needs spec.gcp.instance: the Bigtable instance holding it".into(),
        })?;
        Ok(Self {
            instance: project.path("instances", &instance),
            project,
        })
    }

    fn path(&self, name: &str) -> String {
        format!("{}/tables/{name}", self.instance)
    }

    fn outputs(&self, name: &str) -> Outputs {
        Outputs {
            // `arn` is the cloud identifier in every status: the table's full name here.
            arn: Some(self.path(name)),
            id: Some(name.to_owned()),
            ..Default::default()
        }
    }

    async fn modify(&self, name: &str, modifications: Vec<Modification>) -> Result<(), CloudError> {
        if modifications.is_empty() {
            return Ok(());
        }
        let admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(ModifyColumnFamiliesRequest {
                name: self.path(name),
                modifications,
                ignore_warnings: false,
            })
            .await?;
        let mut client = admin;
        self.project
            .bigtable_call("ModifyColumnFamilies", name, client.modify_column_families(request))
            .await?;
        Ok(())
    }

    /// Sets deletion protection. UpdateTable answers with a long-running operation that is
    /// not waited on here: the controller observes again after an update (`settles_async`)
    /// and calls the table Ready only once the change shows.
    async fn protect(&self, name: &str, on: bool) -> Result<(), CloudError> {
        let mut admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(UpdateTableRequest {
                table: Some(Table {
                    name: self.path(name),
                    deletion_protection: on,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["deletion_protection".into()],
                }),
                ignore_warnings: false,
            })
            .await?;
        self.project
            .bigtable_call("UpdateTable", name, admin.update_table(request))
            .await?;
        Ok(())
    }
}

fn families(desired: &TableState) -> BTreeMap<String, FamilyState> {
    desired.column_families.clone().unwrap_or_default()
}

/// A family as the manifest wants it: its GC rule (none keeps every cell).
fn family(state: &FamilyState) -> ColumnFamily {
    ColumnFamily {
        gc_rule: state.gc_policy.as_ref().and_then(gc_rule),
        ..Default::default()
    }
}

/// The Bigtable GC rule of a policy: one rule, or both in a union or an intersection.
fn gc_rule(policy: &GcPolicyState) -> Option<GcRule> {
    let versions = policy.max_versions.map(Rule::MaxNumVersions);
    let age = policy
        .max_age_seconds
        .map(|seconds| Rule::MaxAge(prost_types::Duration { seconds, nanos: 0 }));
    let rule = match (versions, age) {
        (Some(v), Some(a)) => {
            let rules = vec![GcRule { rule: Some(v) }, GcRule { rule: Some(a) }];
            match policy.mode.unwrap_or_default() {
                GcMode::Union => Rule::Union(Union { rules }),
                GcMode::Intersection => Rule::Intersection(Intersection { rules }),
            }
        }
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return None,
    };
    Some(GcRule { rule: Some(rule) })
}

/// A GC rule found in Bigtable in the manifest's terms. A union or intersection of one rule
/// is that rule, and the order of two does not matter (Bigtable keeps either spelling as
/// sent, cbt and the console write both); what a manifest cannot say is kept as `other`.
fn gc_policy(rule: &GcRule) -> Option<GcPolicyState> {
    let one = |rule: &Rule| match rule {
        Rule::MaxNumVersions(n) => Some(GcPolicyState {
            max_versions: Some(*n),
            ..Default::default()
        }),
        Rule::MaxAge(d) if d.nanos == 0 => Some(GcPolicyState {
            max_age_seconds: Some(d.seconds),
            ..Default::default()
        }),
        _ => None,
    };
    let other = || GcPolicyState {
        other: Some(describe(rule)),
        ..Default::default()
    };
    let (rules, mode) = match rule.rule.as_ref()? {
        Rule::Union(u) => (&u.rules, GcMode::Union),
        Rule::Intersection(i) => (&i.rules, GcMode::Intersection),
        single => return Some(one(single).unwrap_or_else(other)),
    };
    let parts: Vec<Option<GcPolicyState>> = rules.iter().map(|r| r.rule.as_ref().and_then(one)).collect();
    let found = match parts.as_slice() {
        [Some(p)] => Some(p.clone()),
        [Some(a), Some(b)] => {
            let pick = |f: fn(&GcPolicyState) -> Option<i64>| f(a).xor(f(b));
            let versions = pick(|p| p.max_versions.map(i64::from)).and_then(|v| i32::try_from(v).ok());
            let age = pick(|p| p.max_age_seconds);
            // One of each, or it is not a policy the manifest can say (two age rules, ...).
            (versions.is_some() && age.is_some()).then_some(GcPolicyState {
                max_versions: versions,
                max_age_seconds: age,
                mode: Some(mode),
                other: None,
            })
        }
        _ => None,
    };
    Some(found.unwrap_or_else(other))
}

/// A GC rule written out as cbt writes it, for a drift report.
fn describe(rule: &GcRule) -> String {
    let join = |rules: &[GcRule], op: &str| {
        let parts: Vec<String> = rules.iter().map(describe).collect();
        format!("({})", parts.join(op))
    };
    match &rule.rule {
        None => "none".into(),
        Some(Rule::MaxNumVersions(n)) => format!("versions() > {n}"),
        Some(Rule::MaxAge(d)) => format!("age() > {}s {}ns", d.seconds, d.nanos),
        Some(Rule::Union(u)) => join(&u.rules, " || "),
        Some(Rule::Intersection(i)) => join(&i.rules, " && "),
    }
}

/// What the diffs ask of the families: the ones to create, to update (their GC rule) and
/// to drop. The diff paths are `columnFamilies.<family>` (a family added or dropped) and
/// `columnFamilies.<family>.gcPolicy[.<field>]` (its rule). Family names may hold dots, so
/// a path is matched against the wanted families and the rule's fields rather than split.
struct FamilyChanges {
    create: BTreeSet<String>,
    update: BTreeSet<String>,
    drop: BTreeSet<String>,
}

/// The paths below a family that are its GC rule.
const RULE_PATHS: [&str; 5] = [
    "gcPolicy",
    "gcPolicy.maxVersions",
    "gcPolicy.maxAgeSeconds",
    "gcPolicy.mode",
    "gcPolicy.other",
];

fn family_changes(want: &BTreeMap<String, FamilyState>, diffs: &[FieldDiff]) -> FamilyChanges {
    let mut changes = FamilyChanges {
        create: BTreeSet::new(),
        update: BTreeSet::new(),
        drop: BTreeSet::new(),
    };
    // A whole family as observed is an object holding at most `gcPolicy`; a rule found is
    // never empty and holds none of that key.
    let is_family = |v: &serde_json::Value| v.as_object().is_some_and(|o| o.keys().all(|k| k == "gcPolicy"));
    for d in diffs {
        let Some(rest) = d.path.strip_prefix("columnFamilies.") else {
            continue;
        };
        let rule_of = want.keys().find(|name| {
            RULE_PATHS.iter().any(|p| {
                rest.strip_prefix(name.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|r| r == *p)
            }) && !(d.desired.is_null() && is_family(&d.observed))
        });
        if let Some(name) = rule_of {
            changes.update.insert(name.clone());
        } else if want.contains_key(rest) {
            changes.create.insert(rest.to_owned());
        } else {
            // Found and not listed: dropped, as the manifest says (its data goes with it).
            changes.drop.insert(rest.to_owned());
        }
    }
    changes
}

#[async_trait]
impl ExternalResource for BigtableTable {
    type State = TableState;

    async fn observe(&self, name: &str) -> Result<Option<Observed<TableState>>, CloudError> {
        let mut admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(GetTableRequest {
                name: self.path(name),
                view: View::SchemaView as i32,
            })
            .await?;
        let table = match self
            .project
            .bigtable_call("GetTable", name, admin.get_table(request))
            .await
        {
            Ok(table) => table,
            Err(f) if f.code == Some(Code::NotFound) => return Ok(None),
            Err(f) => return Err(f.into()),
        };
        let key = |name: &str| KeyAttribute {
            name: name.to_owned(),
            type_: AttributeType::Binary,
        };
        // Keys and tags are not stored (see `unobserved`); billing, TTL, PITR, streams and
        // indexes are what every Bigtable table is.
        let state = TableState {
            partition_key: key("rowKey"),
            sort_key: None,
            billing: BillingState {
                mode: BillingMode::OnDemand,
                read_capacity: None,
                write_capacity: None,
            },
            ttl_attribute: None,
            point_in_time_recovery: false,
            stream_view_type: StreamViewType::Disabled,
            deletion_protection: table.deletion_protection,
            global_secondary_indexes: Default::default(),
            tags: Tags::new(),
            column_families: Some(
                table
                    .column_families
                    .into_iter()
                    .map(|(name, family)| {
                        let state = FamilyState {
                            gc_policy: family.gc_rule.as_ref().and_then(gc_policy),
                        };
                        (name, state)
                    })
                    .collect(),
            ),
        };
        Ok(Some(Observed::ready(state, self.outputs(name))))
    }

    async fn create(&self, name: &str, desired: &TableState) -> Result<(), CloudError> {
        let mut admin = self.project.bigtable().await?;
        let table = Table {
            column_families: families(desired)
                .iter()
                .map(|(name, state)| (name.clone(), family(state)))
                .collect(),
            deletion_protection: desired.deletion_protection,
            ..Default::default()
        };
        let request = self
            .project
            .bigtable_request(CreateTableRequest {
                parent: self.instance.clone(),
                table_id: name.to_owned(),
                table: Some(table),
                initial_splits: Vec::new(),
            })
            .await?;
        match self
            .project
            .bigtable_call("CreateTable", name, admin.create_table(request))
            .await
        {
            Ok(_) => Ok(()),
            // A retry after a lost answer: the table is known as this object's by its
            // external-name record alone (Bigtable tables carry no labels).
            Err(f) if f.code == Some(Code::AlreadyExists) => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn update(&self, name: &str, desired: &TableState, diffs: &[FieldDiff]) -> Result<(), CloudError> {
        let protection = touches(diffs, "deletionProtection");
        // A protected table's families cannot be dropped: protection goes off before the
        // families change, and on after.
        if protection && !desired.deletion_protection {
            self.protect(name, false).await?;
        }
        let want = families(desired);
        let changes = family_changes(&want, diffs);
        let state = |id: &String| want.get(id).cloned().unwrap_or_default();
        let modifications = changes
            .create
            .iter()
            .map(|id| Modification {
                id: id.clone(),
                update_mask: None,
                r#mod: Some(Mod::Create(family(&state(id)))),
            })
            .chain(changes.update.iter().map(|id| Modification {
                id: id.clone(),
                // Only the rule: a family's value type (aggregates) is not CloudKit's.
                update_mask: Some(FieldMask {
                    paths: vec!["gc_rule".into()],
                }),
                r#mod: Some(Mod::Update(family(&state(id)))),
            }))
            .chain(changes.drop.iter().map(|id| Modification {
                id: id.clone(),
                update_mask: None,
                r#mod: Some(Mod::Drop(true)),
            }))
            .collect();
        self.modify(name, modifications).await?;
        if protection && desired.deletion_protection {
            self.protect(name, true).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), CloudError> {
        let mut admin = self.project.bigtable().await?;
        let request = self
            .project
            .bigtable_request(DeleteTableRequest { name: self.path(name) })
            .await?;
        match self
            .project
            .bigtable_call("DeleteTable", name, admin.delete_table(request))
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.code == Some(Code::NotFound) => Ok(()),
            // Deletion protection (or another precondition): a human decides, the data stays.
            Err(f) if f.code == Some(Code::FailedPrecondition) => Err(CloudError::Rejected {
                reason: Reason::CloudRejected,
                message: format!(
                    "{}; if the table is protected, set spec.deletionProtection: false first, or \
                     spec.deletionPolicy: Retain to keep it",
                    CloudError::from(f)
                ),
            }),
            Err(f) => Err(f.into()),
        }
    }

    /// An UpdateTable (deletion protection) is a long-running operation: observe again
    /// before calling the table Ready.
    fn settles_async(&self) -> bool {
        true
    }

    /// Bigtable stores no key schema and tables have no labels.
    fn unobserved(&self) -> &'static [&'static str] {
        &["partitionKey", "sortKey", "tags"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(versions: Option<i32>, age: Option<i64>, mode: Option<GcMode>) -> GcPolicyState {
        GcPolicyState {
            max_versions: versions,
            max_age_seconds: age,
            mode,
            other: None,
        }
    }

    fn versions(n: i32) -> GcRule {
        GcRule {
            rule: Some(Rule::MaxNumVersions(n)),
        }
    }

    fn age(seconds: i64, nanos: i32) -> GcRule {
        GcRule {
            rule: Some(Rule::MaxAge(prost_types::Duration { seconds, nanos })),
        }
    }

    #[test]
    fn policies_round_trip_through_gc_rules() {
        for p in [
            policy(Some(3), None, None),
            policy(None, Some(86_400), None),
            policy(Some(1), Some(60), Some(GcMode::Union)),
            policy(Some(2), Some(3_600), Some(GcMode::Intersection)),
        ] {
            let rule = gc_rule(&p).expect("a rule");
            assert_eq!(gc_policy(&rule), Some(p));
        }
        assert_eq!(gc_rule(&GcPolicyState::default()), None);
    }

    #[test]
    fn equal_rules_in_other_spellings_read_the_same() {
        // Age first (as cbt writes `maxage=1d || maxversions=2`), and a union of one rule.
        let swapped = GcRule {
            rule: Some(Rule::Union(Union {
                rules: vec![age(60, 0), versions(2)],
            })),
        };
        assert_eq!(
            gc_policy(&swapped),
            Some(policy(Some(2), Some(60), Some(GcMode::Union)))
        );
        let lone = GcRule {
            rule: Some(Rule::Intersection(Intersection {
                rules: vec![versions(4)],
            })),
        };
        assert_eq!(gc_policy(&lone), Some(policy(Some(4), None, None)));
        assert_eq!(gc_policy(&GcRule { rule: None }), None, "no rule keeps every cell");
    }

    #[test]
    fn rules_a_manifest_cannot_say_are_kept_as_other() {
        let nested = GcRule {
            rule: Some(Rule::Union(Union {
                rules: vec![
                    versions(1),
                    GcRule {
                        rule: Some(Rule::Intersection(Intersection {
                            rules: vec![versions(5), age(10, 0)],
                        })),
                    },
                ],
            })),
        };
        let found = gc_policy(&nested).expect("a policy");
        assert_eq!(
            found.other.as_deref(),
            Some("(versions() > 1 || (versions() > 5 && age() > 10s 0ns))")
        );
        assert_eq!(found.max_versions, None);
        let two_ages = GcRule {
            rule: Some(Rule::Union(Union {
                rules: vec![age(1, 0), age(2, 0)],
            })),
        };
        assert!(gc_policy(&two_ages).expect("a policy").other.is_some());
        assert!(gc_policy(&age(1, 500)).expect("a policy").other.is_some(), "sub-second");
    }

    #[test]
    fn diffs_name_the_families_to_create_update_and_drop() {
        let family = |p: Option<GcPolicyState>| FamilyState { gc_policy: p };
        let want: BTreeMap<String, FamilyState> = [
            ("new".to_owned(), family(None)),
            ("a.b".to_owned(), family(Some(policy(Some(2), None, None)))),
            ("a".to_owned(), family(None)),
        ]
        .into();
        let have: BTreeMap<String, FamilyState> = [
            ("a.b".to_owned(), family(Some(policy(Some(1), None, None)))),
            ("a".to_owned(), family(Some(policy(Some(1), None, None)))),
            ("gone".to_owned(), family(None)),
        ]
        .into();
        let mut have = have;
        // A family named like a wanted one's rule path is still a family.
        have.insert("a.gcPolicy".to_owned(), family(None));
        let mut want = want;
        want.insert("b".to_owned(), family(Some(policy(Some(1), None, None))));
        have.insert("b".to_owned(), family(None));
        let diffs = cloudkit_drift::diff(&want, &have).expect("diff");
        let diffs: Vec<FieldDiff> = diffs
            .into_iter()
            .map(|d| FieldDiff {
                path: format!("columnFamilies.{}", d.path),
                ..d
            })
            .collect();
        let changes = family_changes(&want, &diffs);
        let names = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(names(&changes.create), ["new"]);
        assert_eq!(names(&changes.update), ["a", "a.b", "b"], "a dotted name is one family");
        assert_eq!(names(&changes.drop), ["a.gcPolicy", "gone"]);
        // A rule removed is an update, not a drop.
        let removed = [FieldDiff {
            path: "columnFamilies.a.b.gcPolicy".into(),
            desired: serde_json::Value::Null,
            observed: serde_json::json!({"maxVersions": 1}),
        }];
        let changes = family_changes(&want, &removed);
        assert_eq!(names(&changes.update), ["a.b"]);
        assert!(changes.drop.is_empty() && changes.create.is_empty());
    }
}
