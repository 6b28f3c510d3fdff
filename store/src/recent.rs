//! The tail of the log, kept in memory: this process's readers —
//! subscriptions, the projections, the relay, the timer scheduler — are
//! woken by a commit and then read the events it made, and those reads are
//! answered here without a query or a decode. The run is filled by this
//! process's own commits and by the pages its readers read from the
//! database, so that another process's commit is read from the database
//! once per process, not once per reader. Only one contiguous run of
//! committed positions is kept; a read that starts outside it goes to the
//! database, which stays the authority.

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

    /// Keeps committed events at consecutive positions: a batch this
    /// process committed, or a page read from the database. What joins or
    /// overlaps the run kept is merged into it; a newer run with a hole
    /// before it replaces it (the tail is what readers ask for); an older
    /// one, or one with a hole inside, is not kept.
    pub fn record(&self, rows: Vec<EventEnvelope>) {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        let (first, last) = (first.position, last.position);
        if last.get() - first.get() + 1 != rows.len() as u64 {
            return;
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let kept = events
            .front()
            .zip(events.back())
            .map(|(a, b)| (a.position, b.position));
        match kept {
            Some((kept_first, kept_last))
                if first <= kept_last.next() && kept_first <= last.next() =>
            {
                // Joins or overlaps: add what lies beyond either end.
                let before =
                    usize::try_from(kept_first.get().saturating_sub(first.get())).unwrap_or(0);
                let mut rows = rows.into_iter();
                let older: Vec<EventEnvelope> = rows.by_ref().take(before).collect();
                for event in older.into_iter().rev() {
                    events.push_front(event);
                }
                events.extend(rows.filter(|e| e.position > kept_last));
            }
            Some((_, kept_last)) if last < kept_last => return,
            _ => {
                // Nothing kept, or a hole before these: start again here.
                events.clear();
                events.extend(rows);
            }
        }
        let excess = events.len().saturating_sub(self.capacity);
        events.drain(..excess);
    }

    /// The last position of the run kept.
    #[cfg(test)]
    pub fn last(&self) -> Option<Position> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.back().map(|e| e.position)
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

    #[test]
    fn pages_read_from_the_database_join_the_run() {
        let recent = RecentLog::new(16);
        // Own commit at 5..6, then another process's 7..8 read from the
        // database, then an own commit at 9.
        recent.record(vec![at(5), at(6)]);
        recent.record(vec![at(7), at(8)]);
        recent.record(vec![at(9)]);
        assert_eq!(
            positions(recent.read_at(Position(5), 10)),
            Some(vec![5, 6, 7, 8, 9])
        );
        // Another process committed 10..11; this one 12 before any reader
        // read them: the run starts again at 12, and the page 10..12 read
        // from the database fills the hole.
        recent.record(vec![at(12)]);
        assert_eq!(positions(recent.read_at(Position(10), 10)), None);
        recent.record(vec![at(10), at(11), at(12)]);
        assert_eq!(
            positions(recent.read_at(Position(10), 10)),
            Some(vec![10, 11, 12])
        );
        // An overlapping page that reaches further extends the run.
        recent.record(vec![at(11), at(12), at(13)]);
        assert_eq!(
            positions(recent.read_at(Position(12), 10)),
            Some(vec![12, 13])
        );
        // A page joining the run from below is kept in front of it.
        recent.record(vec![at(8), at(9)]);
        assert_eq!(
            positions(recent.read_at(Position(8), 10)),
            Some(vec![8, 9, 10, 11, 12, 13])
        );
        // An older run with a hole after it is not kept; nor is a page with
        // a hole inside.
        recent.record(vec![at(2), at(3)]);
        assert_eq!(positions(recent.read_at(Position(2), 10)), None);
        recent.record(vec![at(14), at(16)]);
        assert_eq!(recent.last(), Some(Position(13)));
    }
}
