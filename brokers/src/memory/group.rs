//! A consumer group's state on one in-process topic: its members, which
//! member owns each partition, what each partition has handed out and what
//! has been acknowledged.

use crate::ack::ContiguousAcks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct MemberId(pub u64);

#[derive(Debug)]
struct PartitionState {
    owner: Option<MemberId>,
    /// The member taking over once the owner has acknowledged all it holds.
    next_owner: Option<MemberId>,
    acks: ContiguousAcks,
    /// The next offset to hand out.
    next: u64,
    /// Offsets below this were handed out before (a repeat is a redelivery).
    handed_below: u64,
}

impl PartitionState {
    fn new(start: u64) -> Self {
        Self {
            owner: None,
            next_owner: None,
            acks: ContiguousAcks::starting_at(start),
            next: start,
            handed_below: start,
        }
    }

    /// Everything below this is acknowledged (or gone).
    fn committed(&mut self, start: u64) -> u64 {
        self.acks.advance_to(start);
        self.acks.settled_below().unwrap_or(start)
    }
}

#[derive(Debug)]
pub(super) struct GroupState {
    members: Vec<MemberId>,
    partitions: Vec<PartitionState>,
}

impl GroupState {
    /// A new group starts at the oldest retained message of each partition.
    pub fn new(starts: &[u64]) -> Self {
        Self {
            members: Vec::new(),
            partitions: starts.iter().map(|s| PartitionState::new(*s)).collect(),
        }
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn committed(&self, partition: usize, start: u64) -> u64 {
        self.partitions[partition]
            .acks
            .settled_below()
            .unwrap_or(start)
            .max(start)
    }

    pub fn join(&mut self, member: MemberId, starts: &[u64]) {
        if !self.members.contains(&member) {
            self.members.push(member);
        }
        self.rebalance(starts);
    }

    pub fn leave(&mut self, member: MemberId, starts: &[u64]) {
        self.members.retain(|m| *m != member);
        self.rebalance(starts);
    }

    /// Spreads partitions over members (partition i to member i mod n). A
    /// departed owner's partition moves at once, from its last acknowledged
    /// offset; a live owner's moves once it has acknowledged what it holds.
    fn rebalance(&mut self, starts: &[u64]) {
        self.members.sort();
        let members = self.members.clone();
        for (p, part) in self.partitions.iter_mut().enumerate() {
            let desired = (!members.is_empty()).then(|| members[p % members.len()]);
            match part.owner {
                Some(owner) if members.contains(&owner) => {
                    part.next_owner = (Some(owner) != desired).then_some(desired).flatten();
                }
                _ => {
                    part.owner = desired;
                    part.next_owner = None;
                    part.next = part.committed(starts.get(p).copied().unwrap_or(0));
                }
            }
        }
    }

    /// The next offset `member` may process in `partition`, if any.
    pub fn hand_out(
        &mut self,
        member: MemberId,
        partition: usize,
        start: u64,
        end: u64,
        prefetch: u64,
    ) -> Option<(u64, bool)> {
        let part = self.partitions.get_mut(partition)?;
        let committed = part.committed(start);
        part.next = part.next.max(committed);
        if let Some(next_owner) = part.next_owner {
            if part.next == committed {
                part.owner = Some(next_owner);
                part.next_owner = None;
            }
        }
        if part.owner != Some(member) || part.next_owner.is_some() {
            return None;
        }
        if part.next >= end || part.next - committed >= prefetch {
            return None;
        }
        let offset = part.next;
        part.next += 1;
        let redelivered = offset < part.handed_below;
        part.handed_below = part.handed_below.max(offset + 1);
        Some((offset, redelivered))
    }

    pub fn ack(&mut self, partition: usize, offset: u64, start: u64) {
        if let Some(part) = self.partitions.get_mut(partition) {
            part.committed(start);
            part.acks.ack(offset);
        }
    }
}
