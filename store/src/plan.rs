//! Deciding a group-commit batch without I/O: given the log's head, the
//! stream versions and the already-stored event ids that the batch touches,
//! settle each append (written, idempotent repeat, or refused) and build the
//! rows to insert, with positions, stream versions, record time and chain
//! hashes. Both backends call this inside their write transaction, under the
//! log lock, so what it reads cannot change underneath it. Before that,
//! [`check_append`] refuses what no backend could keep or give back
//! ([`crate::storable`]), so one bad event never fails a whole batch.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use herald_events::envelope::to_stored_precision;
use herald_events::{
    chain_hash, EventEnvelope, EventId, NewEvent, Position, StreamId, StreamVersion, TenantId,
};

use crate::error::StoreError;
use crate::model::{AppendOutcome, AppendedEvent, ExpectedVersion, LogHead};
use crate::storable;

/// Longest producer name kept.
pub const MAX_PRODUCER_LEN: usize = 200;

/// One append waiting in a batch.
#[derive(Debug, Clone)]
pub struct PendingAppend {
    pub tenant: TenantId,
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// Part of an all-or-nothing batch: if any append of the batch is
    /// refused, none is written. Such a batch holds nothing else.
    pub atomic: bool,
}

impl PendingAppend {
    /// The appends of one `append_all` call: several streams of a tenant.
    pub fn all_of(
        tenant: &TenantId,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Vec<Self> {
        appends
            .into_iter()
            .map(|(stream, expected, events)| Self::new(tenant, &stream, expected, events))
            .collect()
    }

    pub fn new(
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            tenant: tenant.clone(),
            stream: stream.clone(),
            expected,
            events,
            atomic: false,
        }
    }

    pub fn key(&self) -> StreamKey {
        StreamKey {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
        }
    }
}

/// A stream within its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub tenant: TenantId,
    pub stream: StreamId,
}

/// Where an already-stored event id lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredId {
    pub position: Position,
    pub key: StreamKey,
    pub stream_version: StreamVersion,
}

/// What the batch needs to know from the database.
#[derive(Debug, Default)]
pub struct BatchFacts {
    /// Current version of every stream the batch appends to (absent = 0).
    pub versions: HashMap<StreamKey, StreamVersion>,
    /// Every event id of the batch that is already stored.
    pub stored_ids: HashMap<EventId, StoredId>,
}

/// The settled batch.
#[derive(Debug)]
pub struct BatchPlan {
    /// One per append, in order.
    pub outcomes: Vec<Result<AppendOutcome, StoreError>>,
    /// Rows to insert, in position order.
    pub rows: Vec<EventEnvelope>,
    /// The log head once the rows are committed.
    pub head: LogHead,
    /// Every stream of the batch at its version once the rows are committed.
    pub versions: HashMap<StreamKey, StreamVersion>,
}

/// Checks what can be checked of an append before it joins a batch.
pub fn check_append(append: &PendingAppend) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidAppend {
        stream: append.stream.clone(),
        reason,
    };
    if append.events.is_empty() {
        return Err(invalid("an append needs at least one event".into()));
    }
    let mut ids = HashSet::with_capacity(append.events.len());
    for (i, event) in append.events.iter().enumerate() {
        if event.event_type.domain() != append.stream.domain().as_str() {
            return Err(invalid(format!(
                "event {i} is of type {} but the stream belongs to domain {}",
                event.event_type,
                append.stream.domain()
            )));
        }
        if !ids.insert(event.id) {
            return Err(invalid(format!("event id {} appears twice", event.id)));
        }
        if event.producer.len() > MAX_PRODUCER_LEN {
            return Err(invalid(format!(
                "event {i}: producer is {} bytes long, the limit is {MAX_PRODUCER_LEN}",
                event.producer.len()
            )));
        }
        if !storable::is_storable(&event.producer) {
            return Err(invalid(format!(
                "event {i}: producer holds the character U+0000, which Herald cannot store"
            )));
        }
        if !storable::is_storable_time(&event.occurred_at) {
            return Err(invalid(format!(
                "event {i}: occurred_at {} is outside the years 1 to 9999",
                event.occurred_at
            )));
        }
        if let Some(pointer) = storable::deeper_than(&event.payload, storable::MAX_PAYLOAD_DEPTH) {
            return Err(invalid(format!(
                "event {i}: /payload{pointer} nests deeper than {} levels, the limit",
                storable::MAX_PAYLOAD_DEPTH
            )));
        }
        if let Some(found) = storable::find_unstorable(&event.payload) {
            return Err(invalid(format!("event {i}: {}", found.within("/payload"))));
        }
    }
    Ok(())
}

