//! Arbitrary specs for every kind, through the paths the controller takes: kube-apiserver
//! admits or refuses the manifest (modelled by [`admit`] from the CRD schema the controller
//! serves), the controller's watch decodes what was stored (serde), `cloudkit plan` decodes
//! the manifest as written (serde, with the path of a bad field), and the spec checks run
//! against each cloud (what the controller's `spec_errors` runs: the per-cloud blocks, the
//! kind's own checks, references to the object itself).
//!
//! Specs are JSON maps of the kind's own field names, well typed, then now and then changed
//! in a few places: wrong types, numbers beyond 32 bits, unknown enum values, odd strings,
//! removed and unknown fields. Properties: nothing panics; what kube-apiserver would store
//! the controller can decode; a decoding error and every check's error carry a message and
//! name a field path that exists in the kind's CRD schema; the checks are deterministic;
//! and a spec they pass on AWS keeps the documented ranges and naming rules. Each test also
//! fails when its generator stops reaching every outcome.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use cloudkit_crds::validation::{self, FieldError, SpecErrors};
use cloudkit_crds::{Bucket, Cloud, Function, Kind, Managed, ProviderConfig, Queue, Table, Topic};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::ResourceExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Value, json};

/// Cases per kind: enough to reach every check often, a few seconds in all.
/// `PROPTEST_CASES` asks for more.
const CASES: u32 = 256;

/// The same inputs on every run, so that CI and a reviewer see the same cases;
/// `PROPTEST_RNG_SEED=<n>` explores others.
const SEED: u64 = 0x0c10_0d1c;

fn config() -> Config {
    let from_env = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            CASES
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            from_env.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        // A failure prints its minimal input; no regression file is written into the tree.
        failure_persistence: None,
        ..from_env
    }
}

// ---------------------------------------------------------------- value strategies

/// Any JSON value, nested a little.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Strings a user might write, or might get wrong: names, blanks, odd characters, long ones.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{2,20}",
        2 => "[A-Za-z0-9._:/@*#+= -]{0,30}",
        1 => Just(String::new()),
        1 => Just(" ".to_owned()),
        1 => "[a-z]{60,300}",
        1 => ".{0,20}",
    ]
    .boxed()
}

fn string() -> BoxedStrategy<Value> {
    text().prop_map(Value::from).boxed()
}

/// 32-bit integers, around the edges of every documented range most often.
fn int() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => -5i64..2_000,
        3 => prop::sample::select(vec![
            0i64, 1, 3, 10, 20, 21, 59, 60, 127, 128, 256, 900, 901, 1000, 1001, 1023, 1024, 10_000, 10_001,
            10_240, 10_241, 40_000, 40_001, 43_200, 43_201, 262_144, 262_145, 345_600, 1_209_600, 1_209_601,
            i64::from(i32::MAX), i64::from(i32::MIN),
        ]),
        1 => any::<i32>().prop_map(i64::from),
    ]
    .prop_map(Value::from)
    .boxed()
}

/// Mostly inside `range` (a documented one), else any 32-bit integer.
fn around(range: std::ops::RangeInclusive<i64>) -> BoxedStrategy<Value> {
    prop_oneof![3 => range.prop_map(Value::from), 1 => int()].boxed()
}

fn boolean() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::from).boxed()
}

/// One of an enum's values (others come from [`mutated`]).
fn one_of(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop::sample::select(values.to_vec()).prop_map(Value::from).boxed()
}

/// A few names shared by metadata.name and every reference, so self-references and
/// duplicates come up often.
fn ref_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec!["jobs", "jobs.fifo", "self", "ab"]).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn name_value() -> BoxedStrategy<Value> {
    ref_name().prop_map(Value::from).boxed()
}

fn local_ref() -> BoxedStrategy<Value> {
    object(vec![("name", name_value())], vec![])
}

type Fields = Vec<(&'static str, BoxedStrategy<Value>)>;

/// A JSON object with every `required` field and some of the `optional` ones, well typed.
fn object(required: Fields, optional: Fields) -> BoxedStrategy<Value> {
    let required: Vec<_> = required
        .into_iter()
        .map(|(name, s)| s.prop_map(move |v| Some((name.to_owned(), v))).boxed())
        .collect();
    let optional: Vec<_> = optional
        .into_iter()
        .map(|(name, s)| {
            prop::option::weighted(0.5, s)
                .prop_map(move |v| v.map(|v| (name.to_owned(), v)))
                .boxed()
        })
        .collect();
    (required, optional)
        .prop_map(|(required, optional)| Value::Object(required.into_iter().chain(optional).flatten().collect()))
        .boxed()
}

fn list(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    prop::collection::vec(item, 0..=max).prop_map(Value::from).boxed()
}

fn tags() -> BoxedStrategy<Value> {
    let key = || {
        prop_oneof![
            6 => "[a-z][a-z0-9-]{0,10}",
            1 => prop::sample::select(vec!["aws:owner", "cloudkit.dev/code", "Team", "", "a b"]).prop_map(str::to_owned),
            1 => text(),
        ]
    };
    let value = || prop_oneof![6 => "[a-z0-9-]{0,10}", 1 => text()];
    prop_oneof![
        8 => prop::collection::btree_map(key(), value(), 0..4),
        1 => prop::collection::btree_map(key(), value(), 45..56),
    ]
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect()))
    .boxed()
}

