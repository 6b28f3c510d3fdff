//! The registry of event types and their schema versions: validates payloads
//! against their JSON Schema and brings old versions up to the latest through
//! chained upcasters (vN → vN+1 → …) when events are read.
//!
//! Two layers: the built-in types, compiled into the binary (schemas under
//! `schemas/` and the domains' upcasters), and the types producers register
//! at run time, per tenant ([`runtime`]), folded from each tenant's registry
//! stream ([`events`]). A built-in type always wins: a runtime type can
//! never shadow one, because registration refuses the built-in domains.

pub mod decide;
pub mod events;
pub mod personal;
pub mod runtime;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::envelope::EventEnvelope;
use crate::error::{RegistryError, SchemaViolation, UpcastError, ValidationError};
use crate::ids::{EventType, SchemaVersion, TenantId};
use crate::schemas::embedded_schema_files;
use personal::PersonalField;
use runtime::RuntimeTypes;

/// Turns a payload of version N into one of version N+1.
pub type Upcaster = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// At most this many violations are reported for one payload.
const MAX_VIOLATIONS: usize = 10;

struct VersionEntry {
    validator: jsonschema::Validator,
    schema: Value,
    personal: Arc<[PersonalField]>,
}

#[derive(Default)]
struct TypeEntry {
    versions: BTreeMap<SchemaVersion, VersionEntry>,
    /// Keyed by the version they upcast from.
    upcasters: BTreeMap<SchemaVersion, Upcaster>,
}

/// Every known event type with its schema versions and upcasters. Clones
/// share the runtime types: a registration installed through one is seen
/// through all.
#[derive(Default, Clone)]
pub struct EventRegistry {
    types: Arc<BTreeMap<EventType, TypeEntry>>,
    runtime: Arc<RuntimeTypes>,
}

impl fmt::Debug for EventRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.types.iter().map(|(t, e)| {
                (
                    t.as_str(),
                    e.versions.keys().map(|v| v.get()).collect::<Vec<_>>(),
                )
            }))
            .finish()
    }
}

/// Checks a payload with a compiled schema.
fn check_payload(
    validator: &jsonschema::Validator,
    event_type: &EventType,
    version: SchemaVersion,
    payload: &Value,
) -> Result<(), ValidationError> {
    if !payload.is_object() {
        return Err(ValidationError::NotAnObject {
            event_type: event_type.clone(),
            version,
        });
    }
    // The common case, a valid payload, is decided without collecting.
    if validator.is_valid(payload) {
        return Ok(());
    }
    let violations: Vec<SchemaViolation> = validator
        .iter_errors(payload)
        .take(MAX_VIOLATIONS)
        .map(|e| SchemaViolation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    Err(ValidationError::SchemaViolation {
        event_type: event_type.clone(),
        version,
        violations,
    })
}

/// Builds an [`EventRegistry`].
#[derive(Default)]
pub struct RegistryBuilder {
    types: BTreeMap<EventType, TypeEntry>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("types", &self.types.len())
            .finish()
    }
}

impl RegistryBuilder {
    /// Registers one version of an event type with its JSON Schema.
    pub fn schema(
        mut self,
        event_type: EventType,
        version: SchemaVersion,
        schema: Value,
    ) -> Result<Self, RegistryError> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| RegistryError::InvalidSchema {
                event_type: event_type.clone(),
                version,
                reason: e.to_string(),
            })?;
        let personal: Arc<[PersonalField]> = personal::declared(&schema)
            .map_err(|reason| RegistryError::InvalidSchema {
                event_type: event_type.clone(),
                version,
                reason,
            })?
            .into();
        let entry = self.types.entry(event_type.clone()).or_default();
        if entry.versions.contains_key(&version) {
            return Err(RegistryError::Duplicate {
                event_type,
                version,
            });
        }
        entry.versions.insert(
            version,
            VersionEntry {
                validator,
                schema,
                personal,
            },
        );
        Ok(self)
    }

    /// Registers the upcaster from `from` to the next version; both versions
    /// must already be registered.
    pub fn upcaster(
        mut self,
        event_type: EventType,
        from: SchemaVersion,
        upcast: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Result<Self, RegistryError> {
        let entry = self.types.get_mut(&event_type);
        match entry {
            Some(e) if e.versions.contains_key(&from) && e.versions.contains_key(&from.next()) => {
                e.upcasters.insert(from, Arc::new(upcast));
                Ok(self)
            }
            _ => Err(RegistryError::UpcasterWithoutVersions { event_type, from }),
        }
    }

    /// Registers every schema file shipped in `schemas/`.
    pub fn embedded_schemas(mut self) -> Result<Self, RegistryError> {
        for file in embedded_schema_files()? {
            let schema: Value =
                serde_json::from_str(file.text).map_err(|e| RegistryError::SchemaNotJson {
                    path: file.path.to_owned(),
                    reason: e.to_string(),
                })?;
            self = self.schema(file.event_type, file.version, schema)?;
        }
        Ok(self)
    }

    /// Fails unless every (type, version) in `declared` has a schema.
    pub fn require(
        self,
        declared: impl IntoIterator<Item = (EventType, SchemaVersion)>,
    ) -> Result<Self, RegistryError> {
        for (event_type, version) in declared {
            let known = self
                .types
                .get(&event_type)
                .is_some_and(|e| e.versions.contains_key(&version));
            if !known {
                return Err(RegistryError::MissingSchema {
                    event_type,
                    version,
                });
            }
        }
        Ok(self)
    }

    pub fn build(self) -> EventRegistry {
        EventRegistry {
            types: Arc::new(self.types),
            runtime: Arc::default(),
        }
    }
}

