//! Event types registered at run time, per tenant: the fold of a tenant's
//! registry stream ([`RegisteredTypes`], also the registry aggregate's
//! state), the compiled validators made from it ([`TenantTypes`]), and the
//! process-wide table of tenants ([`RuntimeTypes`]) that every clone of an
//! [`EventRegistry`](super::EventRegistry) shares, so a registration applied
//! once is seen by every part of the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::RegistryChange;
use crate::compat::Compatibility;
use crate::declarative::UpcasterSpec;
use crate::ids::{EventType, SchemaVersion, TenantId};

/// One registered version of a runtime type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredVersion {
    pub schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upcaster: Option<UpcasterSpec>,
    /// Events of the previous version read as this one unchanged.
    #[serde(default)]
    pub reads_previous: bool,
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation_reason: Option<String>,
}

/// One runtime type: its rule and its versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegisteredType {
    pub compatibility: Compatibility,
    /// By version number.
    pub versions: BTreeMap<u32, RegisteredVersion>,
}

impl RegisteredType {
    pub fn latest(&self) -> Option<(u32, &RegisteredVersion)> {
        self.versions.iter().next_back().map(|(v, r)| (*v, r))
    }
}

/// A tenant's registry as its stream folds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegisteredTypes {
    /// By event type (`domain.name`).
    pub types: BTreeMap<String, RegisteredType>,
}

impl RegisteredTypes {
    /// Folds one change in. A change is a stored fact, so this never fails:
    /// a deprecation of a version it does not know is ignored.
    pub fn apply(&mut self, change: &RegistryChange) {
        match change {
            RegistryChange::Registered(e) => {
                let entry = self.types.entry(e.event_type.clone()).or_default();
                entry.compatibility = e.compatibility;
                entry.versions.insert(
                    e.version,
                    RegisteredVersion {
                        schema: e.schema.clone(),
                        upcaster: e.upcaster.clone(),
                        reads_previous: e.reads_previous,
                        deprecated: false,
                        deprecation_reason: None,
                    },
                );
            }
            RegistryChange::Deprecated(e) => {
                if let Some(version) = self
                    .types
                    .get_mut(&e.event_type)
                    .and_then(|t| t.versions.get_mut(&e.version))
                {
                    version.deprecated = true;
                    version.deprecation_reason = e.reason.clone();
                }
            }
            RegistryChange::CompatibilitySet(e) => {
                if let Some(entry) = self.types.get_mut(&e.event_type) {
                    entry.compatibility = e.compatibility;
                }
            }
        }
    }

    /// How many versions there are, of all types.
    pub fn version_count(&self) -> usize {
        self.types.values().map(|t| t.versions.len()).sum()
    }
}

/// One version ready to validate and upcast with.
pub(super) struct CompiledVersion {
    /// Why the stored schema no longer compiles, if it does not (the
    /// version is kept so reads of its events still work; appends in it are
    /// refused with this reason).
    pub validator: Result<jsonschema::Validator, String>,
    pub registered: RegisteredVersion,
    /// Its personal fields (none when the annotations are wrong: such a
    /// schema never registers, see `decide`).
    pub personal: Arc<[super::personal::PersonalField]>,
}

/// A tenant's runtime types, compiled, and how far its stream is folded.
pub struct TenantTypes {
    /// The registry stream's version folded in (0: none).
    pub(super) applied: u64,
    pub(super) folded: RegisteredTypes,
    pub(super) compiled: HashMap<EventType, BTreeMap<SchemaVersion, Arc<CompiledVersion>>>,
}

impl std::fmt::Debug for TenantTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTypes")
            .field("applied", &self.applied)
            .field("types", &self.folded.types.len())
            .finish()
    }
}

impl TenantTypes {
    fn empty() -> Self {
        Self {
            applied: 0,
            folded: RegisteredTypes::default(),
            compiled: HashMap::new(),
        }
    }