/// The fields every managed kind shares, then the kind's own.
fn managed(mut fields: Fields) -> Fields {
    fields.extend([
        ("providerConfigRef", local_ref()),
        ("deletionPolicy", one_of(&["Delete", "Retain"])),
        ("externalName", name_value()),
        ("writeConnectionSecretToRef", local_ref()),
    ]);
    fields
}

// ---------------------------------------------------------------- mutations

/// One change that a well-typed spec may not survive: the apiserver's schema would refuse
/// most of them, and the controller must still say where the problem is.
#[derive(Clone, Debug)]
enum Mutation {
    /// Any value in place of this one: a wrong type, an unknown enum value, a string.
    Replace(Value),
    /// A required field or a list item gone.
    Remove,
    /// A field the kind does not have.
    Insert(String, Value),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => any_json().prop_map(Mutation::Replace),
        2 => string().prop_map(Mutation::Replace),
        1 => prop::sample::select(vec![
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN) - 1,
            3_000_000_000,
            i64::MAX,
        ])
        .prop_map(|n| Mutation::Replace(n.into())),
        2 => Just(Mutation::Remove),
        1 => ("[a-zA-Z]{1,10}", any_json()).prop_map(|(k, v)| Mutation::Insert(k, v)),
    ]
    .boxed()
}

/// JSON pointers to every node of `value`, itself included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn apply(value: &mut Value, at: &str, mutation: Mutation) {
    match mutation {
        Mutation::Replace(new) => {
            if let Some(node) = value.pointer_mut(at) {
                *node = new;
            }
        }
        Mutation::Insert(key, new) => {
            if let Some(Value::Object(map)) = value.pointer_mut(at) {
                map.insert(key, new);
            }
        }
        Mutation::Remove => {
            let Some((parent, last)) = at.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
    }
}

/// `spec` as generated (well typed) four times in ten, otherwise changed in one to three places.
fn mutated(spec: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let changes = prop_oneof![
        4 => Just(Vec::new()),
        4 => prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..=1),
        2 => prop::collection::vec((any::<prop::sample::Index>(), mutation()), 2..=3),
    ];
    (spec, changes)
        .prop_map(|(mut spec, changes)| {
            for (index, change) in changes {
                let mut at: Vec<String> = Vec::new();
                pointers(&spec, String::new(), &mut at);
                let at = index.get(&at).clone();
                apply(&mut spec, &at, change);
            }
            spec
        })
        .boxed()
}

// ---------------------------------------------------------------- spec strategies per kind

fn bucket_spec() -> BoxedStrategy<Value> {
    let public_access_block = object(
        vec![],
        vec![
            ("blockPublicAcls", boolean()),
            ("ignorePublicAcls", boolean()),
            ("blockPublicPolicy", boolean()),
            ("restrictPublicBuckets", boolean()),
        ],
    );
    let storage_class = one_of(&["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"]);
    mutated(object(
        vec![],
        managed(vec![
            ("versioning", boolean()),
            ("tags", tags()),
            ("blockPublicAccess", boolean()),
            ("encryption", object(vec![], vec![("keyId", string())])),
            ("aws", object(vec![], vec![("publicAccessBlock", public_access_block)])),
            ("azure", object(vec![], vec![("defaultEncryptionScope", string())])),
            ("gcp", object(vec![], vec![("storageClass", storage_class)])),
        ]),
    ))
}

fn queue_spec() -> BoxedStrategy<Value> {
    let dead_letter = object(
        vec![("queueRef", local_ref()), ("maxReceiveCount", around(1..=1000))],
        vec![],
    );
    let aws = object(
        vec![],
        vec![("contentBasedDeduplication", boolean()), ("kmsKeyId", string())],
    );
    mutated(object(
        vec![],
        managed(vec![
            ("fifo", boolean()),
            ("visibilityTimeoutSeconds", around(0..=43_200)),
            ("messageRetentionSeconds", around(60..=1_209_600)),
            ("delaySeconds", around(0..=900)),
            ("maxMessageSizeBytes", around(1024..=262_144)),
            ("receiveWaitTimeSeconds", around(0..=20)),
            ("deadLetter", dead_letter),
            ("tags", tags()),
            ("aws", aws),
        ]),
    ))
}

