//! A sixth domain, `counters`, built only from a domain's parts: its events
//! and schemas, its aggregate, its read model and its view — and the one
//! line that registers them ([`domain`]).

pub mod actors;
pub mod events;
pub mod read_model;
pub mod view;

/// The domain's registration: the one line.
pub fn domain() -> herald::domains::Domain {
    herald::domains::Domain::new(actors::spec())
        .views(view::VIEWS)
        .embedded_read_model(read_model::CountersProjection)
}
