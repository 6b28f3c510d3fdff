//! Verifying the hash chain: a walk over the log in position order that
//! finds the first position where the chain breaks and says how it broke.
//! `docs/hash-chain.md` states the rules for auditors; this is their code.
//!
//! The walk checks every row's *link*: the row reads as an event and
//! `chain_hash(stored hash of the row before, row) == stored hash of the row`.
//! Links depend only on stored values, so the rows of a page are checked on
//! all cores at once; only the (rare) explanation of a break is sequential.
//! Memory stays bounded: a page in hand, two read ahead, and a ring of the
//! last [`RING`] positions and hashes.
//!
//! At the first position where something is wrong, the explanation is the
//! first of these that the stored hashes prove (positions are hashed with
//! each event, so a row moved to another position hashes differently, and
//! "belongs at q" means "chains when hashed as if it stood at q"):
//!
//! 1. **deleted**: positions are missing (the log is gapless by design);
//! 2. **edited**: the row does not read as an event; or its successor (the
//!    next row, or the head record for the last row) chains from its stored
//!    hash, so its content changed after it was hashed; or its successor
//!    chains from the hash its content gives, so its stored hash changed;
//! 3. **inserted**: the row belongs `d` positions earlier, after the row
//!    stored there before the `d` rows that now sit between: those rows
//!    chain but were put there, and the rows after were moved up;
//! 4. **deleted**: its successor still chains from it as if both stood `d`
//!    positions later: `d` rows were deleted and the rows after moved down;
//! 5. **reordered**: a later row belongs at this position; if this row
//!    belongs at that row's position they were swapped. If instead the rows
//!    after that one are all `d` positions too far up, the `d` rows from this
//!    position on were **inserted**;
//! 6. **inserted**: nothing chains from the row nor stands in for it: a row
//!    Herald did not write.
//!
//! The walk goes to the last row stored (appends committed meanwhile chain
//! like any other rows). The log head record read at the start is checked
//! like an anchor kept inside the system: the row at its position must carry
//! its hash (else **edited**), and the walk must reach it (else
//! **truncated**). An anchor kept outside, if given, must be found with its
//! hash (else **truncated**).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use herald_events::{chain_hash, ChainHash, EventEnvelope, Position};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{read_pages, reader_died, AuditRow, Page, RowFilter, DEFAULT_PAGE_ROWS};
use crate::error::{Result, StoreError};
use crate::model::LogHead;
use crate::EventStore;

/// Rows remembered behind the walk, for explaining an insertion: an
/// insertion of up to `RING - 1` chaining rows is named as such.
pub const RING: usize = 65;
/// The largest renumbering after a deletion that is named as such.
pub const MAX_SHIFT: u64 = 1000;
/// Below this many rows a page is checked on one thread: spawning costs more.
const PARALLEL_MIN_ROWS: usize = 1024;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// First position whose link is checked; 0 and 1 both mean the start.
    /// From a later position the stored hash of the row before it is taken
    /// on trust.
    pub from: Position,
    /// A head kept outside the system, to catch a truncated tail.
    pub anchor: Option<Anchor>,
    /// Rows read per page.
    pub page_rows: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            from: Position::START,
            anchor: None,
            page_rows: DEFAULT_PAGE_ROWS,
        }
    }
}

/// A head of the log kept outside the system (`herald audit anchor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The event at this position must carry this hash.
    At { position: Position, hash: ChainHash },
    /// Some event must carry this hash (its position was not kept).
    Hash(ChainHash),
}

impl Anchor {
    /// The text form `POSITION:HASH` that `herald audit anchor` prints.
    pub fn text(position: Position, hash: &ChainHash) -> String {
        format!("{}:{}", position.get(), hash.to_hex())
    }

    /// Reads `POSITION:HASH`, a bare `HASH` (64 hex digits), or the JSON
    /// object `{"position": P, "hash": "HEX"}` of `herald audit anchor --json`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.starts_with('{') {
            #[derive(Deserialize)]
            struct Doc {
                position: u64,
                hash: ChainHash,
            }
            let doc: Doc = serde_json::from_str(text)
                .map_err(|e| format!("an anchor in JSON needs position and hash: {e}"))?;
            return Ok(Anchor::At {
                position: Position(doc.position),
                hash: doc.hash,
            });
        }
        let hash = |hex_text: &str| {
            hex::decode(hex_text)
                .ok()
                .and_then(|b| ChainHash::from_slice(&b))
                .ok_or_else(|| format!("{hex_text:?} is not a hash (64 hex digits)"))
        };
        match text.split_once(':') {
            Some((position, hex_text)) => Ok(Anchor::At {
                position: Position(
                    position
                        .trim()
                        .parse()
                        .map_err(|_| format!("{position:?} is not a position"))?,
                ),
                hash: hash(hex_text.trim())?,
            }),
            None => Ok(Anchor::Hash(hash(text)?)),
        }
    }
}

