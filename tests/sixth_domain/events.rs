//! The `counters` domain's events and their schemas (a test-only domain,
//! outside the workspace's `schemas/`).

use herald_events::TypedEvent;
use serde::{Deserialize, Serialize};

/// The domain's name.
pub const DOMAIN: &str = "counters";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterIncremented {
    pub by: u32,
}

impl TypedEvent for CounterIncremented {
    const DOMAIN: &'static str = DOMAIN;
    const NAME: &'static str = "counter_incremented";
    const VERSION: u32 = 1;
}

/// Every event type of the domain with its version.
pub const EVENT_TYPES: &[(&str, u32)] = &[("counter_incremented", 1)];

/// Its schema files, as `schemas/` would hold them.
pub const SCHEMAS: &[(&str, &str)] = &[(
    "counters/counter_incremented.v1.json",
    include_str!("schemas/counters/counter_incremented.v1.json"),
)];
