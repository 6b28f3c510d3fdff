//! Reading the log as an auditor: rows exactly as stored, decoded as far as
//! they go, in position order and in pages ([`AuditLog`], part of every
//! [`EventStore`]), a reader that streams those pages ahead of their
//! consumer in constant memory ([`read_pages`]), and the verification of the
//! hash chain over them ([`verify`]).
//!
//! [`EventStore::read_all`] fails on the first row that no longer decodes;
//! an auditor must see such a row as it is (its position and stored hash)
//! and go on, so audit reads never fail on a row's content, only on the
//! backend itself.

pub mod canonical;
pub mod verify;

use std::fmt;
use std::sync::OnceLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::{ChainHash, Domain, EventEnvelope, Position, StreamId, TenantId};
use tokio::sync::mpsc;

use crate::error::{Result, StoreError};
use crate::EventStore;

pub use verify::{verify, Anchor, Break, BreakKind, HeadDoc, VerifyOptions, VerifyReport};

/// Rows per page when the caller has no reason to choose.
pub const DEFAULT_PAGE_ROWS: usize = 4096;
/// Most patterns, tenants, domains or streams of one filter: each becomes a
/// term of the statement.
pub const MAX_FILTER_VALUES: usize = 64;

/// One row of the event log as stored: its position and stored hash, and
/// its columns, decoded into an event only when asked ([`AuditRow::event`]):
/// a walk over the chain mostly needs just their canonical bytes.
pub struct AuditRow {
    pub position: Position,
    /// The stored hash, byte for byte; `None` when it is not 32 bytes.
    pub hash: Option<ChainHash>,
    stored: Option<Box<dyn StoredRow>>,
    decoded: OnceLock<std::result::Result<EventEnvelope, String>>,
}

/// A backend's row as read, before decoding.
pub(crate) trait StoredRow: Send + Sync + fmt::Debug {
    /// Writes the canonical bytes of the row's event, as if it stood at
    /// `position`, straight from the columns (the fast path of
    /// [`canonical`]); false when the columns do not allow it.
    fn canonical_bytes(&self, position: u64, out: &mut Vec<u8>) -> bool;

    /// The row as the store's readers decode it, or why it does not read as
    /// an event (a column changed to something Herald never writes).
    fn decode(&self) -> std::result::Result<EventEnvelope, String>;
}

impl AuditRow {
    /// A row already decoded (or found not to decode).
    pub fn from_event(
        position: Position,
        hash: Option<ChainHash>,
        event: std::result::Result<EventEnvelope, String>,
    ) -> Self {
        Self {
            position,
            hash,
            stored: None,
            decoded: OnceLock::from(event),
        }
    }

    /// A row as a backend read it, decoded on demand.
    pub(crate) fn stored(
        position: Position,
        hash: Option<ChainHash>,
        row: Box<dyn StoredRow>,
    ) -> Self {
        Self {
            position,
            hash,
            stored: Some(row),
            decoded: OnceLock::new(),
        }
    }

