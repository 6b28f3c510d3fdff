//! What the registry decides about a request, given a tenant's registry as
//! folded so far: a new version is accepted when it is a valid, bounded
//! JSON Schema of a type outside the built-in domains, numbered right after
//! the latest, and compatible with the latest under the type's rule — or
//! bridged from it by a declarative upcaster. The decision is pure: the
//! caller appends the changes it answers with, expecting the registry
//! stream's version it decided at, so two processes deciding at once cannot
//! both win.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::events::{CompatibilitySet, RegistryChange, SchemaDeprecated, SchemaRegistered};
use super::runtime::{compile, RegisteredTypes};
use crate::compat::{self, Compatibility, Incompatibility};
use crate::declarative::UpcasterSpec;
use crate::ids::EventType;

/// Bounds on what one tenant may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Most bytes of one schema, as compact JSON.
    pub max_schema_bytes: usize,
    /// Deepest nesting of one schema's JSON.
    pub max_schema_depth: usize,
    /// Most runtime types per tenant.
    pub max_types: usize,
    /// Most versions per type.
    pub max_versions: usize,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self {
            max_schema_bytes: 64 * 1024,
            max_schema_depth: 32,
            max_types: 1000,
            max_versions: 100,
        }
    }
}

/// A request to register a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub event_type: EventType,
    /// The version the producer means; when given it must be the next one.
    pub version: Option<u32>,
    pub schema: Value,
    /// Sets the type's rule before this version is checked (a new type
    /// starts `backward`).
    pub compatibility: Option<Compatibility>,
    pub upcaster: Option<UpcasterSpec>,
}

/// What an accepted request changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The version the schema is registered as.
    pub version: u32,
    /// The changes to append, in order; empty when the schema is already
    /// the latest version (a repeated registration changes nothing).
    pub changes: Vec<RegistryChange>,
    /// Events of the previous version read as this one unchanged.
    pub reads_previous: bool,
}

/// Why a request was refused; nothing is registered.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Refused {
    #[error("{event_type} is in the built-in domain {domain}, whose types only a release of Herald changes")]
    BuiltinDomain { event_type: String, domain: String },
    #[error("the schema is not a valid JSON Schema: {reason}")]
    InvalidSchema { reason: String },
    #[error("the schema is {bytes} bytes; the limit is {limit}")]
    SchemaTooLarge { bytes: usize, limit: usize },
    #[error("the schema nests {depth} levels deep at {pointer}; the limit is {limit}")]
    SchemaTooDeep {
        depth: usize,
        pointer: String,
        limit: usize,
    },
    #[error("{pointer}: {reason}")]
    SchemaNotAllowed { pointer: String, reason: String },
    #[error("the tenant has {types} runtime types, the most it may have")]
    TooManyTypes { types: usize },
    #[error("{event_type} has {versions} versions, the most a type may have")]
    TooManyVersions { event_type: String, versions: usize },
    #[error("{event_type}: version {given} cannot be registered; the next version is {next}")]
    WrongVersion {
        event_type: String,
        given: u32,
        next: u32,
    },
    #[error("{event_type} v{version} is not {} compatible with v{previous}: {}", .mode, describe(.incompatibilities))]
    Incompatible {
        event_type: String,
        version: u32,
        previous: u32,
        mode: Compatibility,
        incompatibilities: Vec<Incompatibility>,
    },
    #[error("the upcaster is invalid: {reason}")]
    InvalidUpcaster { reason: String },
    #[error("{event_type} has no version yet, so there is nothing to upcast from")]
    UpcasterWithoutPrevious { event_type: String },
    #[error("{event_type} is not registered")]
    UnknownType { event_type: String },
    #[error("{event_type} has no version {version}")]
    UnknownVersion { event_type: String, version: u32 },
}