impl FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Anchor::parse(s)
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anchor::At { position, hash } => f.write_str(&Anchor::text(*position, hash)),
            Anchor::Hash(hash) => write!(f, "{hash}"),
        }
    }
}

/// How the chain broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    Edited,
    Deleted,
    Inserted,
    Reordered,
    Truncated,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::Reordered => "reordered",
            BreakKind::Truncated => "truncated",
        }
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first position where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    /// The first position affected.
    pub position: u64,
    pub kind: BreakKind,
    /// Rows deleted, inserted or cut off, when the hashes tell.
    pub count: Option<u64>,
    /// The other position involved: the partner of a reordering, the head
    /// or anchor a truncation is measured against.
    pub related_position: Option<u64>,
    /// What the hashes show, in words.
    pub detail: String,
}

/// A head of the log: a position and the hash stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadDoc {
    pub position: u64,
    pub hash: String,
}

/// The answer of a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// True when nothing is wrong from `from` to `to`.
    pub intact: bool,
    /// The first position checked.
    pub from: u64,
    /// The last position walked: the end of the log (at least the head
    /// when the walk started, unless the log ends before it), or the break.
    pub to: u64,
    /// Events whose link was checked and held.
    pub checked: u64,
    /// The log head record when the walk started.
    pub head: HeadDoc,
    /// The anchor checked against, as given.
    pub anchor: Option<String>,
    /// The first break, or null when intact.
    pub first_break: Option<Break>,
    pub elapsed_seconds: f64,
}

