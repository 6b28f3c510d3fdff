//! The check of one incoming event, shared by every way in —
//! `POST /v1/events`, `POST /v1/streams/…/events` and the broker ingest — so
//! all of them accept and refuse exactly the same events. It knows nothing
//! of HTTP: it takes the event registry and the [`Identity`] the event is
//! published as (its tenant and scopes), and refuses with a [`Problem`]
//! whose kind names what is wrong. Text no store can keep (U+0000) in any
//! field, payload keys and strings at any depth included, a payload nested
//! deeper than a reader could parse, and a time no store can keep, are
//! `invalid-append` with the field's JSON `pointer` within the event,
//! checked before anything else.

use chrono::{DateTime, Utc};
use herald_events::{
    EventId, EventRegistry, EventType, NewEvent, SchemaVersion, StreamId, TenantId,
};
use herald_store::storable::{self, Unstorable};
use herald_store::ExpectedVersion;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::api::problem::{Problem, ProblemKind};
use crate::auth::{Action, Identity};

/// Most characters in an idempotency key (and a message id).
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// One published event.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishItem {
    /// `domain/id`.
    #[schema(example = "tickets/T-1001")]
    pub stream: String,
    /// A registered event type of the stream's domain, `domain.name`.
    #[serde(rename = "type")]
    #[schema(example = "tickets.ticket_opened")]
    pub event_type: String,
    /// The schema version the payload is written in.
    pub version: u32,
    /// The event's data, checked against its type's schema.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Repeating a key returns the first answer and appends nothing.
    pub idempotency_key: Option<String>,
    /// An explicit event id (ignored when an idempotency key is given).
    pub id: Option<Uuid>,
    /// Optional optimistic check of the stream's version.
    pub expected_version: Option<u64>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub producer: Option<String>,
    /// Optional; when given it must be the publisher's tenant.
    pub tenant: Option<String>,
}

/// The event id an idempotency key stands for, within a tenant.
pub fn idempotent_id(tenant: &TenantId, key: &str) -> EventId {
    // A fixed namespace: the same tenant and key always give the same id.
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d69_646d_706f_7465_6e74);
    EventId(Uuid::new_v5(
        &NAMESPACE,
        format!("{tenant}\n{key}").as_bytes(),
    ))
}

/// A checked event, ready to append.
#[derive(Debug)]
pub struct Prepared {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub event: NewEvent,
}

/// Checks one item published as `identity`; the problem names its index
/// (`events[i]: …` and `event_index`).
pub fn prepare(
    index: usize,
    item: PublishItem,
    registry: &EventRegistry,
    identity: &Identity,
) -> Result<Prepared, Problem> {
    let at = |p: Problem| p.with("event_index", index);
    let invalid = |kind: ProblemKind, detail: String| {
        Problem::new(kind, format!("events[{index}]: {detail}")).with("event_index", index)
    };
    let texts = [
        ("/stream", Some(&item.stream)),
        ("/tenant", item.tenant.as_ref()),
        ("/idempotency_key", item.idempotency_key.as_ref()),
    ];
    for (pointer, text) in texts {
        if let Some(found) = text.and_then(|t| Unstorable::in_text(pointer, t)) {
            return Err(unstorable(index, found));
        }
    }
    identity
        .require_tenant(item.tenant.as_deref())
        .map_err(at)?;
    let (domain, id) = item.stream.split_once('/').ok_or_else(|| {
        invalid(
            ProblemKind::InvalidStreamId,
            format!("stream {:?} is not domain/id", item.stream),
        )
    })?;
    let stream = StreamId::parse_parts(domain, id).map_err(|e| {
        at(Problem::new(
            ProblemKind::InvalidStreamId,
            format!("stream {domain}/{id}: {e}"),
        ))
    })?;
    let id = match &item.idempotency_key {
        Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY => {
            return Err(invalid(
                ProblemKind::InvalidRequest,
                format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            ))
        }
        Some(key) => Some(idempotent_id(&identity.tenant, key).as_uuid()),
        None => item.id,
    };

    let event = check_event(
        index,
        &stream,
        EventFields {
            event_type: item.event_type,
            version: item.version,
            payload: item.payload,
            id,
            occurred_at: item.occurred_at,
            correlation_id: item.correlation_id,
            causation_id: item.causation_id,
            producer: item.producer,
        },
        registry,
        identity,
    )?;
    Ok(Prepared {
        stream,
        expected: ExpectedVersion::from_option(item.expected_version),
        event,
    })
}

/// What every incoming event carries, whichever way it came in.
#[derive(Debug)]
pub struct EventFields {
    pub event_type: String,
    pub version: u32,
    pub payload: Value,
    pub id: Option<Uuid>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub producer: Option<String>,
}