fn key_attribute() -> BoxedStrategy<Value> {
    let name = prop_oneof![
        4 => prop::sample::select(vec!["id", "sk", "customer"]).prop_map(str::to_owned),
        1 => text(),
    ];
    object(
        vec![
            ("name", name.prop_map(Value::from).boxed()),
            ("type", one_of(&["String", "Number", "Binary"])),
        ],
        vec![],
    )
}

fn table_spec() -> BoxedStrategy<Value> {
    let capacity = || around(1..=100);
    let index = object(
        vec![("name", name_value()), ("partitionKey", key_attribute())],
        vec![
            ("sortKey", key_attribute()),
            ("projection", one_of(&["All", "KeysOnly"])),
            ("readCapacity", capacity()),
            ("writeCapacity", capacity()),
        ],
    );
    let billing = object(
        vec![],
        vec![
            ("mode", one_of(&["OnDemand", "Provisioned"])),
            ("readCapacity", capacity()),
            ("writeCapacity", capacity()),
        ],
    );
    let aws = object(
        vec![],
        vec![
            ("pointInTimeRecovery", boolean()),
            (
                "streamViewType",
                one_of(&["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "DISABLED"]),
            ),
        ],
    );
    let gc_policy = object(
        vec![],
        vec![
            ("maxVersions", around(1..=10)),
            ("maxAgeSeconds", around(1..=86_400)),
            ("mode", one_of(&["Union", "Intersection"])),
        ],
    );
    let family = object(vec![("name", string())], vec![("gcPolicy", gc_policy)]);
    let gcp = object(
        vec![],
        vec![("instance", string()), ("columnFamilies", list(family, 3))],
    );
    mutated(object(
        vec![("partitionKey", key_attribute())],
        managed(vec![
            ("sortKey", key_attribute()),
            ("billing", billing),
            ("ttlAttribute", string()),
            ("globalSecondaryIndexes", list(index, 3)),
            ("deletionProtection", boolean()),
            ("tags", tags()),
            ("aws", aws),
            ("gcp", gcp),
        ]),
    ))
}

fn topic_spec() -> BoxedStrategy<Value> {
    let endpoint = prop_oneof![
        Just("https://example.com/hook".to_owned()),
        Just("ops@example.com".to_owned()),
        Just("http://example.com".to_owned()),
        Just("https://".to_owned()),
        text(),
    ];
    let filter = prop_oneof![
        Just(r#"{"event": ["created"]}"#.to_owned()),
        Just("{}".to_owned()),
        Just("[1]".to_owned()),
        text(),
    ];
    let subscription = object(
        vec![("protocol", one_of(&["Queue", "Function", "Https", "Email"]))],
        vec![
            ("queueRef", local_ref()),
            ("functionRef", local_ref()),
            ("endpoint", endpoint.prop_map(Value::from).boxed()),
            ("rawMessageDelivery", boolean()),
            ("filterPolicy", filter.prop_map(Value::from).boxed()),
        ],
    );
    mutated(object(
        vec![],
        managed(vec![
            ("fifo", boolean()),
            ("tags", tags()),
            ("displayName", string()),
            ("subscriptions", list(subscription, 3)),
            ("aws", object(vec![], vec![("contentBasedDeduplication", boolean())])),
        ]),
    ))
}

fn function_spec() -> BoxedStrategy<Value> {
    let env_name = prop_oneof![
        4 => "[A-Z][A-Z0-9_]{0,12}",
        1 => prop::sample::select(vec!["AWS_REGION", "_HANDLER", "1BAD"]).prop_map(str::to_owned),
        1 => text(),
    ];
    let value_from = object(
        vec![
            ("kind", one_of(&["Bucket", "Table", "Queue", "Topic", "Function"])),
            ("name", name_value()),
            ("field", one_of(&["arn", "url", "id", "externalName"])),
        ],
        vec![],
    );
    let env = prop_oneof![
        object(
            vec![
                ("name", env_name.clone().prop_map(Value::from).boxed()),
                ("value", string())
            ],
            vec![]
        ),
        object(
            vec![
                ("name", env_name.prop_map(Value::from).boxed()),
                ("valueFrom", value_from)
            ],
            vec![]
        ),
    ]
    .boxed();
    let zip = prop_oneof![
        3 => Just("UEsDBA==".to_owned()),
        1 => Just("not base64!".to_owned()),
        1 => text(),
    ];
    let object_key = prop_oneof![3 => Just("builds/fn.zip".to_owned()), 1 => text()];
    let location = object(
        vec![
            ("bucket", name_value()),
            ("key", object_key.prop_map(Value::from).boxed()),
        ],
        vec![],
    );
    let image = prop_oneof![3 => Just("123456789012.dkr.ecr.us-east-1.amazonaws.com/fn:1".to_owned()), 1 => text()];
    let runtime = || {
        prop_oneof![3 => Just("python3.12".to_owned()), 1 => text()]
            .prop_map(Value::from)
            .boxed()
    };
    let handler = || {
        prop_oneof![3 => Just("app.handler".to_owned()), 1 => text()]
            .prop_map(Value::from)
            .boxed()
    };
    // `code` with the `runtime` and `handler` that go with it, mostly.
    let code = prop_oneof![
        3 => object(
            vec![
                ("code", object(vec![("zipBase64", zip.prop_map(Value::from).boxed())], vec![])),
                ("runtime", runtime()),
                ("handler", handler()),
            ],
            vec![],
        ),
        2 => object(
            vec![("code", object(vec![("object", location.clone())], vec![])), ("runtime", runtime()), ("handler", handler())],
            vec![],
        ),
        2 => object(vec![("code", object(vec![("image", image.prop_map(Value::from).boxed())], vec![]))], vec![]),
        1 => object(
            vec![("code", object(vec![], vec![("zipBase64", string()), ("object", location), ("image", string())]))],
            vec![("runtime", runtime()), ("handler", handler())],
        ),
    ]
    .boxed();
    let trigger = prop_oneof![
        4 => object(vec![("queueRef", local_ref())], vec![("batchSize", around(1..=10_000))]),
        1 => object(vec![], vec![("queueRef", local_ref()), ("topicRef", local_ref()), ("batchSize", int())]),
    ]
    .boxed();
    let role = prop_oneof![
        4 => Just("arn:aws:iam::123456789012:role/fn".to_owned()),
        1 => Just("arn:aws:iam::123456789012:user/fn".to_owned()),
        1 => text(),
    ];
    let aws = object(
        vec![("roleArn", role.prop_map(Value::from).boxed())],
        vec![(
            "architecture",
            prop_oneof![4 => one_of(&["x86_64", "arm64"]), 1 => string()].boxed(),
        )],
    );
    let memory = around(128..=10_240);
    let timeout = around(1..=900);
    let rest = object(
        vec![],
        managed(vec![
            ("memoryMb", memory),
            ("timeoutSeconds", timeout),
            ("env", list(env, 2)),
            ("triggers", list(trigger, 2)),
            ("tags", tags()),
        ]),
    );
    // Lambda needs a role: `aws` is there nine times in ten.
    let rest = (rest, prop::option::weighted(0.9, aws)).prop_map(|(mut rest, aws)| {
        if let (Some(map), Some(aws)) = (rest.as_object_mut(), aws) {
            map.insert("aws".to_owned(), aws);
        }
        rest
    });
    mutated(
        (code, rest)
            .prop_map(|(mut code, rest)| {
                if let (Some(code), Value::Object(rest)) = (code.as_object_mut(), rest) {
                    code.extend(rest);
                }
                code
            })
            .boxed(),
    )
}

fn provider_config_spec() -> BoxedStrategy<Value> {
    let duration = prop_oneof![
        Just("10m".to_owned()),
        Just("0s".to_owned()),
        Just("25h".to_owned()),
        Just("99999999999999999999h".to_owned()),
        "[0-9]{0,6}[smhd]?",
        text(),
    ];
    let region = prop_oneof![3 => Just("eu-west-1".to_owned()), 1 => text()];
    let endpoint = prop_oneof![3 => Just("http://localhost:4566".to_owned()), 1 => text()];
    let credentials = object(
        vec![],
        vec![
            ("source", one_of(&["Secret", "Environment", "WorkloadIdentity"])),
            ("secretRef", local_ref()),
        ],
    );
    let checksum = one_of(&["WhenSupported", "WhenRequired"]);
    let azure = object(
        vec![],
        vec![
            ("subscriptionId", string()),
            ("resourceGroup", string()),
            ("storageAccount", string()),
        ],
    );
    let gcp = object(vec![], vec![("project", string()), ("location", string())]);
    mutated(object(
        vec![("provider", one_of(&["aws", "azure", "gcp"]))],
        vec![
            ("region", region.prop_map(Value::from).boxed()),
            ("credentials", credentials),
            ("endpoint", endpoint.prop_map(Value::from).boxed()),
            ("resyncInterval", duration.prop_map(Value::from).boxed()),
            ("aws", object(vec![], vec![("requestChecksumCalculation", checksum)])),
            ("azure", azure),
            ("gcp", gcp),
        ],
    ))
}

fn metadata_name() -> BoxedStrategy<String> {
    prop_oneof![3 => ref_name(), 1 => "[a-z0-9][a-z0-9.-]{0,80}"].boxed()
}

/// The CRD schema of `kind`'s spec, generated once.
fn spec_schema(kind: &str) -> &'static JSONSchemaProps {
    static SCHEMAS: OnceLock<BTreeMap<String, JSONSchemaProps>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        cloudkit_crds::crds()
            .into_iter()
            .filter_map(|crd| {
                let kind = crd.spec.names.kind.clone();
                let spec = crd
                    .spec
                    .versions
                    .into_iter()
                    .next()?
                    .schema?
                    .open_api_v3_schema?
                    .properties?
                    .remove("spec")?;
                Some((kind, spec))
            })
            .collect()
    });
    schemas.get(kind).unwrap_or_else(|| panic!("{kind} has a spec schema"))
}