/// Verifies the chain of `store` (see the module docs). `progress` is told
/// the number of rows walked so far, once a page. Fails only when the store
/// does, or with [`StoreError::InvalidQuery`] for options that cannot be
/// checked (a bare anchor hash from a later position).
pub async fn verify(
    store: Arc<dyn EventStore>,
    options: VerifyOptions,
    progress: Box<dyn Fn(u64) + Send>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let head = store.head().await?;
    let from = options.from.get().max(1);
    // From a later position the row before it is read too, as the trusted base.
    let start = from - 1;
    let report = |first_break: Option<Break>, checked: u64, to: u64| VerifyReport {
        intact: first_break.is_none(),
        from,
        to,
        checked,
        head: HeadDoc {
            position: head.position.get(),
            hash: head.hash.to_hex(),
        },
        anchor: options.anchor.map(|a| a.to_string()),
        first_break,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    match options.anchor {
        Some(Anchor::Hash(_)) if from > 1 => {
            return Err(StoreError::InvalidQuery {
                reason: "an anchor without its position is searched for along the whole walk; \
                         give its position (POSITION:HASH) to verify from a later position"
                    .into(),
            })
        }
        Some(Anchor::At { position, hash })
            if position.get() == 0 && hash != ChainHash::GENESIS =>
        {
            return Err(StoreError::InvalidQuery {
                reason: "position 0 anchors the empty log, whose hash is all zeros".into(),
            })
        }
        Some(Anchor::At { position, hash }) if position.get() >= 1 && position.get() < start => {
            // Before the walk: looked up on its own.
            let rows = store.audit_page(&RowFilter::all(), position, 1).await?;
            if let Some(found) = anomaly_at_anchor(position, &hash, rows.first()) {
                return Ok(report(Some(found), 0, start));
            }
        }
        _ => {}
    }
    let mut walk = Walk::new(head, options.anchor, start, progress);
    // To the end of the log, not just the head read above: rows past it are
    // either appends committed meanwhile, which chain like the others, or
    // rows that should not be there.
    let rx = read_pages(
        store,
        RowFilter::all(),
        Position(start.max(1)),
        options.page_rows.max(1),
    );
    let (found, checked, to) = tokio::task::spawn_blocking(move || {
        let mut source = ChannelSource { rx, done: false };
        let found = walk.run(&mut source)?;
        let to = found.as_ref().map_or(walk.expected - 1, |b| b.position);
        Ok::<_, StoreError>((found, walk.checked, to))
    })
    .await
    .map_err(|e| StoreError::Backend {
        backend: "audit",
        detail: format!("the verification failed: {e}"),
    })??;
    Ok(report(found, checked, to))
}

/// What an anchor before the walk's range finds at its position.
fn anomaly_at_anchor(
    position: Position,
    hash: &ChainHash,
    row: Option<&AuditRow>,
) -> Option<Break> {
    let p = position.get();
    match row {
        Some(row) if row.position == position => (row.hash != Some(*hash)).then(|| Break {
            position: p,
            kind: BreakKind::Truncated,
            count: None,
            related_position: Some(p),
            detail: anchor_mismatch(p, row.hash, hash),
        }),
        _ => Some(Break {
            position: p,
            kind: BreakKind::Deleted,
            count: None,
            related_position: None,
            detail: format!("the anchored event at {p} is missing from the log"),
        }),
    }
}

fn anchor_mismatch(p: u64, stored: Option<ChainHash>, anchored: &ChainHash) -> String {
    format!(
        "the event at {p} is not the anchored one (stored hash {}, anchored {anchored}): the log \
         was cut back to before {p} and written again, or rewritten up to it with recomputed hashes",
        stored.map_or_else(|| "unreadable".to_owned(), |h| h.to_hex())
    )
}

/// Where the walk takes its pages from.
pub(crate) trait Source {
    /// The next page; empty at the end (and on every call after it).
    fn next_page(&mut self) -> Result<Vec<AuditRow>>;
}

/// Pages from [`read_pages`], waited for on a thread outside the runtime.
struct ChannelSource {
    rx: mpsc::Receiver<Page>,
    done: bool,
}

impl Source for ChannelSource {
    fn next_page(&mut self) -> Result<Vec<AuditRow>> {
        if self.done {
            return Ok(Vec::new());
        }
        match self.rx.blocking_recv() {
            Some(Ok(rows)) => {
                self.done = rows.is_empty();
                Ok(rows)
            }
            Some(Err(e)) => Err(e),
            None => Err(reader_died()),
        }
    }
}

/// Rows one at a time: the rest of the page in hand, then further pages.
struct Rows<'a> {
    page: std::vec::IntoIter<AuditRow>,
    source: &'a mut dyn Source,
}

impl Rows<'_> {
    fn next(&mut self) -> Result<Option<AuditRow>> {
        loop {
            if let Some(row) = self.page.next() {
                return Ok(Some(row));
            }
            let page = self.source.next_page()?;
            if page.is_empty() {
                return Ok(None);
            }
            self.page = page.into_iter();
        }
    }
}

/// The hash of `event` chained over `previous` as if it stood at `position`.
fn hash_at(previous: &ChainHash, event: &EventEnvelope, position: u64) -> ChainHash {
    if event.position.get() == position {
        return chain_hash(previous, event);
    }
    let mut moved = event.clone();
    moved.position = Position(position);
    chain_hash(previous, &moved)
}

/// Whether `row` chains from `previous` as if it stood at `position`.
fn belongs(previous: Option<ChainHash>, row: &AuditRow, position: u64) -> bool {
    belongs_with(previous, row, position, &mut Vec::new())
}

/// [`belongs`], with a buffer for the canonical bytes. The bytes made
/// straight from the columns are tried first; only when they do not hash to
/// the stored hash is the row decoded and hashed as the chain defines it.
fn belongs_with(
    previous: Option<ChainHash>,
    row: &AuditRow,
    position: u64,
    scratch: &mut Vec<u8>,
) -> bool {
    let (Some(previous), Some(stored)) = (previous, row.hash) else {
        return false;
    };
    if row.canonical_bytes(position, scratch) {
        let mut hasher = Sha256::new();
        hasher.update(previous.0);
        hasher.update(&scratch[..]);
        if ChainHash(hasher.finalize().into()) == stored {
            return true;
        }
    }
    match row.event() {
        Ok(event) => hash_at(&previous, event, position) == stored,
        Err(_) => false,
    }
}

