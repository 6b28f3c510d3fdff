//! The tail of the log this process committed last, kept in memory: its own
//! readers — subscriptions, the projections, the relay, the timer
//! scheduler — are woken by a commit and then read the events it made, and
//! those reads are answered here without a query or a decode. Only one
//! contiguous run of committed positions is kept (a commit by another
//! process breaks the run, and it starts again); a read that starts outside
//! it goes to the database, which stays the authority.

use std::collections::VecDeque;
use std::sync::Mutex;

use herald_events::{EventEnvelope, Position};

/// Events kept by default: a few seconds of a busy log, a few MB.
pub(crate) const DEFAULT_CAPACITY: usize = 8192;

pub(crate) struct RecentLog {
    /// Committed events at consecutive positions.
    events: Mutex<VecDeque<EventEnvelope>>,
    capacity: usize,
}

impl RecentLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    /// Keeps the rows of a batch that has committed (in position order, at
    /// consecutive positions, as a batch assigns them).
    pub fn record(&self, rows: Vec<EventEnvelope>) {
        let Some(first) = rows.first() else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let follows = events
            .back()
            .is_none_or(|last| first.position == last.position.next());
        if !follows {
            // Someone else committed in between: what is kept would have a hole.
            events.clear();
        }
        events.extend(rows);
        let excess = events.len().saturating_sub(self.capacity);
        events.drain(..excess);
    }

    /// Up to `max` events from `from` on, when `from` is within the run
    /// kept and the run reaches `head` (the last position known committed,
    /// so that a short answer means the end of the log as known); `None`
    /// when only the database can answer.
    pub fn read(&self, from: Position, max: usize, head: Position) -> Option<Vec<EventEnvelope>> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let first = events.front()?.position;
        let last = events.back()?.position;
        if from < first || from > last || last < head || max == 0 {
            return None;
        }
        let skip = usize::try_from(from.get() - first.get()).ok()?;
        Some(events.iter().skip(skip).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_events::{
        ChainHash, EventId, EventType, SchemaVersion, StreamId, StreamVersion, TenantId,
    };

    fn at(position: u64) -> EventEnvelope {
        let id = EventId::new_v7();
        EventEnvelope {
            id,
            tenant: TenantId::default_tenant(),
            stream: "tickets/T-1".parse::<StreamId>().unwrap(),
            stream_version: StreamVersion(position),
            position: Position(position),
            event_type: "tickets.note_appended".parse::<EventType>().unwrap(),
            version: SchemaVersion::V1,
            occurred_at: chrono::Utc::now(),
            recorded_at: chrono::Utc::now(),
            correlation_id: id.as_uuid(),
            causation_id: id.as_uuid(),
            producer: "herald".into(),
            payload: serde_json::json!({"n": position}),
            hash: ChainHash::GENESIS,
        }
    }

    impl RecentLog {
        fn read_at(&self, from: Position, max: usize) -> Option<Vec<EventEnvelope>> {
            self.read(from, max, Position(0))
        }
    }

    fn positions(events: Option<Vec<EventEnvelope>>) -> Option<Vec<u64>> {
        events.map(|e| e.iter().map(|e| e.position.get()).collect())
    }

    #[test]
    fn answers_only_within_one_contiguous_run() {
        let recent = RecentLog::new(4);
        assert_eq!(positions(recent.read_at(Position(1), 10)), None);
        recent.record(vec![at(5), at(6)]);
        recent.record(vec![at(7)]);
        assert_eq!(positions(recent.read_at(Position(6), 10)), Some(vec![6, 7]));
        assert_eq!(positions(recent.read_at(Position(5), 2)), Some(vec![5, 6]));
        assert_eq!(positions(recent.read_at(Position(4), 10)), None);
        assert_eq!(positions(recent.read_at(Position(8), 10)), None);
        // Capacity: the oldest go first.
        recent.record(vec![at(8), at(9)]);
        assert_eq!(positions(recent.read_at(Position(5), 10)), None);
        assert_eq!(
            positions(recent.read_at(Position(6), 10)),
            Some(vec![6, 7, 8, 9])
        );
        // A hole (another process committed 10): start again at 11.
        recent.record(vec![at(11)]);
        assert_eq!(positions(recent.read_at(Position(9), 10)), None);
        assert_eq!(positions(recent.read_at(Position(11), 10)), Some(vec![11]));
        // Another process committed past what is kept: the database answers.
        assert_eq!(positions(recent.read(Position(11), 10, Position(12))), None);
        assert_eq!(
            positions(recent.read(Position(11), 10, Position(11))),
            Some(vec![11])
        );
    }
}