/// Whether `path` (`spec.a.b[2].c`, or a map key after a map field, as in `spec.tags.x.y`)
/// names a field of `spec` in the schema.
fn path_in_schema(spec: &JSONSchemaProps, path: &str) -> bool {
    let Some(mut rest) = path.strip_prefix("spec") else {
        return false;
    };
    let mut schema = spec;
    loop {
        // A map's key may hold dots: whatever follows the map field is the key.
        if schema.properties.is_none() && matches!(schema.additional_properties, Some(JSONSchemaPropsOrBool::Schema(_)))
        {
            return rest.is_empty() || rest.starts_with('.');
        }
        if let Some(after) = rest.strip_prefix('[') {
            let Some((index, after)) = after.split_once(']') else {
                return false;
            };
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return false;
            }
            let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items else {
                // serde also reads a struct from a list of its fields in order: the path
                // still names the struct, which the schema has.
                return schema.properties.is_some();
            };
            schema = items;
            rest = after;
            continue;
        }
        if rest.is_empty() {
            return true;
        }
        let Some(after) = rest.strip_prefix('.') else {
            return false;
        };
        let end = after.find(['.', '[']).unwrap_or(after.len());
        let (name, after) = after.split_at(end);
        let Some(next) = schema.properties.as_ref().and_then(|p| p.get(name)) else {
            return false;
        };
        schema = next;
        rest = after;
    }
}