/// Whether each row's link holds: it chains from the stored hash of the row
/// before it in `rows` (`previous` for the first). Split over the cores:
/// each link needs only stored values.
fn links(previous: Option<ChainHash>, rows: &[AuditRow]) -> Vec<bool> {
    let link = |i: usize, scratch: &mut Vec<u8>| {
        let before = if i == 0 { previous } else { rows[i - 1].hash };
        belongs_with(before, &rows[i], rows[i].position.get(), scratch)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads == 1 || rows.len() < PARALLEL_MIN_ROWS {
        let mut scratch = Vec::with_capacity(1024);
        return (0..rows.len()).map(|i| link(i, &mut scratch)).collect();
    }
    let mut out = vec![false; rows.len()];
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (n, slots) in out.chunks_mut(chunk).enumerate() {
            let link = &link;
            scope.spawn(move || {
                let mut scratch = Vec::with_capacity(1024);
                for (j, slot) in slots.iter_mut().enumerate() {
                    *slot = link(n * chunk + j, &mut scratch);
                }
            });
        }
    });
    out
}

/// The walk's state.
pub(crate) struct Walk {
    head: LogHead,
    anchor: Option<Anchor>,
    anchor_seen: bool,
    /// From a later position: the first row is taken as is, not checked.
    trust_first: bool,
    /// The last rows walked (position, stored hash), oldest first; at the
    /// start of the log, the genesis hash at position 0.
    ring: VecDeque<(u64, Option<ChainHash>)>,
    pub(crate) checked: u64,
    /// The next position expected.
    pub(crate) expected: u64,
    walked: u64,
    progress: Box<dyn Fn(u64) + Send>,
}

impl Walk {
    /// A walk reading rows from `start` (0 or 1: the start of the log).
    pub(crate) fn new(
        head: LogHead,
        anchor: Option<Anchor>,
        start: u64,
        progress: Box<dyn Fn(u64) + Send>,
    ) -> Self {
        let mut ring = VecDeque::with_capacity(RING);
        let trust_first = start > 0;
        if !trust_first {
            ring.push_back((0, Some(ChainHash::GENESIS)));
        }
        Self {
            head,
            anchor,
            anchor_seen: false,
            expected: start.max(1),
            trust_first,
            ring,
            checked: 0,
            walked: 0,
            progress,
        }
    }

    fn previous_hash(&self) -> Option<ChainHash> {
        self.ring.back().and_then(|(_, h)| *h)
    }

    fn remember(&mut self, row: &AuditRow) {
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back((row.position.get(), row.hash));
        self.expected = row.position.get() + 1;
    }

    /// Walks every page of `source`; the first break, if any.
    pub(crate) fn run(&mut self, source: &mut dyn Source) -> Result<Option<Break>> {
        loop {
            let page = source.next_page()?;
            if page.is_empty() {
                return Ok(self.finish());
            }
            let held = links(self.previous_hash(), &page);
            let mut rows = page.into_iter();
            let mut n = 0;
            while let Some(row) = rows.next() {
                let p = row.position.get();
                if p != self.expected {
                    return Ok(Some(self.gap(p)));
                }
                if self.trust_first {
                    self.trust_first = false;
                } else if !held[n] {
                    let mut rest = Rows { page: rows, source };
                    return self.explain(row, &mut rest).map(Some);
                } else {
                    self.checked += 1;
                }
                if let Some(found) = self.check_anchor(&row) {
                    return Ok(Some(found));
                }
                self.remember(&row);
                n += 1;
            }
            self.walked += n as u64;
            (self.progress)(self.walked);
        }
    }

    /// Positions `expected..p` are missing.
    fn gap(&self, p: u64) -> Break {
        let first = self.expected;
        let count = p - first;
        Break {
            position: first,
            kind: BreakKind::Deleted,
            count: Some(count),
            related_position: Some(p),
            detail: format!(
                "{}: the log is gapless, and the next row stored is at {p}",
                if count == 1 {
                    format!("position {first} is missing")
                } else {
                    format!("positions {first} to {} are missing", p - 1)
                }
            ),
        }
    }

