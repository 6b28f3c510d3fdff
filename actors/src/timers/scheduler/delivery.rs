//! The delivery half of the timer scheduler: takes one firing to its
//! target — a command through the target's group, or an event appended to
//! the target's stream — with ids and dedupe keys derived from the firing,
//! so a repeat takes effect once; retries it with the scheduler's backoff
//! while it fails for the time being, and gives up (logged, counted) on a
//! refusal or a delivery that can never be done.

use std::sync::Arc;

use herald_events::timers::{Delivery, DeliveryKind};
use herald_events::{
    EventId, EventType, NewEvent, SchemaVersion, StreamId, StreamVersion, TenantId,
};
use herald_store::ExpectedVersion;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::firing::Done;
use super::{Shared, PRODUCER};
use crate::actor::CommandMeta;
use crate::aggregate::{Refusal, RefusalKind};
use crate::error::CommandError;
use crate::telemetry;

/// The dedupe key of the delivery of one occurrence.
pub fn delivery_dedupe_key(tenant: &TenantId, id: &str, occurrence: u64) -> String {
    format!("timer-delivery/{tenant}/{id}/{occurrence}")
}

/// The id of the event an event delivery appends: the same for every
/// attempt, so the store keeps one.
pub fn delivered_event_id(dedupe_key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_2d74_696d_6572_732d_6576);
    Uuid::new_v5(&NAMESPACE, dedupe_key.as_bytes())
}

/// What to deliver for one firing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct PendingDelivery {
    #[serde(with = "super::firing::tenant_text")]
    pub tenant: TenantId,
    pub timer_id: String,
    pub occurrence: u64,
    /// The `timer_fired` event: the delivery's causation.
    pub fired_event: Uuid,
    pub deliver: Delivery,
    pub correlation: Uuid,
}

/// What went wrong in a delivery attempt.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a delivery attempt did not take effect.
#[derive(Debug)]
enum DeliveryError {
    /// The target's rules forbid it (or its aggregate does not exist).
    Refused(Refusal),
    /// It can never succeed as it is.
    Invalid(Cause),
    /// Try again later.
    Transient(Cause),
}

/// Delivers one firing, retrying while it fails for the time being.
pub(super) async fn deliver(shared: Arc<Shared>, delivery: PendingDelivery) -> Done {
    let span = tracing::info_span!(
        "timer_delivery",
        tenant = %delivery.tenant,
        timer = %delivery.timer_id,
        occurrence = delivery.occurrence,
        to = %format_args!("{}/{}", delivery.deliver.domain, delivery.deliver.stream_id),
        name = %delivery.deliver.name,
    );
    deliver_retrying(shared, delivery).instrument(span).await
}