fn describe(incompatibilities: &[Incompatibility]) -> String {
    incompatibilities
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decides a registration against `current`; `builtin_domains` are refused.
pub fn register(
    current: &RegisteredTypes,
    builtin_domains: &BTreeSet<&str>,
    request: Registration,
    limits: &RegistryLimits,
) -> Result<Accepted, Refused> {
    let name = request.event_type.as_str().to_owned();
    let domain = request.event_type.domain();
    if builtin_domains.contains(domain) || domain == super::events::DOMAIN {
        return Err(Refused::BuiltinDomain {
            event_type: name,
            domain: domain.to_owned(),
        });
    }
    check_bounds(&request.schema, limits)?;
    compile(&request.schema).map_err(|reason| Refused::InvalidSchema { reason })?;
    super::personal::declared(&request.schema)
        .map_err(|reason| Refused::InvalidSchema { reason })?;
    if let Some(upcaster) = &request.upcaster {
        upcaster
            .check()
            .map_err(|reason| Refused::InvalidUpcaster { reason })?;
    }

    let existing = current.types.get(&name);
    let Some(existing) = existing.filter(|t| !t.versions.is_empty()) else {
        if current.types.len() >= limits.max_types {
            return Err(Refused::TooManyTypes {
                types: current.types.len(),
            });
        }
        if let Some(given) = request.version.filter(|v| *v != 1) {
            return Err(Refused::WrongVersion {
                event_type: name,
                given,
                next: 1,
            });
        }
        if request.upcaster.is_some() {
            return Err(Refused::UpcasterWithoutPrevious { event_type: name });
        }
        let compatibility = request.compatibility.unwrap_or_default();
        return Ok(Accepted {
            version: 1,
            reads_previous: false,
            changes: vec![RegistryChange::Registered(SchemaRegistered {
                event_type: name,
                version: 1,
                schema: request.schema,
                compatibility,
                upcaster: None,
                reads_previous: false,
            })],
        });
    };

    let (latest, latest_version) = existing
        .latest()
        .expect("a type with versions has a latest one");
    // A repeat of the latest registration is answered as done, so a
    // producer's deploy step can register on every start.
    let same_rule = request
        .compatibility
        .is_none_or(|c| c == existing.compatibility);
    if latest_version.schema == request.schema
        && request.version.is_none_or(|v| v == latest)
        && same_rule
        && (request.upcaster.is_none() || request.upcaster == latest_version.upcaster)
    {
        return Ok(Accepted {
            version: latest,
            reads_previous: latest_version.reads_previous,
            changes: Vec::new(),
        });
    }
    let next = latest + 1;
    if let Some(given) = request.version.filter(|v| *v != next) {
        return Err(Refused::WrongVersion {
            event_type: name,
            given,
            next,
        });
    }
    if existing.versions.len() >= limits.max_versions {
        return Err(Refused::TooManyVersions {
            event_type: name,
            versions: existing.versions.len(),
        });
    }
    let mode = request.compatibility.unwrap_or(existing.compatibility);
    let reads_previous = compat::accepts_all_of(&request.schema, &latest_version.schema).is_ok();
    if request.upcaster.is_none() {
        compat::check(mode, &latest_version.schema, &request.schema).map_err(
            |incompatibilities| Refused::Incompatible {
                event_type: name.clone(),
                version: next,
                previous: latest,
                mode,
                incompatibilities,
            },
        )?;
    }
    let mut changes = Vec::new();
    if mode != existing.compatibility {
        changes.push(RegistryChange::CompatibilitySet(CompatibilitySet {
            event_type: name.clone(),
            compatibility: mode,
        }));
    }
    changes.push(RegistryChange::Registered(SchemaRegistered {
        event_type: name,
        version: next,
        schema: request.schema,
        compatibility: mode,
        upcaster: request.upcaster,
        reads_previous,
    }));
    Ok(Accepted {
        version: next,
        changes,
        reads_previous,
    })
}

/// The registered type, or its refusal as unknown.
fn registered<'a>(
    current: &'a RegisteredTypes,
    event_type: &EventType,
) -> Result<&'a super::runtime::RegisteredType, Refused> {
    current
        .types
        .get(event_type.as_str())
        .ok_or_else(|| Refused::UnknownType {
            event_type: event_type.as_str().to_owned(),
        })
}

/// Decides whether a version may be deprecated: it must exist; deprecating
/// a deprecated version changes nothing.
pub fn deprecate(
    current: &RegisteredTypes,
    event_type: &EventType,
    version: u32,
    reason: Option<String>,
) -> Result<Vec<RegistryChange>, Refused> {
    let name = event_type.as_str();
    let found = registered(current, event_type)?
        .versions
        .get(&version)
        .ok_or_else(|| Refused::UnknownVersion {
            event_type: name.to_owned(),
            version,
        })?;
    if found.deprecated {
        return Ok(Vec::new());
    }
    Ok(vec![RegistryChange::Deprecated(SchemaDeprecated {
        event_type: name.to_owned(),
        version,
        reason,
    })])
}

/// Decides a change of a type's rule: the type must be registered;
/// setting the rule it has changes nothing. The rule checks the next
/// version, not those already registered.
pub fn set_compatibility(
    current: &RegisteredTypes,
    event_type: &EventType,
    compatibility: Compatibility,
) -> Result<Vec<RegistryChange>, Refused> {
    let name = event_type.as_str();
    if registered(current, event_type)?.compatibility == compatibility {
        return Ok(Vec::new());
    }
    Ok(vec![RegistryChange::CompatibilitySet(CompatibilitySet {
        event_type: name.to_owned(),
        compatibility,
    })])
}

/// Refuses schemas over the size and depth bounds, and references that
/// leave the schema (a registered contract must not depend on anything
/// fetched from elsewhere, and the registry fetches nothing).
fn check_bounds(schema: &Value, limits: &RegistryLimits) -> Result<(), Refused> {
    if !schema.is_object() {
        return Err(Refused::SchemaNotAllowed {
            pointer: String::new(),
            reason: "a registered schema is a JSON object".into(),
        });
    }
    let bytes = serde_json::to_vec(schema).map_or(usize::MAX, |b| b.len());
    if bytes > limits.max_schema_bytes {
        return Err(Refused::SchemaTooLarge {
            bytes,
            limit: limits.max_schema_bytes,
        });
    }
    walk(schema, String::new(), 1, limits)
}

fn walk(
    value: &Value,
    pointer: String,
    depth: usize,
    limits: &RegistryLimits,
) -> Result<(), Refused> {
    if depth > limits.max_schema_depth {
        return Err(Refused::SchemaTooDeep {
            depth,
            pointer,
            limit: limits.max_schema_depth,
        });
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{pointer}/{}", escape(key));
                if matches!(key.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef") {
                    let target = child.as_str().unwrap_or_default();
                    if !target.starts_with('#') {
                        return Err(Refused::SchemaNotAllowed {
                            pointer: here,
                            reason: format!(
                                "{key} {target:?} leaves the schema; only references within it (#/$defs/...) are allowed"
                            ),
                        });
                    }
                }
                walk(child, here, depth + 1, limits)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, child)| walk(child, format!("{pointer}/{i}"), depth + 1, limits)),
        _ => Ok(()),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