    fn check_anchor(&mut self, row: &AuditRow) -> Option<Break> {
        let head = self.head.position;
        if head == row.position && row.hash != Some(self.head.hash) {
            let p = head.get();
            return Some(Break {
                position: p,
                kind: BreakKind::Edited,
                count: None,
                related_position: None,
                detail: format!(
                    "the chain holds up to {p}, but the log head record holds another hash for \
                     {p} ({}): the row at {p} was replaced by one with a recomputed hash, or the \
                     head record was changed",
                    self.head.hash
                ),
            });
        }
        match self.anchor {
            Some(Anchor::At { position, hash }) if position == row.position => {
                self.anchor_seen = true;
                (row.hash != Some(hash)).then(|| Break {
                    position: position.get(),
                    kind: BreakKind::Truncated,
                    count: None,
                    related_position: Some(position.get()),
                    detail: anchor_mismatch(position.get(), row.hash, &hash),
                })
            }
            Some(Anchor::Hash(hash)) if row.hash == Some(hash) => {
                self.anchor_seen = true;
                None
            }
            _ => None,
        }
    }

    /// The end of an intact walk: the head record and the anchor.
    pub(crate) fn finish(&mut self) -> Option<Break> {
        let head = self.head.position.get();
        let last = self.expected - 1;
        if head > 0 && self.expected <= head {
            let cut = head - last;
            return Some(Break {
                position: self.expected,
                kind: BreakKind::Truncated,
                count: Some(cut),
                related_position: Some(head),
                detail: format!(
                    "the log ends at {last}, but its head record says {head}: {cut} row(s) were \
                     cut off the tail"
                ),
            });
        }
        match self.anchor {
            Some(Anchor::At { position, .. }) if position.get() > last => Some(Break {
                position: last + 1,
                kind: BreakKind::Truncated,
                count: Some(position.get() - last),
                related_position: Some(position.get()),
                detail: format!(
                    "the log ends at {last} (and its head record agrees), before the anchored \
                     position {}: the tail was cut off and the head record moved back",
                    position.get()
                ),
            }),
            Some(Anchor::Hash(hash)) if !self.anchor_seen => Some(Break {
                position: last + 1,
                kind: BreakKind::Truncated,
                count: None,
                related_position: None,
                detail: format!(
                    "no event up to the end of the log ({last}) carries the anchored hash {hash}: \
                     the log was cut back to before the anchor, or rewritten with recomputed hashes"
                ),
            }),
            _ => None,
        }
    }