async fn deliver_retrying(shared: Arc<Shared>, delivery: PendingDelivery) -> Done {
    let _permit = shared.delivery_permits.acquire().await;
    let key = delivery_dedupe_key(&delivery.tenant, &delivery.timer_id, delivery.occurrence);
    let kind = match delivery.deliver.kind {
        DeliveryKind::Command => "command",
        DeliveryKind::Event => "event",
    };
    let mut failures = 0;
    loop {
        let attempt = match delivery.deliver.kind {
            DeliveryKind::Command => deliver_command(&shared, &delivery, &key).await,
            DeliveryKind::Event => deliver_event(&shared, &delivery, &key).await,
        };
        let outcome = match attempt {
            Ok(false) => "delivered",
            Ok(true) => "duplicate",
            Err(DeliveryError::Refused(why)) => {
                tracing::warn!(reason = %why, "The target refused a timer's delivery; it is not retried.");
                "refused"
            }
            Err(DeliveryError::Invalid(why)) => {
                tracing::error!(reason = %why, "A timer's delivery cannot be done; it is not retried.");
                "invalid"
            }
            Err(DeliveryError::Transient(why)) => {
                failures += 1;
                telemetry::timer_delivery_retried();
                let wait = shared.config.backoff().delay(failures);
                tracing::warn!(reason = %why, failures, retry_in_ms = wait.as_millis() as u64, "A timer's delivery failed; retrying.");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        telemetry::timer_delivered(kind, outcome);
        return Done::Delivery {
            fired_event: delivery.fired_event,
        };
    }
}

/// Sends the command; `Ok(true)` when it had been delivered before.
async fn deliver_command(
    shared: &Shared,
    delivery: &PendingDelivery,
    key: &str,
) -> Result<bool, DeliveryError> {
    let deliver = &delivery.deliver;
    let target = shared.domains.get(&deliver.domain).ok_or_else(|| {
        DeliveryError::Invalid(Box::new(CommandError::UnknownDomain {
            domain: deliver.domain.clone(),
            by: "timers".to_owned(),
        }))
    })?;
    let meta = CommandMeta {
        correlation_id: Some(delivery.correlation),
        causation_id: Some(delivery.fired_event),
        dedupe_key: Some(key.to_owned()),
        producer: Some(PRODUCER.to_owned()),
        idempotency: None,
        decided_by_owner: false,
    };
    let body = Value::Object(deliver.body.clone());
    match target
        .execute_json(
            &delivery.tenant,
            &deliver.stream_id,
            &deliver.name,
            body,
            meta,
        )
        .await
    {
        Ok(executed) => Ok(executed.duplicate),
        Err(CommandError::Refused(r)) if r.kind == RefusalKind::Invalid => {
            Err(DeliveryError::Invalid(Box::new(r)))
        }
        // A repeat the target's rules refuse (the first delivery changed
        // its state) is a duplicate when the first delivery's effect shows.
        Err(CommandError::Refused(_)) if delivered_before(shared, delivery).await => Ok(true),
        Err(CommandError::Refused(r)) => Err(DeliveryError::Refused(r)),
        Err(e) if e.is_transient() => Err(DeliveryError::Transient(Box::new(e))),
        Err(e) => Err(DeliveryError::Invalid(Box::new(e))),
    }
}

/// How many of the target stream's latest events are searched for an
/// earlier delivery's effect.
const TRACE_WINDOW: u64 = 256;

/// Whether the target stream's latest events hold this delivery's effect
/// (events of the producer `timers` caused by the firing).
async fn delivered_before(shared: &Shared, delivery: &PendingDelivery) -> bool {
    let deliver = &delivery.deliver;
    let Ok(stream) = StreamId::parse_parts(&deliver.domain, &deliver.stream_id) else {
        return false;
    };
    let Ok(version) = shared.store.stream_version(&delivery.tenant, &stream).await else {
        return false;
    };
    let from = version.get().saturating_sub(TRACE_WINDOW - 1).max(1);
    shared
        .store
        .read_stream(
            &delivery.tenant,
            &stream,
            StreamVersion(from),
            TRACE_WINDOW as usize,
        )
        .await
        .is_ok_and(|events| {
            events
                .iter()
                .any(|e| e.causation_id == delivery.fired_event && e.producer == PRODUCER)
        })
}

/// Appends the event; `Ok(true)` when it had been delivered before.
async fn deliver_event(
    shared: &Shared,
    delivery: &PendingDelivery,
    key: &str,
) -> Result<bool, DeliveryError> {
    let deliver = &delivery.deliver;
    fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> DeliveryError {
        DeliveryError::Invalid(Box::new(e))
    }
    let stream = StreamId::parse_parts(&deliver.domain, &deliver.stream_id).map_err(invalid)?;
    let event_type = EventType::new(stream.domain(), &deliver.name).map_err(invalid)?;
    let version = SchemaVersion::new(1).map_err(invalid)?;
    let payload = Value::Object(deliver.body.clone());
    shared
        .registry
        .validate_in(&delivery.tenant, &event_type, version, &payload)
        .map_err(invalid)?;
    let event = NewEvent::new(event_type, version, payload)
        .with_id(EventId(delivered_event_id(key)))
        .correlation(delivery.correlation, delivery.fired_event)
        .producer(PRODUCER);
    match shared
        .store
        .append(&delivery.tenant, &stream, ExpectedVersion::Any, vec![event])
        .await
    {
        Ok(outcome) => Ok(outcome.duplicate),
        Err(e) if e.is_caller_error() => Err(invalid(e)),
        Err(e) => Err(DeliveryError::Transient(Box::new(e))),
    }
}