    /// The registry stream version folded in.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The registry as folded.
    pub fn registered(&self) -> &RegisteredTypes {
        &self.folded
    }

    fn with_change(&self, version: u64, change: &RegistryChange) -> Self {
        let mut folded = self.folded.clone();
        folded.apply(change);
        // Only the type the change is about is compiled again; the others
        // keep their validators (shared, not rebuilt).
        let mut compiled = self.compiled.clone();
        if let Ok(event_type) = change.event_type().parse::<EventType>() {
            match folded.types.get(change.event_type()) {
                Some(registered) => {
                    compiled.insert(event_type, compile_type(registered));
                }
                None => {
                    compiled.remove(&event_type);
                }
            }
        }
        Self {
            applied: version,
            folded,
            compiled,
        }
    }
}

/// Most bytes a compiled `pattern` may take: bounds the memory a
/// registered regular expression can claim.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a runtime schema the way the registry validates with it.
/// Patterns use the `regex` crate's engine, whose matching time is linear
/// in the input: no registered pattern can backtrack catastrophically, and
/// one that needs backtracking (look-around, back-references) does not
/// compile, so its registration is refused.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(PATTERN_SIZE_LIMIT)
                .dfa_size_limit(PATTERN_SIZE_LIMIT),
        )
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Compiles every version of one type.
fn compile_type(registered: &RegisteredType) -> BTreeMap<SchemaVersion, Arc<CompiledVersion>> {
    registered
        .versions
        .iter()
        .filter_map(|(v, r)| {
            let version = SchemaVersion::new(*v).ok()?;
            Some((
                version,
                Arc::new(CompiledVersion {
                    validator: compile(&r.schema),
                    personal: super::personal::declared(&r.schema)
                        .unwrap_or_default()
                        .into(),
                    registered: r.clone(),
                }),
            ))
        })
        .collect()
}

/// What [`RuntimeTypes::install`] did with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Folded in.
    Applied,
    /// Already folded (its stream version is at or below the applied one).
    AlreadyApplied,
    /// Versions before it are missing: read the stream from `after + 1`.
    Gap { after: u64 },
}

/// Every tenant's runtime types in this process.
#[derive(Default)]
pub struct RuntimeTypes {
    tenants: RwLock<HashMap<TenantId, Arc<TenantTypes>>>,
}

impl std::fmt::Debug for RuntimeTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeTypes")
            .field("tenants", &self.read().len())
            .finish()
    }
}

impl RuntimeTypes {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TenantId, Arc<TenantTypes>>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, Arc<TenantTypes>>> {
        self.tenants.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A tenant's types, if any change of its registry was folded in.
    pub fn tenant(&self, tenant: &TenantId) -> Option<Arc<TenantTypes>> {
        self.read().get(tenant).cloned()
    }

    /// The registry stream version folded in for a tenant (0: none).
    pub fn applied(&self, tenant: &TenantId) -> u64 {
        self.read().get(tenant).map_or(0, |t| t.applied)
    }

    /// Folds in the change stored at `stream_version` of the tenant's
    /// registry stream, if it is the next one.
    pub fn install(
        &self,
        tenant: &TenantId,
        stream_version: u64,
        change: &RegistryChange,
    ) -> Installed {
        let mut tenants = self.write();
        let current = tenants.get(tenant).map(Arc::clone);
        let applied = current.as_ref().map_or(0, |t| t.applied);
        if stream_version <= applied {
            return Installed::AlreadyApplied;
        }
        if stream_version != applied + 1 {
            return Installed::Gap { after: applied };
        }
        let base = current.unwrap_or_else(|| Arc::new(TenantTypes::empty()));
        tenants.insert(
            tenant.clone(),
            Arc::new(base.with_change(stream_version, change)),
        );
        Installed::Applied
    }

    /// Every tenant with runtime types.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.read().keys().cloned().collect()
    }
}