impl EventRegistry {
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The registry Herald runs with: every shipped schema, every domain's
    /// upcasters, and a check that every event type declared in code has a
    /// schema.
    pub fn builtin() -> Result<Self, RegistryError> {
        let builder = Self::builder()
            .embedded_schemas()?
            .require(crate::declared_event_types())?;
        crate::register_upcasters(builder).map(RegistryBuilder::build)
    }

    /// All registered types with their versions, oldest first.
    pub fn types(&self) -> impl Iterator<Item = (&EventType, Vec<SchemaVersion>)> {
        self.types
            .iter()
            .map(|(t, e)| (t, e.versions.keys().copied().collect()))
    }

    pub fn contains(&self, event_type: &EventType, version: SchemaVersion) -> bool {
        self.types
            .get(event_type)
            .is_some_and(|e| e.versions.contains_key(&version))
    }

    pub fn latest_version(&self, event_type: &EventType) -> Option<SchemaVersion> {
        self.types
            .get(event_type)
            .and_then(|e| e.versions.keys().next_back().copied())
    }

    /// The JSON Schema of one version.
    pub fn schema(&self, event_type: &EventType, version: SchemaVersion) -> Option<&Value> {
        self.types
            .get(event_type)
            .and_then(|e| e.versions.get(&version))
            .map(|v| &v.schema)
    }