/// Settles a batch of appends that each passed [`check_append`]. `now` is the record time; it never goes below the
/// previous head's, so record times never decrease along the log.
pub fn plan_batch(
    head: LogHead,
    now: DateTime<Utc>,
    appends: &[PendingAppend],
    mut facts: BatchFacts,
) -> BatchPlan {
    let atomic = appends.iter().any(|a| a.atomic);
    let before = atomic.then(|| (head, facts.versions.clone()));
    let now = to_stored_precision(now);
    let recorded_at = head
        .recorded_at
        .map_or(now, |last| to_stored_precision(last).max(now));
    let mut head = head;
    let mut rows = Vec::new();
    let mut outcomes = Vec::with_capacity(appends.len());

    for append in appends {
        let outcome = settle(append, &facts).map(|settled| match settled {
            Settled::Repeat(outcome) => outcome,
            Settled::Write(current) => {
                let key = append.key();
                let mut appended = Vec::with_capacity(append.events.len());
                let mut version = current;
                for event in &append.events {
                    version = version.next();
                    let mut row = EventEnvelope {
                        id: event.id,
                        tenant: append.tenant.clone(),
                        stream: append.stream.clone(),
                        stream_version: version,
                        position: head.position.next(),
                        event_type: event.event_type.clone(),
                        version: event.version,
                        occurred_at: to_stored_precision(event.occurred_at),
                        recorded_at,
                        correlation_id: event.correlation_id,
                        causation_id: event.causation_id,
                        producer: event.producer.clone(),
                        payload: storable::as_stored(&event.payload),
                        hash: head.hash,
                    };
                    row.hash = chain_hash(&head.hash, &row);
                    head = LogHead::after(&row);
                    facts.stored_ids.insert(
                        row.id,
                        StoredId {
                            position: row.position,
                            key: key.clone(),
                            stream_version: version,
                        },
                    );
                    appended.push(AppendedEvent {
                        id: row.id,
                        position: row.position,
                        stream_version: version,
                    });
                    rows.push(row);
                }
                facts.versions.insert(key, version);
                AppendOutcome {
                    events: appended,
                    stream_version: version,
                    duplicate: false,
                }
            }
        });
        outcomes.push(outcome);
    }
    if let Some((head_before, versions_before)) = before {
        if outcomes.iter().any(Result::is_err) {
            // All or nothing: write none of it. The outcomes stay as they are
            // so the caller can tell which append was refused and why.
            return BatchPlan {
                outcomes,
                rows: Vec::new(),
                head: head_before,
                versions: versions_before,
            };
        }
    }
    BatchPlan {
        outcomes,
        rows,
        head,
        versions: facts.versions,
    }
}

enum Settled {
    /// Every event was stored by an earlier identical append.
    Repeat(AppendOutcome),
    /// New events, to be written after this stream version.
    Write(StreamVersion),
}