/// What the controller's `spec_errors` runs (controller/src/kinds.rs): the per-cloud
/// blocks, the kind's own checks on the cloud name, and references to the object itself.
fn spec_errors<K: Managed>(
    obj: &K,
    kind: Kind,
    cloud: Cloud,
    check: impl Fn(&K, &str, &str, Cloud) -> Vec<FieldError>,
) -> Vec<FieldError> {
    let name_field = if obj.managed().external_name.is_some() {
        "spec.externalName"
    } else {
        "metadata.name"
    };
    let config = &obj.managed().provider_config_ref.name;
    let mut errors = validation::cloud_blocks(&obj.cloud_blocks(), cloud, config);
    errors.extend(check(obj, &obj.desired_external_name(), name_field, cloud));
    errors.extend(
        obj.references()
            .into_iter()
            .filter(|r| r.kind == kind && r.name == obj.name_any())
            .map(|r| FieldError {
                field: r.field,
                message: format!("refers to this {kind} itself"),
            }),
    );
    errors
}

/// What kube-apiserver stores for `value` under a structural `schema`, or why it refuses
/// it: unknown fields pruned, `null` dropped where the field is not nullable, defaults
/// filled in, then types, enums and required fields checked. Integral floats are stored as
/// integers (`128.0` reads back as `128`). `format: int32` is not checked: kube-apiserver
/// does not either. Where unsure, this refuses rather than admits.
fn admit(schema: &JSONSchemaProps, value: &Value, at: &str) -> Result<Value, String> {
    let type_ = schema.type_.as_deref().unwrap_or_default();
    match (type_, value) {
        (_, Value::Null) if schema.nullable == Some(true) => Ok(Value::Null),
        ("object", Value::Object(map)) => {
            let mut stored = serde_json::Map::new();
            for (key, v) in map {
                let field = match (&schema.properties, &schema.additional_properties) {
                    (Some(properties), _) => match properties.get(key) {
                        Some(field) => field,
                        None => continue,
                    },
                    (None, Some(JSONSchemaPropsOrBool::Schema(values))) => values,
                    _ => continue,
                };
                if v.is_null() && field.nullable != Some(true) {
                    continue;
                }
                stored.insert(key.clone(), admit(field, v, &format!("{at}.{key}"))?);
            }
            for (key, field) in schema.properties.iter().flatten() {
                if let (None, Some(default)) = (stored.get(key), &field.default) {
                    stored.insert(key.clone(), default.0.clone());
                }
            }
            for key in schema.required.iter().flatten() {
                if !stored.contains_key(key) {
                    return Err(format!("{at}.{key}: Required value"));
                }
            }
            Ok(Value::Object(stored))
        }
        ("array", Value::Array(items)) => {
            let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items else {
                return Err(format!("{at}: no item schema"));
            };
            let stored: Result<Vec<Value>, String> = items
                .iter()
                .enumerate()
                .map(|(i, v)| admit(item, v, &format!("{at}[{i}]")))
                .collect();
            Ok(Value::Array(stored?))
        }
        ("string", Value::String(text)) => {
            let allowed = schema
                .enum_
                .as_ref()
                .is_none_or(|values| values.iter().any(|v| v.0.as_str() == Some(text.as_str())));
            if allowed {
                Ok(value.clone())
            } else {
                Err(format!("{at}: Unsupported value: {text:?}"))
            }
        }
        ("integer", Value::Number(n)) => {
            let i = if let Some(i) = n.as_i64() {
                i
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                f as i64
            } else {
                return Err(format!("{at}: must be of type integer"));
            };
            // The apiserver checks minimum and maximum (not `format`).
            if schema.minimum.is_some_and(|min| (i as f64) < min) {
                return Err(format!("{at}: should be greater than or equal to the minimum"));
            }
            if schema.maximum.is_some_and(|max| (i as f64) > max) {
                return Err(format!("{at}: should be less than or equal to the maximum"));
            }
            Ok(Value::from(i))
        }
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => Ok(value.clone()),
        _ => Err(format!("{at}: must be of type {type_}, not {value}")),
    }
}