    /// Why the link of `row` (at the expected position) does not hold.
    fn explain(&self, row: AuditRow, rest: &mut Rows<'_>) -> Result<Break> {
        let p = row.position.get();
        let edited = |detail: String| Break {
            position: p,
            kind: BreakKind::Edited,
            count: None,
            related_position: None,
            detail,
        };
        let event = match row.event() {
            Ok(event) => event,
            Err(why) => {
                return Ok(edited(format!(
                    "the row at {p} no longer reads as an event ({why}): it was changed after it \
                     was written"
                )))
            }
        };
        let previous = self.previous_hash();
        let next = rest.next()?;
        // What should hold this row's hash: the next row, or for the last row
        // the head record.
        let successor = next.as_ref().filter(|n| n.position.get() == p + 1);
        let head_hash = (next.is_none() && self.head.position.get() == p).then_some(self.head.hash);
        let chains_from = |hash: Option<ChainHash>| match (successor, head_hash) {
            (Some(n), _) => belongs(hash, n, n.position.get()),
            (None, Some(h)) => hash.is_some() && hash == Some(h),
            (None, None) => false,
        };

        // 2. Edited: the content, or the stored hash.
        if chains_from(row.hash) {
            return Ok(edited(format!(
                "the row at {p} no longer hashes to its stored hash, while {} chains from that \
                 stored hash: the row's content was changed after it was written (or the row at \
                 {} was replaced by one with a recomputed hash)",
                successor_name(p, successor.is_some()),
                p - 1
            )));
        }
        let computed = previous.map(|h| chain_hash(&h, event));
        if computed.is_some() && chains_from(computed) {
            return Ok(edited(format!(
                "the stored hash of the row at {p} is not the hash of its content, and {} chains \
                 from the hash its content gives: the stored hash was changed",
                successor_name(p, successor.is_some())
            )));
        }

        // 3. Inserted rows that chain: this row belongs d positions earlier.
        // (Not when the row at p - d is this very row stored twice.)
        let ring: Vec<_> = self.ring.iter().rev().collect();
        for d in 1..ring.len() as u64 {
            let (at, hash) = *ring[d as usize];
            let (_, replaced) = *ring[d as usize - 1];
            if at + d + 1 == p && replaced != row.hash && belongs(hash, &row, p - d) {
                return Ok(Break {
                    position: p - d,
                    kind: BreakKind::Inserted,
                    count: Some(d),
                    related_position: Some(p),
                    detail: format!(
                        "the row at {p} chains from the row at {at} when hashed at position {}: \
                         {} inserted after {at} (chaining, but not written by Herald), and the \
                         rows after them moved up by {d}",
                        p - d,
                        rows_at(p - d, d)
                    ),
                });
            }
        }

        // 4. Deleted, and the rows after moved down.
        if let Some(n) = successor {
            let np = n.position.get();
            if let Some(d) = (1..=MAX_SHIFT).find(|d| belongs(row.hash, n, np + d)) {
                return Ok(Break {
                    position: p,
                    kind: BreakKind::Deleted,
                    count: Some(d),
                    related_position: None,
                    detail: format!(
                        "the row at {p} does not chain from the row at {}, but the row after it \
                         chains from it as if both stood {d} position(s) later: {d} row(s) \
                         before it were deleted and the rows after moved down to close the gap",
                        p - 1
                    ),
                });
            }
        }

        // 5. A later row belongs here: reordered, or rows inserted here.
        let mut before = row.hash;
        let mut candidate = next;
        while let Some(moved) = candidate {
            let q = moved.position.get();
            if belongs(previous, &moved, p) {
                let partner = if q == p + 1 { moved.hash } else { before };
                if belongs(partner, &row, q) {
                    return Ok(Break {
                        position: p,
                        kind: BreakKind::Reordered,
                        count: None,
                        related_position: Some(q),
                        detail: format!(
                            "the rows at {p} and {q} were swapped: each chains from the other's \
                             predecessor when hashed at the other's position"
                        ),
                    });
                }
                let d = q - p;
                let after = rest.next()?;
                if after
                    .as_ref()
                    .is_some_and(|a| a.position.get() == q + 1 && belongs(moved.hash, a, q + 1 - d))
                {
                    return Ok(Break {
                        position: p,
                        kind: BreakKind::Inserted,
                        count: Some(d),
                        related_position: Some(q),
                        detail: format!(
                            "the row at {q} belongs at {p} (it chains from the row at {} when \
                             hashed there) and the rows after it follow it up by {d}: {} \
                             inserted, not chaining, and the rows from {p} on moved up",
                            p - 1,
                            rows_at(p, d)
                        ),
                    });
                }
                return Ok(Break {
                    position: p,
                    kind: BreakKind::Reordered,
                    count: None,
                    related_position: Some(q),
                    detail: format!(
                        "the row at {q} belongs at {p}: it chains from the row at {} when hashed \
                         at position {p}, so rows were moved",
                        p - 1
                    ),
                });
            }
            before = moved.hash;
            candidate = rest.next()?;
        }

        // 6. Nothing explains the row.
        Ok(Break {
            position: p,
            kind: BreakKind::Inserted,
            count: None,
            related_position: None,
            detail: format!(
                "the row at {p} does not chain from the row at {}, and no later row chains from \
                 it or belongs in its place: a row Herald did not write (forged, or put in place \
                 of the original)",
                p - 1
            ),
        })
    }
}

fn successor_name(p: u64, is_row: bool) -> String {
    if is_row {
        format!("the row at {}", p + 1)
    } else {
        "the log head record".to_owned()
    }
}

