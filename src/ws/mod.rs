//! Live subscriptions: the `herald.v1` websocket at `/v1/subscribe`
//! (`session`), server-sent events at `/v1/events/stream` (`sse`), both fed
//! by the process's `hub`, which follows the store's log once. The protocol
//! (`protocol`) is specified for client authors in `docs/websocket.md`.

pub mod hub;
pub mod protocol;
pub mod session;
pub mod sse;

pub use hub::Hub;