fn document(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "cloudkit.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "fuzz", "generation": 1},
        "spec": spec,
    })
}

/// Decodes as the watch does (plain serde) and as `cloudkit plan` does (with the path);
/// both must agree, and a refusal must say what is wrong where.
fn decode<K: serde::de::DeserializeOwned + serde::Serialize>(
    schema: &JSONSchemaProps,
    doc: Value,
) -> Result<Option<K>, TestCaseError> {
    let plain = serde_json::from_value::<K>(doc.clone());
    let traced: Result<K, _> = serde_path_to_error::deserialize(doc);
    match (plain, traced) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(serde_json::to_value(&a).ok(), serde_json::to_value(&b).ok());
            Ok(Some(a))
        }
        (Err(plain), Err(traced)) => {
            let path = traced.path().to_string();
            let message = traced.inner().to_string();
            prop_assert!(!message.trim().is_empty(), "empty decoding error at {path}");
            prop_assert!(!plain.to_string().trim().is_empty(), "empty decoding error");
            prop_assert!(
                path_in_schema(schema, &path),
                "decoding error at {path:?}, not a field of the schema: {message}"
            );
            Ok(None)
        }
        (plain, traced) => Err(TestCaseError::fail(format!(
            "the watch and plan decode differently: {:?} vs {:?}",
            plain.err().map(|e| e.to_string()),
            traced.err().map(|e| e.to_string())
        ))),
    }
}

fn check_errors(schema: &JSONSchemaProps, errors: &[FieldError]) -> Result<(), TestCaseError> {
    for e in errors {
        prop_assert!(!e.message.trim().is_empty(), "{} has an empty message", e.field);
        prop_assert!(
            e.field == "metadata.name" || path_in_schema(schema, &e.field),
            "{:?} is not a field of the schema: {}",
            e.field,
            e.message
        );
    }
    let shown = SpecErrors(errors.to_vec()).to_string();
    for e in errors {
        prop_assert!(shown.contains(&format!("{}: ", e.field)), "{shown}");
    }
    Ok(())
}

/// How one case ended, counted so that a run shows its generators reach every stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The manifest as written is refused by serde (`cloudkit plan`), with a path.
    Undecodable,
    /// kube-apiserver would refuse it: the schema catches it at apply.
    RefusedBySchema,
    /// Stored; the checks refuse it on AWS.
    Invalid,
    /// Stored, and passes every check on AWS.
    ValidOnAws,
}

/// The decoding path of one spec, for `K` named `name`: `cloudkit plan` reads the manifest
/// as written; the controller's watch reads what kube-apiserver stored. Returns the outcomes
/// and the objects the checks then run on.
fn decode_both<K: serde::de::DeserializeOwned + serde::Serialize>(
    kind: &str,
    name: &str,
    spec: Value,
) -> Result<(Vec<Outcome>, Vec<K>), TestCaseError> {
    let schema = spec_schema(kind);
    let mut outcomes = Vec::new();
    let mut objects = Vec::new();
    match decode::<K>(schema, document(kind, name, spec.clone()))? {
        Some(obj) => objects.push(obj),
        None => outcomes.push(Outcome::Undecodable),
    }
    match admit(schema, &spec, "spec") {
        Err(_) => outcomes.push(Outcome::RefusedBySchema),
        Ok(stored) => match serde_json::from_value::<K>(document(kind, name, stored.clone())) {
            Ok(obj) => objects.push(obj),
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "kube-apiserver would store {stored} but the controller cannot decode it: {e}"
                )));
            }
        },
    }
    Ok((outcomes, objects))
}

