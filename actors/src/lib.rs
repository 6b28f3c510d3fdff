//! Herald's actor runtime on actix and the domains that run on it.
//!
//! A domain writes an [`Aggregate`] (decide/apply) and its events; the
//! runtime runs one actor per stream in an [`AggregateGroup`] (started on
//! demand, passivated when idle or past the group's cap, rehydrated from a
//! snapshot plus later events, bounded mailbox, conflicts retried), and
//! [`testing`] gives given/when/then tests of the decisions. The domains
//! live in one folder each, and each registers itself with a
//! [`DomainSpec`] ([`domain`]).

pub mod actor;
pub mod aggregate;
pub mod domain;
pub mod drafts;
pub mod edges;
pub mod error;
pub mod group;
pub mod reactions;
pub mod registry;
pub mod state_at;
pub mod telemetry;
pub mod testing;
pub mod tickets;
pub mod timers;

pub use actor::{dedupe_id, CommandMeta, Executed, ExecutedEvent, Idempotency};
pub use aggregate::{Aggregate, CommandContext, DecodeError, DomainEvent, Refusal, RefusalKind};
pub use domain::{AggregateDomain, DomainSpec, DomainSpecs, EventsDomain};
pub use error::CommandError;
pub use group::{ActorRuntime, AggregateGroup, CommandTarget, Domains, GroupConfig};