    /// The row as an event, or why it does not read as one. Decoded on the
    /// first call (from any thread), kept afterwards.
    pub fn event(&self) -> std::result::Result<&EventEnvelope, &str> {
        self.decoded
            .get_or_init(|| match &self.stored {
                Some(row) => row.decode(),
                None => Err("the row was not read".to_owned()),
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The canonical bytes of the row's event as if it stood at `position`,
    /// straight from its columns; false when only decoding can tell.
    pub(crate) fn canonical_bytes(&self, position: u64, out: &mut Vec<u8>) -> bool {
        self.stored
            .as_ref()
            .is_some_and(|row| row.canonical_bytes(position, out))
    }

    #[cfg(test)]
    pub(crate) fn event_mut(&mut self) -> &mut std::result::Result<EventEnvelope, String> {
        let _ = self.event();
        self.stored = None;
        self.decoded.get_mut().expect("decoded above")
    }
}

impl Clone for AuditRow {
    /// A copy of the decoded row (the columns are not kept).
    fn clone(&self) -> Self {
        Self::from_event(
            self.position,
            self.hash,
            self.event().cloned().map_err(str::to_owned),
        )
    }
}

impl fmt::Debug for AuditRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditRow")
            .field("position", &self.position)
            .field("hash", &self.hash)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

/// Which rows an audit read returns: those matching every filter that is
/// set. Values within one filter are OR-ed (any of the tenants, any of the
/// type patterns). Positions are inclusive at both ends; record times are
/// inclusive at the start and exclusive at the end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowFilter {
    /// Last position read (inclusive); `None` for the end of the log.
    pub to: Option<Position>,
    pub tenants: Vec<TenantId>,
    pub domains: Vec<Domain>,
    pub streams: Vec<StreamId>,
    /// Event-type patterns: `*` matches any run of characters
    /// (`tickets.*`, `*.note_appended`), every other character only itself.
    pub types: Vec<String>,
    /// Recorded at or after this time.
    pub recorded_from: Option<DateTime<Utc>>,
    /// Recorded before this time.
    pub recorded_to: Option<DateTime<Utc>>,
}

impl RowFilter {
    /// Every row.
    pub fn all() -> Self {
        Self::default()
    }

    /// Refuses filters that are malformed or larger than a statement should
    /// grow, with [`StoreError::InvalidQuery`].
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(StoreError::InvalidQuery { reason });
        for (what, n) in [
            ("tenants", self.tenants.len()),
            ("domains", self.domains.len()),
            ("streams", self.streams.len()),
            ("type patterns", self.types.len()),
        ] {
            if n > MAX_FILTER_VALUES {
                return invalid(format!(
                    "{n} {what}; a filter takes at most {MAX_FILTER_VALUES}"
                ));
            }
        }
        for pattern in &self.types {
            if pattern.is_empty() || pattern.len() > crate::search::MAX_PATTERN_LEN {
                return invalid(format!(
                    "type pattern {pattern:?} must be 1 to {} characters",
                    crate::search::MAX_PATTERN_LEN
                ));
            }
            // Event types are lowercase; the same alphabet keeps SQLite's
            // case-insensitive LIKE as strict as Postgres'.
            if let Some(bad) = pattern.chars().find(|c| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '*'))
            }) {
                return invalid(format!(
                    "type pattern {pattern:?} holds {bad:?}; patterns may only hold a-z, 0-9, '_', '.' and '*'"
                ));
            }
        }
        if let (Some(from), Some(to)) = (self.recorded_from, self.recorded_to) {
            if to <= from {
                return invalid(format!(
                    "the time range is empty: it ends ({to}) at or before it starts ({from})"
                ));
            }
        }
        Ok(())
    }

    /// True when the filter bounds positions only.
    pub(crate) fn is_range_only(&self) -> bool {
        self.tenants.is_empty()
            && self.domains.is_empty()
            && self.streams.is_empty()
            && self.types.is_empty()
            && self.recorded_from.is_none()
            && self.recorded_to.is_none()
    }

    /// The last position as SQL wants it.
    pub(crate) fn to_sql(&self) -> i64 {
        self.to
            .map_or(i64::MAX, |p| i64::try_from(p.get()).unwrap_or(i64::MAX))
    }
}

/// Raw reads of the log, for auditors; part of every [`EventStore`] (each
/// backend implements it in its own `audit` module).
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Up to `max` rows matching `filter` with position ≥ `from`, in
    /// position order, exactly as stored. Fails only when the backend does
    /// (or with [`StoreError::InvalidQuery`] for a filter that
    /// [`RowFilter::validate`] refuses), never on a row's content.
    async fn audit_page(
        &self,
        filter: &RowFilter,
        from: Position,
        max: usize,
    ) -> Result<Vec<AuditRow>>;
}

/// What [`read_pages`] sends: a page of rows, an empty page once the range
/// is read, or the error that stopped the read.
pub type Page = Result<Vec<AuditRow>>;