/// Decodes `spec` as a `K` named `name` both ways, then checks each object on every cloud.
fn run<K: Managed>(
    kind: Kind,
    name: &str,
    spec: Value,
    check: impl Fn(&K, &str, &str, Cloud) -> Vec<FieldError> + Copy,
    on_aws_valid: impl Fn(&K, &str) -> Result<(), TestCaseError>,
) -> Result<Vec<Outcome>, TestCaseError> {
    let schema = spec_schema(kind.as_str());
    let (mut outcomes, objects) = decode_both::<K>(kind.as_str(), name, spec)?;
    for obj in &objects {
        let mut outcome = Outcome::Invalid;
        for cloud in [Cloud::Aws, Cloud::Azure, Cloud::Gcp] {
            let errors = spec_errors(obj, kind, cloud, check);
            check_errors(schema, &errors)?;
            prop_assert_eq!(&errors, &spec_errors(obj, kind, cloud, check), "not deterministic");
            if cloud == Cloud::Aws && errors.is_empty() {
                on_aws_valid(obj, &obj.desired_external_name())?;
                outcome = Outcome::ValidOnAws;
            }
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Runs `case` on the configured number of generated inputs; fails with the smallest
/// failing one, and when the generators went blind: fewer than one case in eight refused
/// by serde or by the checks, or fewer than one in sixty-four passing every check on AWS.
fn fuzz<S: Strategy>(what: &str, strategy: S, case: impl Fn(S::Value) -> Result<Vec<Outcome>, TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = config();
    let cases = config.cases;
    let counts: RefCell<BTreeMap<Outcome, u32>> = RefCell::default();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |input| {
        for outcome in case(input)? {
            *counts.borrow_mut().entry(outcome).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{what}: {e}");
    }
    let counts = counts.into_inner();
    println!("{what}: {counts:?}");
    for (outcome, at_least) in [
        (Outcome::Undecodable, cases / 8),
        (Outcome::RefusedBySchema, cases / 8),
        (Outcome::Invalid, cases / 8),
        (Outcome::ValidOnAws, cases / 64),
    ] {
        let n = counts.get(&outcome).copied().unwrap_or_default();
        assert!(
            n >= at_least,
            "{what}: only {n} of {cases} cases {outcome:?}, want {at_least}: {counts:?}"
        );
    }
}

fn within(value: Option<i32>, range: std::ops::RangeInclusive<i32>, field: &str) -> Result<(), TestCaseError> {
    if let Some(v) = value {
        prop_assert!(range.contains(&v), "{field} {v} passed, documented range {range:?}");
    }
    Ok(())
}

fn aws_tags(tags: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    prop_assert!(tags.len() <= 50, "{} tags passed on AWS", tags.len());
    for (k, v) in tags {
        prop_assert!(
            !k.is_empty() && k.chars().count() <= 128 && !k.starts_with("aws:"),
            "tag key {k:?} passed"
        );
        prop_assert!(v.chars().count() <= 256, "tag value of {} characters passed", v.len());
    }
    Ok(())
}

#[test]
fn bucket() {
    fuzz("Bucket", (metadata_name(), bucket_spec()), |(name, spec)| {
        run::<Bucket>(
            Kind::Bucket,
            &name,
            spec,
            |o, n, f, c| validation::bucket(n, f, &o.spec, c),
            |o, n| {
                prop_assert!((3..=63).contains(&n.len()), "S3 name {n:?} passed");
                prop_assert!(
                    n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'),
                    "S3 name {n:?} passed"
                );
                prop_assert!(
                    o.spec.azure.is_none() && o.spec.gcp.is_none(),
                    "another cloud's block passed on AWS"
                );
                aws_tags(&o.spec.tags)
            },
        )
    });
}

#[test]
fn queue() {
    fuzz("Queue", (metadata_name(), queue_spec()), |(name, spec)| {
        run::<Queue>(
            Kind::Queue,
            &name,
            spec,
            |o, n, f, c| validation::queue(n, f, &o.spec, c),
            |o, n| {
                let s = &o.spec;
                prop_assert_eq!(
                    n.ends_with(".fifo"),
                    s.fifo,
                    "SQS name {:?} passed with fifo {}",
                    n,
                    s.fifo
                );
                prop_assert!(!n.is_empty() && n.len() <= 80, "SQS name {n:?} passed");
                within(s.visibility_timeout_seconds, 0..=43_200, "visibilityTimeoutSeconds")?;
                within(s.message_retention_seconds, 60..=1_209_600, "messageRetentionSeconds")?;
                within(s.delay_seconds, 0..=900, "delaySeconds")?;
                within(s.max_message_size_bytes, 1024..=262_144, "maxMessageSizeBytes")?;
                within(s.receive_wait_time_seconds, 0..=20, "receiveWaitTimeSeconds")?;
                within(
                    s.dead_letter.as_ref().map(|d| d.max_receive_count),
                    1..=1000,
                    "maxReceiveCount",
                )?;
                if let Some(d) = &s.dead_letter {
                    prop_assert!(
                        d.queue_ref.name != o.name_any(),
                        "a queue passed as its own dead-letter queue"
                    );
                }
                aws_tags(&s.tags)
            },
        )
    });
}

#[test]
fn table() {
    fuzz("Table", (metadata_name(), table_spec()), |(name, spec)| {
        run::<Table>(
            Kind::Table,
            &name,
            spec,
            |o, n, f, c| validation::table(n, f, &o.spec, c),
            |o, n| {
                prop_assert!((3..=255).contains(&n.len()), "DynamoDB name {n:?} passed");
                let s = &o.spec;
                prop_assert!(s.gcp.is_none(), "a GCP block passed on AWS");
                prop_assert!(s.sort_key.as_ref().is_none_or(|k| k.name != s.partition_key.name));
                aws_tags(&s.tags)
            },
        )
    });
}

#[test]
fn topic() {
    fuzz("Topic", (metadata_name(), topic_spec()), |(name, spec)| {
        run::<Topic>(
            Kind::Topic,
            &name,
            spec,
            |o, n, f, c| validation::topic(n, f, &o.spec, c),
            |o, n| {
                prop_assert_eq!(
                    n.ends_with(".fifo"),
                    o.spec.fifo,
                    "SNS name {:?} passed with fifo {}",
                    n,
                    o.spec.fifo
                );
                prop_assert!(!n.is_empty() && n.len() <= 256, "SNS name {n:?} passed");
                aws_tags(&o.spec.tags)
            },
        )
    });
}

#[test]
fn function() {
    fuzz("Function", (metadata_name(), function_spec()), |(name, spec)| {
        run::<Function>(
            Kind::Function,
            &name,
            spec,
            |o, n, f, c| validation::function(n, f, &o.spec, c),
            |o, n| {
                let s = &o.spec;
                prop_assert!(!n.is_empty() && n.len() <= 64, "Lambda name {n:?} passed");
                within(s.memory_mb, 128..=10_240, "memoryMb")?;
                within(s.timeout_seconds, 1..=900, "timeoutSeconds")?;
                for t in &s.triggers {
                    within(t.batch_size, 1..=10_000, "batchSize")?;
                    prop_assert!(t.topic_ref.is_none(), "a topicRef trigger passed");
                }
                prop_assert!(
                    s.aws.as_ref().is_some_and(|a| a.role_arn.is_some()),
                    "no role passed on AWS"
                );
                prop_assert!(s.tags.len() <= 48, "{} tags passed on a Function", s.tags.len());
                aws_tags(&s.tags)
            },
        )
    });
}

#[test]
fn provider_config() {
    fuzz(
        "ProviderConfig",
        (metadata_name(), provider_config_spec()),
        |(name, spec)| {
            let schema = spec_schema("ProviderConfig");
            let (mut outcomes, configs) = decode_both::<ProviderConfig>("ProviderConfig", &name, spec)?;
            for pc in configs {
                match validation::provider_config(&pc.spec) {
                    Err(errors) => {
                        prop_assert!(!errors.0.is_empty(), "an error without problems");
                        check_errors(schema, &errors.0)?;
                        outcomes.push(Outcome::Invalid);
                    }
                    Ok(()) => {
                        if let Some(interval) = &pc.spec.resync_interval {
                            let parsed = validation::parse_duration(interval);
                            prop_assert!(parsed.is_ok(), "resyncInterval {interval:?} passed but does not parse");
                        }
                        outcomes.push(Outcome::ValidOnAws);
                    }
                }
            }
            Ok(outcomes)
        },
    );
}

#[test]
fn durations() {
    let mut runner = TestRunner::new(config());
    let result = runner.run(&prop_oneof![".{0,12}", "[0-9]{0,25}[smhd ]{0,2}"], |text| {
        match validation::parse_duration(&text) {
            Ok(d) => prop_assert!((1..=24 * 3600).contains(&d.as_secs()), "{text:?} gave {d:?}"),
            Err(message) => prop_assert!(!message.trim().is_empty(), "{text:?}: empty message"),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("durations: {e}");
    }
}
