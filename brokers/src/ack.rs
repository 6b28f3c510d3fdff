//! Acknowledgements that may arrive out of order, turned into the in-order
//! progress a broker records: a Kafka offset to commit or a RabbitMQ
//! delivery tag to ack with `multiple`. Nothing past a gap is ever settled,
//! so a message still being processed is never acknowledged by accident.

use std::collections::BTreeSet;

/// Tracks handed-out and acknowledged sequence numbers (offsets or tags).
#[derive(Debug, Clone, Default)]
pub struct ContiguousAcks {
    /// Everything below this is acknowledged.
    settled_below: Option<u64>,
    /// Acknowledged numbers at or above `settled_below`.
    pending: BTreeSet<u64>,
}

impl ContiguousAcks {
    /// Starts tracking at `first`, the first number that will be handed out.
    pub fn starting_at(first: u64) -> Self {
        Self {
            settled_below: Some(first),
            pending: BTreeSet::new(),
        }
    }

    /// Records an acknowledgement; returns the new "everything below is
    /// acknowledged" mark when it moved.
    pub fn ack(&mut self, n: u64) -> Option<u64> {
        let floor = *self.settled_below.get_or_insert(n);
        if n < floor {
            return None;
        }
        self.pending.insert(n);
        let mut next = floor;
        while self.pending.remove(&next) {
            next += 1;
        }
        if next > floor {
            self.settled_below = Some(next);
            Some(next)
        } else {
            None
        }
    }

    /// Treats everything below `n` as settled (messages that are gone),
    /// then continues through acknowledgements already recorded.
    pub fn advance_to(&mut self, n: u64) {
        let floor = self.settled_below.unwrap_or(n);
        if n <= floor && self.settled_below.is_some() {
            return;
        }
        self.pending.retain(|p| *p >= n);
        let mut next = n.max(floor);
        while self.pending.remove(&next) {
            next += 1;
        }
        self.settled_below = Some(next);
    }

    /// Everything below this is acknowledged.
    pub fn settled_below(&self) -> Option<u64> {
        self.settled_below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_stops_at_gaps() {
        let mut acks = ContiguousAcks::starting_at(10);
        assert_eq!(acks.ack(11), None);
        assert_eq!(acks.ack(12), None);
        assert_eq!(acks.ack(10), Some(13));
        assert_eq!(acks.ack(10), None);
        assert_eq!(acks.ack(14), None);
        assert_eq!(acks.ack(13), Some(15));
    }

    #[test]
    fn advancing_skips_what_is_gone_and_keeps_later_acks() {
        let mut acks = ContiguousAcks::starting_at(0);
        acks.ack(5);
        acks.advance_to(5);
        assert_eq!(acks.settled_below(), Some(6));
        acks.advance_to(3);
        assert_eq!(acks.settled_below(), Some(6));
    }
}