/// Reads every row matching `filter` from position `from` on, in pages of
/// up to `page_rows`, on a task of its own that keeps at most two pages
/// ahead of the consumer: the consumer works on one page while the next is
/// read, and memory stays bounded whatever the log's size. The last message
/// is an empty page (the end) or an error; a channel that closes without
/// either means the reader died, which consumers must treat as an error.
/// Dropping the receiver stops the reader at its next page.
///
/// Reading every row up to the head, positions are dense (the log is
/// gapless), so pages are fixed ranges of `page_rows` positions and two are
/// read at once: the database produces one while the other is received.
/// From the first range that comes back empty (rows deleted), or past the
/// head, or with any other filter, each page starts after the last row of
/// the one before (a keyset read), which needs no assumption.
pub fn read_pages(
    store: std::sync::Arc<dyn EventStore>,
    filter: RowFilter,
    from: Position,
    page_rows: usize,
) -> mpsc::Receiver<Page> {
    let page_rows = page_rows.max(1);
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let result = async {
            filter.validate()?;
            let mut next = from.get().max(1);
            if filter.is_range_only() {
                let head = store.head().await?.position.get();
                let end = filter.to.map_or(head, |to| to.get().min(head));
                next = read_ranges(&store, &tx, next, end, page_rows).await?;
            }
            read_keyset(&store, &filter, &tx, next, page_rows).await
        }
        .await;
        match result {
            Ok(true) => {
                let _ = tx.send(Ok(Vec::new())).await;
            }
            // The consumer is gone.
            Ok(false) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    rx
}

/// Reads positions `next..=end` as ranges of `page_rows`, two at a time, in
/// order; where to go on from: past `end`, or the start of the first range
/// that came back empty. `u64::MAX` when the consumer is gone.
async fn read_ranges(
    store: &std::sync::Arc<dyn EventStore>,
    tx: &mpsc::Sender<Page>,
    next: u64,
    end: u64,
    page_rows: usize,
) -> Result<u64> {
    use futures::StreamExt;
    if next > end {
        return Ok(next);
    }
    let step = page_rows as u64;
    let starts = (next..=end).step_by(page_rows);
    let mut pages = futures::stream::iter(starts)
        .map(|start| {
            let range = RowFilter {
                to: Some(Position(start.saturating_add(step - 1).min(end))),
                ..RowFilter::all()
            };
            async move {
                let rows = store.audit_page(&range, Position(start), page_rows).await;
                (start, rows)
            }
        })
        .buffered(2);
    while let Some((start, rows)) = pages.next().await {
        let rows = rows?;
        if rows.is_empty() {
            return Ok(start);
        }
        if tx.send(Ok(rows)).await.is_err() {
            return Ok(u64::MAX);
        }
    }
    Ok(end + 1)
}

/// Reads every row matching `filter` from `next` on, each page after the
/// last row of the one before. False when the consumer is gone.
async fn read_keyset(
    store: &std::sync::Arc<dyn EventStore>,
    filter: &RowFilter,
    tx: &mpsc::Sender<Page>,
    mut next: u64,
    page_rows: usize,
) -> Result<bool> {
    if next == u64::MAX {
        return Ok(false);
    }
    loop {
        if next > i64::MAX as u64 || filter.to.is_some_and(|to| next > to.get()) {
            return Ok(true);
        }
        let rows = store.audit_page(filter, Position(next), page_rows).await?;
        let last = rows.last().map(|r| r.position.get());
        let full = rows.len() == page_rows;
        if !rows.is_empty() && tx.send(Ok(rows)).await.is_err() {
            return Ok(false);
        }
        match last {
            Some(last) if full => next = last + 1,
            _ => return Ok(true),
        }
    }
}

/// The error of a page reader that stopped without saying why (it panicked
/// or its runtime shut down).
pub(crate) fn reader_died() -> StoreError {
    StoreError::Backend {
        backend: "audit",
        detail: "the log reader stopped before the end of the range".into(),
    }
}

/// A row's position column as a position (Herald writes only positive
/// ones; anything else reads as 0, which no walk expects).
pub(crate) fn position_of(raw: i64) -> Position {
    Position(raw.max(0) as u64)
}