/// Checks one event bound for `stream`: its text and time are what a store
/// can keep, its type belongs to the stream's domain and to the publisher's
/// scopes, its version exists, its payload fits the schema, its producer
/// name fits the store. Problems name `events[index]`.
pub fn check_event(
    index: usize,
    stream: &StreamId,
    fields: EventFields,
    registry: &EventRegistry,
    identity: &Identity,
) -> Result<NewEvent, Problem> {
    let at = |p: Problem| p.with("event_index", index);
    let invalid = |kind: ProblemKind, detail: String| {
        Problem::new(kind, format!("events[{index}]: {detail}")).with("event_index", index)
    };
    let found = Unstorable::in_text("/type", &fields.event_type)
        .or_else(|| {
            let producer = fields.producer.as_deref()?;
            Unstorable::in_text("/producer", producer)
        })
        .or_else(|| storable::find_unstorable(&fields.payload).map(|f| f.within("/payload")));
    if let Some(found) = found {
        return Err(unstorable(index, found));
    }
    let deep = storable::deeper_than(&fields.payload, storable::MAX_PAYLOAD_DEPTH);
    if let Some(pointer) = deep.map(|p| format!("/payload{p}")) {
        return Err(invalid(
            ProblemKind::InvalidAppend,
            format!(
                "{pointer} nests deeper than {} levels, the limit of a payload",
                storable::MAX_PAYLOAD_DEPTH
            ),
        )
        .with("pointer", pointer));
    }
    if let Some(at) = fields
        .occurred_at
        .filter(|t| !storable::is_storable_time(t))
    {
        return Err(invalid(
            ProblemKind::InvalidAppend,
            format!("occurred_at {at} is outside the years 1 to 9999, which Herald stores"),
        )
        .with("pointer", "/occurred_at"));
    }
    let event_type: EventType = fields.event_type.parse().map_err(|e| {
        invalid(
            ProblemKind::UnknownEventType,
            format!("type {:?}: {e}", fields.event_type),
        )
    })?;
    if event_type.domain() != stream.domain().as_str() {
        return Err(invalid(
            ProblemKind::InvalidAppend,
            format!(
                "an event of type {event_type} cannot go into stream {stream} of domain {}",
                stream.domain()
            ),
        ));
    }
    if event_type.domain() == herald_events::registry::events::DOMAIN {
        return Err(invalid(
            ProblemKind::ReservedEventType,
            format!(
                "{event_type} is the schema registry's own event; only Herald appends it \
                 (register schemas with POST /v1/schemas)"
            ),
        ));
    }
    if event_type.domain() == herald_events::automations::DOMAIN {
        return Err(invalid(
            ProblemKind::ReservedEventType,
            format!(
                "{event_type} is the automations' own event; only Herald appends it \
                 (manage automations with POST /v1/automations)"
            ),
        ));
    }
    if event_type.domain() == herald_events::subjects::DOMAIN {
        return Err(invalid(
            ProblemKind::ReservedEventType,
            format!(
                "{event_type} records an erasure; only Herald appends it \
                 (erase with POST /v1/subjects/{{subject}}/forget)"
            ),
        ));
    }
    identity.require(Action::Publish, &event_type).map_err(at)?;
    let version = SchemaVersion::new(fields.version)
        .map_err(|e| invalid(ProblemKind::UnknownSchemaVersion, e.to_string()))?;
    registry
        .validate_in(&identity.tenant, &event_type, version, &fields.payload)
        .map_err(|e| Problem::from_validation(index, &e))?;
    let mut event = NewEvent::new(event_type, version, fields.payload);
    if let Some(id) = fields.id {
        event = event.with_id(EventId(id));
    }
    if let Some(at) = fields.occurred_at {
        event = event.occurred_at(at);
    }
    let correlation = fields.correlation_id.unwrap_or(event.correlation_id);
    let causation = fields.causation_id.unwrap_or(event.causation_id);
    event = event.correlation(correlation, causation);
    if let Some(producer) = fields.producer {
        if producer.is_empty() || producer.len() > herald_store::MAX_PRODUCER_LEN {
            return Err(invalid(
                ProblemKind::InvalidRequest,
                format!(
                    "producer must be 1 to {} bytes",
                    herald_store::MAX_PRODUCER_LEN
                ),
            ));
        }
        event = event.producer(producer);
    }
    Ok(event)
}

/// The `invalid-append` of event `index` holding U+0000 where `found` says.
fn unstorable(index: usize, found: Unstorable) -> Problem {
    Problem::new(
        ProblemKind::InvalidAppend,
        format!("events[{index}]: {found}"),
    )
    .with("event_index", index)
    .with("pointer", found.pointer.clone())
    .with("in_key", found.in_key)
}