    /// The personal fields of a version, built-in or `tenant`'s runtime
    /// type (empty for unknown types and for versions that declare none).
    pub fn personal_fields(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        version: SchemaVersion,
    ) -> Arc<[PersonalField]> {
        if let Some(entry) = self.types.get(event_type) {
            return entry
                .versions
                .get(&version)
                .map(|v| Arc::clone(&v.personal))
                .unwrap_or_else(|| Arc::from(Vec::new()));
        }
        self.runtime
            .tenant(tenant)
            .and_then(|t| {
                t.compiled
                    .get(event_type)
                    .and_then(|versions| versions.get(&version))
                    .map(|c| Arc::clone(&c.personal))
            })
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// The personal field at `pointer` as any version of the type declares
    /// it (the newest version's declaration first), built-in or `tenant`'s.
    pub fn personal_field_at(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        pointer: &str,
    ) -> Option<PersonalField> {
        let find = |fields: &[PersonalField]| fields.iter().find(|f| f.pointer == pointer).cloned();
        if let Some(entry) = self.types.get(event_type) {
            return entry
                .versions
                .values()
                .rev()
                .find_map(|v| find(&v.personal));
        }
        let tenant_types = self.runtime.tenant(tenant)?;
        let versions = tenant_types.compiled.get(event_type)?;
        versions.values().rev().find_map(|c| find(&c.personal))
    }

    /// Checks a payload against its type's schema of `version`.
    pub fn validate(
        &self,
        event_type: &EventType,
        version: SchemaVersion,
        payload: &Value,
    ) -> Result<(), ValidationError> {
        let entry = self
            .types
            .get(event_type)
            .ok_or_else(|| ValidationError::UnknownType {
                event_type: event_type.clone(),
            })?;
        let schema =
            entry
                .versions
                .get(&version)
                .ok_or_else(|| ValidationError::UnknownVersion {
                    event_type: event_type.clone(),
                    version,
                    known: entry.versions.keys().map(|v| v.get()).collect(),
                })?;
        check_payload(&schema.validator, event_type, version, payload)
    }

    /// Checks a payload published by `tenant`: against a built-in type, or
    /// else against the tenant's runtime type. A deprecated runtime version
    /// is refused; stored events of it still read.
    pub fn validate_in(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        version: SchemaVersion,
        payload: &Value,
    ) -> Result<(), ValidationError> {
        if self.types.contains_key(event_type) {
            return self.validate(event_type, version, payload);
        }
        let unknown = || ValidationError::UnknownType {
            event_type: event_type.clone(),
        };
        let tenant_types = self.runtime.tenant(tenant).ok_or_else(unknown)?;
        let versions = tenant_types.compiled.get(event_type).ok_or_else(unknown)?;
        let compiled = versions
            .get(&version)
            .ok_or_else(|| ValidationError::UnknownVersion {
                event_type: event_type.clone(),
                version,
                known: versions.keys().map(|v| v.get()).collect(),
            })?;
        if compiled.registered.deprecated {
            return Err(ValidationError::Deprecated {
                event_type: event_type.clone(),
                version,
                latest: versions
                    .keys()
                    .next_back()
                    .map_or(version.get(), |v| v.get()),
                reason: compiled.registered.deprecation_reason.clone(),
            });
        }
        let validator =
            compiled
                .validator
                .as_ref()
                .map_err(|reason| ValidationError::Uncompilable {
                    event_type: event_type.clone(),
                    version,
                    reason: reason.clone(),
                })?;
        check_payload(validator, event_type, version, payload)
    }

    /// True when `tenant` may publish `event_type` at `version`: a built-in
    /// version, or a runtime one installed here.
    pub fn knows(&self, tenant: &TenantId, event_type: &EventType, version: SchemaVersion) -> bool {
        if self.types.contains_key(event_type) {
            return self.contains(event_type, version);
        }
        self.runtime.tenant(tenant).is_some_and(|t| {
            t.compiled
                .get(event_type)
                .is_some_and(|versions| versions.contains_key(&version))
        })
    }

    /// True for a type compiled into the binary.
    pub fn is_builtin(&self, event_type: &EventType) -> bool {
        self.types.contains_key(event_type)
    }

    /// The domains of the built-in types: a runtime type may not be in one.
    pub fn builtin_domains(&self) -> std::collections::BTreeSet<&str> {
        self.types.keys().map(EventType::domain).collect()
    }

    /// The runtime types of every tenant in this process.
    pub fn runtime(&self) -> &RuntimeTypes {
        &self.runtime
    }

    /// Brings a payload from `version` to the latest version of its type.
    pub fn upcast_payload(
        &self,
        event_type: &EventType,
        mut version: SchemaVersion,
        mut payload: Value,
    ) -> Result<(SchemaVersion, Value), UpcastError> {
        let Some(entry) = self.types.get(event_type) else {
            // Unknown types pass through unchanged: the store keeps what it
            // was given, and readers of unknown types see it as stored.
            return Ok((version, payload));
        };
        if entry.versions.is_empty() {
            return Ok((version, payload));
        }
        let latest = entry
            .versions
            .keys()
            .next_back()
            .copied()
            .unwrap_or(version);
        while version < latest {
            let upcast =
                entry
                    .upcasters
                    .get(&version)
                    .ok_or_else(|| UpcastError::MissingUpcaster {
                        event_type: event_type.clone(),
                        from: version,
                    })?;
            payload = upcast(payload).map_err(|reason| UpcastError::Failed {
                event_type: event_type.clone(),
                from: version,
                reason,
            })?;
            version = version.next();
        }
        Ok((version, payload))
    }

    /// Brings an event to the latest version of its type. Its hash is left as
    /// stored: the chain covers what was written, not what readers see.
    pub fn upcast(&self, mut event: EventEnvelope) -> Result<EventEnvelope, UpcastError> {
        let payload = std::mem::take(&mut event.payload);
        let (version, payload) = if self.types.contains_key(&event.event_type) {
            self.upcast_payload(&event.event_type, event.version, payload)?
        } else {
            self.upcast_runtime(&event.tenant, &event.event_type, event.version, payload)?
        };
        event.version = version;
        event.payload = payload;
        Ok(event)
    }

    /// Brings a payload of a tenant's runtime type as far up its versions
    /// as they bridge: through each version that reads the one before it
    /// unchanged or has a declarative upcaster from it. A version with
    /// neither (registered as `forward` or `none` compatible without an
    /// upcaster) stops the climb: its readers get the older version, as
    /// stored, rather than a payload claiming a schema it may break.
    fn upcast_runtime(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        mut version: SchemaVersion,
        mut payload: Value,
    ) -> Result<(SchemaVersion, Value), UpcastError> {
        let Some(tenant_types) = self.runtime.tenant(tenant) else {
            return Ok((version, payload));
        };
        let Some(versions) = tenant_types.compiled.get(event_type) else {
            return Ok((version, payload));
        };
        while let Some(next) = versions.get(&version.next()) {
            let registered = &next.registered;
            if let Some(upcaster) = &registered.upcaster {
                payload = upcaster
                    .apply(payload)
                    .map_err(|reason| UpcastError::Failed {
                        event_type: event_type.clone(),
                        from: version,
                        reason,
                    })?;
            } else if !registered.reads_previous {
                break;
            }
            version = version.next();
        }
        Ok((version, payload))
    }
}