fn rows_at(first: u64, count: u64) -> String {
    if count == 1 {
        format!("1 row at {first} was")
    } else {
        format!("{count} rows at {first} to {} were", first + count - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_events::{EventId, EventType, SchemaVersion, StreamId, StreamVersion, TenantId};
    use serde_json::json;

    /// A chained log of `n` events.
    fn log(n: u64) -> Vec<AuditRow> {
        let mut previous = ChainHash::GENESIS;
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        (1..=n)
            .map(|p| {
                let id = EventId::new_v7();
                let mut event = EventEnvelope {
                    id,
                    tenant: TenantId::default_tenant(),
                    stream: StreamId::parse_parts("tickets", &format!("T-{}", p % 3)).unwrap(),
                    stream_version: StreamVersion(p.div_ceil(3)),
                    position: Position(p),
                    event_type: "tickets.note_appended".parse::<EventType>().unwrap(),
                    version: SchemaVersion::V1,
                    occurred_at: at,
                    recorded_at: at,
                    correlation_id: id.as_uuid(),
                    causation_id: id.as_uuid(),
                    producer: "test".into(),
                    payload: json!({"note": format!("note {p}")}),
                    hash: ChainHash::GENESIS,
                };
                event.hash = chain_hash(&previous, &event);
                previous = event.hash;
                AuditRow::from_event(Position(p), Some(event.hash), Ok(event))
            })
            .collect()
    }

    fn head_of(rows: &[AuditRow]) -> LogHead {
        rows.last().map_or(LogHead::EMPTY, |r| LogHead {
            position: r.position,
            hash: r.hash.unwrap(),
            recorded_at: None,
        })
    }

    struct Pages(VecDeque<Vec<AuditRow>>);

    impl Source for Pages {
        fn next_page(&mut self) -> Result<Vec<AuditRow>> {
            Ok(self.0.pop_front().unwrap_or_default())
        }
    }

    fn walk(rows: Vec<AuditRow>, head: LogHead, anchor: Option<Anchor>) -> Option<Break> {
        // Small pages, so breaks near page edges are explained across pages.
        let pages = rows.chunks(3).map(<[AuditRow]>::to_vec).collect();
        Walk::new(head, anchor, 0, Box::new(|_| {}))
            .run(&mut Pages(pages))
            .unwrap()
    }

    /// Moves a row to another position, as `UPDATE … SET position` would.
    fn move_to(row: &mut AuditRow, position: u64) {
        row.position = Position(position);
        if let Ok(event) = row.event_mut() {
            event.position = Position(position);
        }
    }

    fn kind_at(found: Option<Break>) -> (BreakKind, u64) {
        let found = found.expect("a break");
        (found.kind, found.position)
    }

    #[test]
    fn an_intact_log_has_no_break() {
        let rows = log(20);
        let head = head_of(&rows);
        assert_eq!(walk(rows, head, None), None);
    }

    #[test]
    fn an_edited_payload_is_edited_at_its_position() {
        let mut rows = log(20);
        let head = head_of(&rows);
        rows[6].event_mut().as_mut().unwrap().payload = json!({"note": "changed"});
        assert_eq!(kind_at(walk(rows, head, None)), (BreakKind::Edited, 7));
    }

    #[test]
    fn an_edited_last_row_is_caught_by_the_head_record() {
        let mut rows = log(5);
        let head = head_of(&rows);
        rows[4].event_mut().as_mut().unwrap().payload = json!({"note": "changed"});
        assert_eq!(kind_at(walk(rows, head, None)), (BreakKind::Edited, 5));
    }

    #[test]
    fn an_edited_hash_is_edited() {
        let mut rows = log(20);
        let head = head_of(&rows);
        rows[9].hash = Some(ChainHash([7; 32]));
        let found = walk(rows, head, None).unwrap();
        assert_eq!((found.kind, found.position), (BreakKind::Edited, 10));
        assert!(
            found.detail.contains("stored hash was changed"),
            "{found:?}"
        );
    }

    #[test]
    fn a_deleted_row_is_a_gap() {
        let mut rows = log(20);
        let head = head_of(&rows);
        rows.remove(4);
        let found = walk(rows, head, None).unwrap();
        assert_eq!(
            (found.kind, found.position, found.count),
            (BreakKind::Deleted, 5, Some(1))
        );
    }

    #[test]
    fn a_deletion_closed_by_renumbering_is_deleted() {
        let mut rows = log(20);
        let head = head_of(&rows);
        rows.remove(4);
        for (i, row) in rows.iter_mut().enumerate().skip(4) {
            move_to(row, i as u64 + 1);
        }
        let found = walk(rows, head, None).unwrap();
        assert_eq!(
            (found.kind, found.position, found.count),
            (BreakKind::Deleted, 5, Some(1))
        );
    }

    /// Shifts rows from index `at` up by one and puts `forged` at `at`.
    fn insert(rows: &mut Vec<AuditRow>, at: usize, mut forged: AuditRow, chain: bool) {
        for row in rows.iter_mut().skip(at) {
            let p = row.position.get();
            move_to(row, p + 1);
        }
        move_to(&mut forged, at as u64 + 1);
        if chain {
            let previous = rows[at - 1].hash.unwrap();
            let hash = chain_hash(&previous, forged.event().unwrap());
            forged.hash = Some(hash);
        }
        rows.insert(at, forged);
    }

    #[test]
    fn an_inserted_row_is_inserted_whether_or_not_it_chains() {
        for chain in [true, false] {
            let mut rows = log(20);
            let head = head_of(&rows);
            let mut forged = log(1).remove(0);
            forged.hash = Some(ChainHash([9; 32]));
            forged.event_mut().as_mut().unwrap().payload = json!({"note": "forged"});
            insert(&mut rows, 6, forged, chain);
            let found = walk(rows, head, None).unwrap();
            assert_eq!(
                (found.kind, found.position, found.count),
                (BreakKind::Inserted, 7, Some(1)),
                "chain {chain}: {found:?}"
            );
        }
    }

    #[test]
    fn a_stored_copy_of_an_earlier_row_is_not_an_insertion_before_it() {
        let mut rows = log(20);
        let head = head_of(&rows);
        let copy = rows[0].clone();
        insert(&mut rows, 6, copy, false);
        let found = walk(rows, head, None).unwrap();
        assert_eq!(
            (found.kind, found.position, found.count),
            (BreakKind::Inserted, 7, Some(1)),
            "{found:?}"
        );
    }

    #[test]
    fn swapped_rows_are_reordered_near_or_far() {
        for (a, b) in [(4usize, 5usize), (4, 11)] {
            let mut rows = log(20);
            let head = head_of(&rows);
            let (pa, pb) = (a as u64 + 1, b as u64 + 1);
            move_to(&mut rows[a], pb);
            move_to(&mut rows[b], pa);
            rows.swap(a, b);
            let found = walk(rows, head, None).unwrap();
            assert_eq!(
                (found.kind, found.position, found.related_position),
                (BreakKind::Reordered, pa, Some(pb)),
                "{found:?}"
            );
        }
    }

    #[test]
    fn a_cut_tail_is_truncated_against_the_head_record_or_the_anchor() {
        let mut rows = log(20);
        let head = head_of(&rows);
        rows.truncate(15);
        let found = walk(rows.clone(), head, None).unwrap();
        assert_eq!(
            (found.kind, found.position, found.count),
            (BreakKind::Truncated, 16, Some(5))
        );

        // With the head record moved back too, only the anchor tells.
        let moved_head = head_of(&rows);
        assert_eq!(walk(rows.clone(), moved_head, None), None);
        let anchor = Anchor::At {
            position: head.position,
            hash: head.hash,
        };
        let found = walk(rows.clone(), moved_head, Some(anchor)).unwrap();
        assert_eq!((found.kind, found.position), (BreakKind::Truncated, 16));
        let found = walk(rows, moved_head, Some(Anchor::Hash(head.hash))).unwrap();
        assert_eq!(found.kind, BreakKind::Truncated);
    }

    #[test]
    fn an_anchor_with_another_hash_at_its_position_is_truncated() {
        let rows = log(20);
        let head = head_of(&rows);
        let anchor = Anchor::At {
            position: Position(10),
            hash: ChainHash([1; 32]),
        };
        let found = walk(rows.clone(), head, Some(anchor)).unwrap();
        assert_eq!((found.kind, found.position), (BreakKind::Truncated, 10));
        let good = Anchor::At {
            position: Position(10),
            hash: rows[9].hash.unwrap(),
        };
        assert_eq!(walk(rows, head, Some(good)), None);
    }

    #[test]
    fn anchors_parse_from_every_form_and_print_back() {
        let hash = ChainHash([0xab; 32]);
        let text = Anchor::text(Position(42), &hash);
        let at = Anchor::At {
            position: Position(42),
            hash,
        };
        assert_eq!(Anchor::parse(&text), Ok(at));
        assert_eq!(at.to_string(), text);
        assert_eq!(
            Anchor::parse(&format!("{{\"position\": 42, \"hash\": \"{hash}\"}}\n")),
            Ok(at)
        );
        assert_eq!(Anchor::parse(&hash.to_hex()), Ok(Anchor::Hash(hash)));
        assert!(Anchor::parse("42:abc").is_err());
        assert!(Anchor::parse("x:abc").is_err());
    }

    #[test]
    fn parallel_links_agree_with_sequential_ones() {
        let mut rows = log(3000);
        rows[2500].event_mut().as_mut().unwrap().payload = json!({});
        let held = links(Some(ChainHash::GENESIS), &rows);
        assert_eq!(held.iter().filter(|h| !**h).count(), 1);
        assert!(!held[2500]);
    }
}
