//! Which offset of an assigned partition may be committed. Acknowledgements
//! arrive in any order; the commit mark is the lowest offset handed out and
//! not yet acknowledged (or one past the last one handed out), so a message
//! whose effect is not applied is never committed past. Offsets the log
//! skips (compaction, transaction markers) are settled once everything
//! before them is, so a gap cannot hold the mark back forever.
//!
//! Every assignment of a partition gets a new generation; acknowledgements
//! of deliveries handed out under an older one are ignored, so a partition
//! that moved to another member is redelivered there from the last commit.

use std::collections::BTreeMap;

use crate::ack::ContiguousAcks;

/// One assignment of one partition: what was handed out and acknowledged.
#[derive(Debug)]
pub(super) struct PartitionProgress {
    generation: u64,
    /// Starts at the first offset handed out in this assignment, which is
    /// where the group's committed position put the consumer.
    acks: Option<ContiguousAcks>,
    /// The first offset handed out in this assignment.
    first: u64,
    /// One past the highest offset handed out.
    next: u64,
    /// Offsets the log skipped, as start → end (exclusive), waiting for
    /// everything before them to be acknowledged.
    gaps: BTreeMap<u64, u64>,
    /// The mark last committed (or being committed).
    committed: Option<u64>,
}

impl PartitionProgress {
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            acks: None,
            first: 0,
            next: 0,
            gaps: BTreeMap::new(),
            committed: None,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Records that `offset` is handed out; a partition hands out offsets in
    /// increasing order.
    pub fn handed_out(&mut self, offset: u64) {
        let Some(acks) = &mut self.acks else {
            self.acks = Some(ContiguousAcks::starting_at(offset));
            self.first = offset;
            self.next = offset + 1;
            return;
        };
        if offset > self.next {
            if acks.settled_below() == Some(self.next) {
                acks.advance_to(offset);
            } else {
                self.gaps.insert(self.next, offset);
            }
        }
        self.next = self.next.max(offset + 1);
    }

    /// Records an acknowledgement; true when the commit mark moved.
    pub fn ack(&mut self, offset: u64) -> bool {
        let Some(acks) = &mut self.acks else {
            return false;
        };
        let Some(mut mark) = acks.ack(offset) else {
            return false;
        };
        while let Some(end) = self.gaps.remove(&mark) {
            acks.advance_to(end);
            mark = acks.settled_below().unwrap_or(end);
        }
        true
    }

    /// Everything below this is acknowledged (or not a message).
    pub fn mark(&self) -> Option<u64> {
        self.acks.as_ref().and_then(ContiguousAcks::settled_below)
    }

    /// The mark, when anything was acknowledged in this assignment.
    pub fn progressed(&self) -> Option<u64> {
        self.mark().filter(|mark| *mark > self.first)
    }

    /// The mark to commit, when it moved past what was committed.
    pub fn commit_due(&self) -> Option<u64> {
        let mark = self.mark()?;
        (mark > self.committed.unwrap_or(self.first)).then_some(mark)
    }

    /// Records that `mark` is being committed.
    pub fn committing(&mut self, mark: u64) {
        self.committed = Some(self.committed.map_or(mark, |c| c.max(mark)));
    }

    /// A commit of `mark` failed: commit again at the next chance.
    pub fn commit_failed(&mut self, mark: u64) {
        if self.committed == Some(mark) {
            self.committed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_stops_at_the_oldest_unacknowledged_offset() {
        let mut p = PartitionProgress::new(1);
        for offset in 10..15 {
            p.handed_out(offset);
        }
        assert_eq!(p.commit_due(), None, "nothing acknowledged yet");
        assert!(!p.ack(11));
        assert!(!p.ack(12));
        assert_eq!(p.commit_due(), None, "10 is still being processed");
        assert!(p.ack(10));
        assert_eq!(p.commit_due(), Some(13));
        p.committing(13);
        assert_eq!(p.commit_due(), None);
        assert_eq!(p.progressed(), Some(13), "revocation commits it again");
        assert!(p.ack(13));
        assert_eq!(p.commit_due(), Some(14));
    }

    #[test]
    fn offsets_the_log_skips_do_not_hold_the_mark_back() {
        let mut p = PartitionProgress::new(1);
        p.handed_out(0);
        p.handed_out(1);
        // 2..5 are transaction markers or compacted away.
        p.handed_out(5);
        p.handed_out(6);
        p.ack(1);
        p.ack(5);
        assert_eq!(p.mark(), Some(0));
        p.ack(0);
        assert_eq!(
            p.mark(),
            Some(6),
            "the gap is settled with what precedes it"
        );
        // A gap after everything is acknowledged is settled at once.
        p.ack(6);
        p.handed_out(9);
        assert_eq!(p.mark(), Some(9));
        p.ack(9);
        assert_eq!(p.commit_due(), Some(10));
    }

    #[test]
    fn a_failed_commit_is_due_again() {
        let mut p = PartitionProgress::new(3);
        p.handed_out(0);
        p.ack(0);
        p.committing(1);
        assert_eq!(p.commit_due(), None);
        p.commit_failed(1);
        assert_eq!(p.commit_due(), Some(1));
        assert_eq!(p.generation(), 3);
    }

    #[test]
    fn nothing_is_due_before_anything_is_handed_out() {
        let mut p = PartitionProgress::new(1);
        assert!(!p.ack(4));
        assert_eq!(p.commit_due(), None);
    }
}
