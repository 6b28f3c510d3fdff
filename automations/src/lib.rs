//! Automations: rules written as data — a trigger (events, the absence of
//! an event, a schedule), an optional CEL condition, lookups of
//! aggregates' state and templated actions (commands, events, timers) —
//! kept per tenant as events of the log and run by one engine that follows
//! the log, exactly once in effect.
//!
//! - [`definition`]: the document and its compilation;
//! - [`expr`]: CEL expressions and JSON templates;
//! - [`matcher`]: event type and stream patterns;
//! - [`catalog`]: a tenant's automations folded from its definitions
//!   stream, and the decisions that change them;
//! - [`plan`]: what an automation decides for one event, without doing it
//!   (shared by the engine and the dry run);
//! - [`engine`]: the log follower that runs them;
//! - [`dry_run`]: the same decisions over a stretch of history;
//! - [`webhooks`]: the dispatcher that delivers webhook actions, and
//!   [`egress`]: where they may go.

pub mod catalog;
pub mod definition;
pub mod dry_run;
pub mod egress;
pub mod engine;
pub mod expr;
pub mod matcher;
pub mod plan;
pub mod webhooks;

pub use catalog::{Catalog, Entry};
pub use definition::{Compiled, Definition, InvalidDefinition};
