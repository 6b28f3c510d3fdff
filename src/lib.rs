//! The `herald` binary's library: configuration (`config`), the HTTP API
//! (`api`), authentication and scopes (`auth`), live subscriptions (`ws`),
//! the outbox relay (`relay`), the broker ingest (`ingest`), the runtime
//! event types producers register (`runtime_schemas`), the automations
//! (`automations`), telemetry setup
//! (`telemetry`) and the command line (`cli`). The binary in `main.rs` only
//! parses arguments and calls [`cli::run`].

pub mod api;
pub mod auth;
pub mod automations;
pub mod cli;
pub mod config;
pub mod console;
pub mod domains;
pub mod ingest;
pub mod placement;
pub mod relay;
pub mod runtime_schemas;
pub mod telemetry;
pub mod topics;
pub mod ws;