/// `append` has passed [`check_append`] before it joined the batch.
fn settle(append: &PendingAppend, facts: &BatchFacts) -> Result<Settled, StoreError> {
    let key = append.key();
    let stored: Vec<Option<&StoredId>> = append
        .events
        .iter()
        .map(|e| facts.stored_ids.get(&e.id))
        .collect();

    if stored.iter().all(Option::is_some) {
        let found: Vec<&StoredId> = stored.iter().flatten().copied().collect();
        let first = found[0];
        let whole_repeat = found.iter().enumerate().all(|(i, s)| {
            s.key == key && s.stream_version.get() == first.stream_version.get() + i as u64
        });
        if whole_repeat {
            return Ok(Settled::Repeat(AppendOutcome {
                events: append
                    .events
                    .iter()
                    .zip(&found)
                    .map(|(e, s)| AppendedEvent {
                        id: e.id,
                        position: s.position,
                        stream_version: s.stream_version,
                    })
                    .collect(),
                stream_version: found[found.len() - 1].stream_version,
                duplicate: true,
            }));
        }
    }
    if let Some((event, Some(s))) = append.events.iter().zip(&stored).find(|(_, s)| s.is_some()) {
        return Err(StoreError::DuplicateEventId {
            id: event.id,
            stream: s.key.stream.clone(),
            position: s.position,
        });
    }

    let current = facts.versions.get(&key).copied().unwrap_or_default();
    if !append.expected.allows(current) {
        return Err(StoreError::WrongExpectedVersion {
            tenant: append.tenant.clone(),
            stream: append.stream.clone(),
            expected: append.expected,
            actual: current,
        });
    }
    Ok(Settled::Write(current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_events::{ChainHash, SchemaVersion};
    use serde_json::json;

    fn event(n: u32) -> NewEvent {
        NewEvent::new(
            "tickets.note_appended".parse().unwrap(),
            SchemaVersion::V1,
            json!({ "note": format!("n{n}") }),
        )
    }

    fn append(id: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> PendingAppend {
        PendingAppend::new(
            &TenantId::default_tenant(),
            &format!("tickets/{id}").parse().unwrap(),
            expected,
            events,
        )
    }

    #[test]
    fn an_atomic_batch_with_one_refusal_writes_nothing() {
        let mut ok = append("a", ExpectedVersion::NO_STREAM, vec![event(1)]);
        let mut bad = append(
            "b",
            ExpectedVersion::Exact(StreamVersion(3)),
            vec![event(2)],
        );
        ok.atomic = true;
        bad.atomic = true;
        let plan = plan_batch(
            LogHead::EMPTY,
            Utc::now(),
            &[ok, bad],
            BatchFacts::default(),
        );
        assert!(plan.rows.is_empty());
        assert_eq!(plan.head, LogHead::EMPTY);
        assert!(plan.outcomes[1].is_err());
    }

    #[test]
    fn positions_versions_and_hashes_chain_across_the_batch() {
        let a = append("a", ExpectedVersion::NO_STREAM, vec![event(1), event(2)]);
        let b = append("b", ExpectedVersion::Any, vec![event(3)]);
        let a2 = append(
            "a",
            ExpectedVersion::Exact(StreamVersion(2)),
            vec![event(4)],
        );
        let plan = plan_batch(
            LogHead::EMPTY,
            Utc::now(),
            &[a, b, a2],
            BatchFacts::default(),
        );
        assert!(plan.outcomes.iter().all(Result::is_ok));
        let positions: Vec<u64> = plan.rows.iter().map(|r| r.position.get()).collect();
        assert_eq!(positions, [1, 2, 3, 4]);
        let versions: Vec<u64> = plan.rows.iter().map(|r| r.stream_version.get()).collect();
        assert_eq!(versions, [1, 2, 1, 3]);
        let mut prev = ChainHash::GENESIS;
        for row in &plan.rows {
            assert_eq!(row.hash, chain_hash(&prev, row));
            prev = row.hash;
        }
        assert_eq!(plan.head.position, Position(4));
        assert_eq!(plan.head.hash, prev);
    }

    #[test]
    fn a_conflict_fails_only_its_own_append() {
        let ok1 = append("a", ExpectedVersion::NO_STREAM, vec![event(1)]);
        let bad = append("a", ExpectedVersion::NO_STREAM, vec![event(2)]);
        let ok2 = append("b", ExpectedVersion::Any, vec![event(3)]);
        let plan = plan_batch(
            LogHead::EMPTY,
            Utc::now(),
            &[ok1, bad, ok2],
            BatchFacts::default(),
        );
        assert!(plan.outcomes[0].is_ok());
        assert!(matches!(
            plan.outcomes[1],
            Err(StoreError::WrongExpectedVersion {
                actual: StreamVersion(1),
                ..
            })
        ));
        assert!(plan.outcomes[2].is_ok());
        assert_eq!(plan.rows.len(), 2);
        assert_eq!(plan.rows[1].position, Position(2));
    }

    #[test]
    fn a_repeat_within_one_batch_returns_the_first_positions() {
        let events = vec![event(1), event(2)];
        let first = append("a", ExpectedVersion::NO_STREAM, events.clone());
        let again = append("a", ExpectedVersion::NO_STREAM, events);
        let plan = plan_batch(
            LogHead::EMPTY,
            Utc::now(),
            &[first, again],
            BatchFacts::default(),
        );
        let (a, b) = (
            plan.outcomes[0].as_ref().unwrap(),
            plan.outcomes[1].as_ref().unwrap(),
        );
        assert!(!a.duplicate && b.duplicate);
        assert_eq!(a.events, b.events);
        assert_eq!(plan.rows.len(), 2);
    }

    #[test]
    fn a_partial_repeat_is_refused() {
        let e1 = event(1);
        let first = append("a", ExpectedVersion::Any, vec![e1.clone()]);
        let partial = append("a", ExpectedVersion::Any, vec![e1, event(2)]);
        let plan = plan_batch(
            LogHead::EMPTY,
            Utc::now(),
            &[first, partial],
            BatchFacts::default(),
        );
        assert!(matches!(
            plan.outcomes[1],
            Err(StoreError::DuplicateEventId { .. })
        ));
        assert_eq!(plan.rows.len(), 1);
    }

    #[test]
    fn record_time_never_goes_backwards() {
        let later = Utc::now() + chrono::Duration::hours(1);
        let head = LogHead {
            position: Position(7),
            hash: ChainHash([3; 32]),
            recorded_at: Some(later),
        };
        let plan = plan_batch(
            head,
            Utc::now(),
            &[append("a", ExpectedVersion::Any, vec![event(1)])],
            BatchFacts::default(),
        );
        assert_eq!(plan.rows[0].recorded_at, to_stored_precision(later));
        assert_eq!(plan.rows[0].position, Position(8));
    }

    #[test]
    fn malformed_appends_are_refused_before_writing() {
        let mut nul = event(1);
        nul.payload = json!({"note": "a\u{0}b"});
        let wrong_domain = NewEvent::new(
            "edges.edge_registered".parse().unwrap(),
            SchemaVersion::V1,
            json!({}),
        );
        let mut nul_producer = event(3);
        nul_producer.producer = "p\u{0}".into();
        let mut deep = event(5);
        deep.payload = json!({"note": (0..64).fold(json!(1), |v, _| json!([v]))});
        let mut far_future = event(4);
        far_future.occurred_at = "+10000-01-01T00:00:00Z".parse().unwrap();
        let dup = event(2);
        for (bad, words) in [
            (
                append("a", ExpectedVersion::Any, vec![nul_producer]),
                "producer holds the character U+0000",
            ),
            (
                append("a", ExpectedVersion::Any, vec![far_future]),
                "years 1 to 9999",
            ),
            (
                append("a", ExpectedVersion::Any, vec![deep]),
                "nests deeper than 64 levels",
            ),
            (
                append("a", ExpectedVersion::Any, vec![]),
                "at least one event",
            ),
            (
                append("a", ExpectedVersion::Any, vec![nul]),
                "/payload/note holds",
            ),
            (
                append("a", ExpectedVersion::Any, vec![wrong_domain]),
                "domain tickets",
            ),
            (
                append("a", ExpectedVersion::Any, vec![dup.clone(), dup]),
                "appears twice",
            ),
        ] {
            let err = check_append(&bad).unwrap_err();
            assert!(err.to_string().contains(words), "{err}");
        }
    }
}
