//! The timers read model: every timer with where it stands (pending with the
//! due time of its next occurrence, fired, cancelled) and each of its
//! firings, and every countdown with its views and expiry; plus the queries
//! that serve them (`/v1/views/timers`, `/v1/views/countdowns`), on either
//! database.
//!
//! Timers and countdowns share the `timers/{id}` streams: a stream is one or
//! the other by its first event (`timer_scheduled` or `countdown_created`),
//! so each kind has its table, keyed by the stream's id. A countdown's
//! remaining time depends on the clock, so it is not stored: the queries
//! compute it from the deadline at the instant they answer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_events::timers::{
    CountdownCreated, CountdownExpired, CountdownImageUrlIssued, CountdownImageUrlRevoked,
    CountdownRestyled, CountdownViewed, TimerCancelled, TimerFired, TimerScheduled, DOMAIN,
};
use herald_events::{EventEnvelope, TypedEvent};
use serde::Serialize;
use serde_json::Value;

use super::page::{id_cursor, page_size, time_cursor, SortKey};
use super::{paginate, Cursor, Page, SortOrder, MAX_PAGE_SIZE};
use crate::sql::{
    decode, orphan, read_model, serve, stream_keys, Cell, Column, Db, Index, OnConflict, RowKey,
    RowReader, Rows, Serving, Table, Type,
};
use crate::ProjectionError;

/// The projection's name: its checkpoint and schema prefix.
pub const NAME: &str = "timers";

/// The version of the tables' shape and of the fold.
const VERSION: u32 = 1;

const TABLE_NAMES: &[&str] = &["timers", "firings", "countdowns"];

const TABLES: &[&Table] = &[&TIMERS, &FIRINGS, &COUNTDOWNS];

const TIMERS: Table = Table {
    name: "timers",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("id", Type::Text),
        Column::new("label", Type::Text).null(),
        Column::new("status", Type::Text).check("status IN ('pending', 'fired', 'cancelled')"),
        Column::new("due_at", Type::Time),
        Column::new("first_due_at", Type::Time),
        Column::new("next_due_at", Type::Time).null(),
        Column::new("every_secs", Type::Int).null(),
        Column::new("fired_count", Type::Int),
        Column::new("last_fired_at", Type::Time).null(),
        Column::new("late_count", Type::Int),
        Column::new("deliver", Type::Json),
        Column::new("scheduled_at", Type::Time),
        Column::new("cancelled_at", Type::Time).null(),
        Column::new("cancel_reason", Type::Text).null(),
        Column::new("version", Type::Int),
    ],
    key: 2,
    indexes: &[
        Index {
            name: "timers_by_due",
            on: "tenant, due_at, id",
        },
        Index {
            name: "timers_by_status_due",
            on: "tenant, status, due_at, id",
        },
    ],
    on_conflict: OnConflict::Replace,
};

const FIRINGS: Table = Table {
    name: "firings",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("timer_id", Type::Text),
        Column::new("occurrence", Type::Int),
        Column::new("due_at", Type::Time),
        Column::new("fired_at", Type::Time),
        Column::new("late", Type::Bool),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Replace,
};

const COUNTDOWNS: Table = Table {
    name: "countdowns",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("id", Type::Text),
        Column::new("label", Type::Text),
        Column::new("deadline", Type::Time),
        Column::new("views", Type::Int),
        Column::new("last_viewed_at", Type::Time).null(),
        Column::new("expired", Type::Bool),
        Column::new("expired_at", Type::Time).null(),
        Column::new("created_at", Type::Time),
        Column::new("version", Type::Int),
    ],
    key: 2,
    indexes: &[Index {
        name: "countdowns_by_deadline",
        on: "tenant, deadline, id",
    }],
    on_conflict: OnConflict::Replace,
};

/// Whether the timers read model reads `event`.
fn accepts(event: &EventEnvelope) -> bool {
    event.event_type.domain() == DOMAIN
}

/// Projects `timers.*` into the `timers`, `firings` and `countdowns` tables.
#[derive(Debug, Default)]
pub struct TimersProjection;

read_model!(TimersProjection);

/// A timer row as the batch leaves it.
#[derive(Debug, Clone)]
struct TimerRow {
    tenant: String,
    id: String,
    label: Option<String>,
    status: TimerStatus,
    /// The due time of the next occurrence while pending; of the last one
    /// (fired, or pending when cancelled) once finished. Never null, so it
    /// sorts and pages every timer.
    due_at: DateTime<Utc>,
    first_due_at: DateTime<Utc>,
    next_due_at: Option<DateTime<Utc>>,
    every_secs: Option<i64>,
    fired_count: i64,
    last_fired_at: Option<DateTime<Utc>>,
    late_count: i64,
    deliver: Value,
    scheduled_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    version: i64,
}

impl TimerRow {
    /// The row of [`TIMERS`], from either database.
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            tenant: row.text("tenant")?,
            id: row.text("id")?,
            label: row.text_opt("label")?,
            status: TimerStatus::from_column(&row.text("status")?),
            due_at: row.time("due_at")?,
            first_due_at: row.time("first_due_at")?,
            next_due_at: row.time_opt("next_due_at")?,
            every_secs: row.int_opt("every_secs")?,
            fired_count: row.int("fired_count")?,
            last_fired_at: row.time_opt("last_fired_at")?,
            late_count: row.int("late_count")?,
            deliver: row.json("deliver")?,
            scheduled_at: row.time("scheduled_at")?,
            cancelled_at: row.time_opt("cancelled_at")?,
            cancel_reason: row.text_opt("cancel_reason")?,
            version: row.int("version")?,
        })
    }

    /// The row as [`TIMERS`] writes it.
    fn cells(&self) -> [Cell; 16] {
        [
            (&self.tenant).into(),
            (&self.id).into(),
            (&self.label).into(),
            self.status.as_str().into(),
            self.due_at.into(),
            self.first_due_at.into(),
            self.next_due_at.into(),
            self.every_secs.into(),
            self.fired_count.into(),
            self.last_fired_at.into(),
            self.late_count.into(),
            self.deliver.clone().into(),
            self.scheduled_at.into(),
            self.cancelled_at.into(),
            (&self.cancel_reason).into(),
            self.version.into(),
        ]
    }

    fn scheduled(
        tenant: &str,
        id: &str,
        e: TimerScheduled,
        at: DateTime<Utc>,
    ) -> Result<Self, ProjectionError> {
        Ok(Self {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            label: e.label,
            status: TimerStatus::Pending,
            due_at: e.due_at,
            first_due_at: e.due_at,
            next_due_at: Some(e.due_at),
            every_secs: e.every_secs.map(|s| count(s, "every_secs")).transpose()?,
            fired_count: 0,
            last_fired_at: None,
            late_count: 0,
            deliver: serde_json::to_value(&e.deliver).expect("a delivery serializes"),
            scheduled_at: at,
            cancelled_at: None,
            cancel_reason: None,
            version: 0,
        })
    }

    /// As the aggregate folds a firing: a recurring timer stays as it was
    /// with its next due time, a one-shot one is finished.
    fn fired(&mut self, e: &TimerFired) -> Result<(), ProjectionError> {
        self.fired_count = count(e.occurrence, "occurrence")?;
        self.last_fired_at = Some(e.fired_at);
        self.late_count += i64::from(e.late);
        self.next_due_at = e.next_due_at;
        match e.next_due_at {
            Some(next) => self.due_at = next,
            None => {
                self.status = TimerStatus::Fired;
                self.due_at = e.due_at;
            }
        }
        Ok(())
    }

    fn cancelled(&mut self, e: TimerCancelled, at: DateTime<Utc>) {
        self.status = TimerStatus::Cancelled;
        self.next_due_at = None;
        self.cancelled_at = Some(at);
        self.cancel_reason = e.reason;
    }
}

/// A countdown row as the batch leaves it.
#[derive(Debug, Clone)]
struct CountdownRow {
    tenant: String,
    id: String,
    label: String,
    deadline: DateTime<Utc>,
    views: i64,
    last_viewed_at: Option<DateTime<Utc>>,
    expired: bool,
    expired_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    version: i64,
}

impl CountdownRow {
    /// The row of [`COUNTDOWNS`], from either database.
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            tenant: row.text("tenant")?,
            id: row.text("id")?,
            label: row.text("label")?,
            deadline: row.time("deadline")?,
            views: row.int("views")?,
            last_viewed_at: row.time_opt("last_viewed_at")?,
            expired: row.flag("expired")?,
            expired_at: row.time_opt("expired_at")?,
            created_at: row.time("created_at")?,
            version: row.int("version")?,
        })
    }

    /// The row as [`COUNTDOWNS`] writes it.
    fn cells(&self) -> [Cell; 10] {
        [
            (&self.tenant).into(),
            (&self.id).into(),
            (&self.label).into(),
            self.deadline.into(),
            self.views.into(),
            self.last_viewed_at.into(),
            self.expired.into(),
            self.expired_at.into(),
            self.created_at.into(),
            self.version.into(),
        ]
    }
}

/// One firing to record.
#[derive(Debug)]
struct FiringRow {
    tenant: String,
    timer_id: String,
    occurrence: i64,
    due_at: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    late: bool,
}

/// A count from an event, as the bigint it is stored as.
fn count(n: u64, what: &'static str) -> Result<i64, ProjectionError> {
    i64::try_from(n).map_err(|_| ProjectionError::OutOfRange { what, value: n })
}

/// The rows a batch touches, loaded once, folded in memory, written back
/// (by each backend's projection).
#[derive(Default)]
struct Batch {
    timers: HashMap<RowKey, TimerRow>,
    countdowns: HashMap<RowKey, CountdownRow>,
    firings: Vec<FiringRow>,
}

impl Batch {
    /// The countdown row's version follows an event that changes nothing
    /// else of it.
    fn follow(
        &mut self,
        event: &EventEnvelope,
        key: &RowKey,
        version: i64,
    ) -> Result<(), ProjectionError> {
        let row = self
            .countdowns
            .get_mut(key)
            .ok_or_else(|| orphan(event, "countdown"))?;
        row.version = version;
        Ok(())
    }

    fn fold(&mut self, event: &EventEnvelope) -> Result<(), ProjectionError> {
        let key = (
            event.tenant.as_str().to_owned(),
            event.stream.id().to_owned(),
        );
        let version = event.stream_version.get() as i64;
        let at = event.occurred_at;
        match event.event_type.name() {
            TimerScheduled::NAME => {
                let e: TimerScheduled = decode(event)?;
                let mut row = TimerRow::scheduled(&key.0, &key.1, e, at)?;
                // A stream scheduled again (not something `decide` writes)
                // starts over, but keeps the firings it had.
                if let Some(old) = self.timers.get(&key) {
                    row.fired_count = old.fired_count;
                    row.late_count = old.late_count;
                    row.last_fired_at = old.last_fired_at;
                }
                row.version = version;
                self.timers.insert(key, row);
            }
            TimerFired::NAME => {
                let e: TimerFired = decode(event)?;
                let row = self
                    .timers
                    .get_mut(&key)
                    .ok_or_else(|| orphan(event, "timer"))?;
                row.fired(&e)?;
                row.version = version;
                self.firings.push(FiringRow {
                    tenant: key.0,
                    timer_id: key.1,
                    occurrence: row.fired_count,
                    due_at: e.due_at,
                    fired_at: e.fired_at,
                    late: e.late,
                });
            }
            TimerCancelled::NAME => {
                let e: TimerCancelled = decode(event)?;
                let row = self
                    .timers
                    .get_mut(&key)
                    .ok_or_else(|| orphan(event, "timer"))?;
                row.cancelled(e, at);
                row.version = version;
            }
            CountdownCreated::NAME => {
                let e: CountdownCreated = decode(event)?;
                self.countdowns.insert(
                    key.clone(),
                    CountdownRow {
                        tenant: key.0,
                        id: key.1,
                        label: e.label,
                        deadline: e.deadline,
                        views: 0,
                        last_viewed_at: None,
                        expired: false,
                        expired_at: None,
                        created_at: at,
                        version,
                    },
                );
            }
            CountdownViewed::NAME => {
                let e: CountdownViewed = decode(event)?;
                let row = self
                    .countdowns
                    .get_mut(&key)
                    .ok_or_else(|| orphan(event, "countdown"))?;
                row.views = count(e.views, "views")?;
                row.last_viewed_at = Some(e.viewed_at);
                row.version = version;
            }
            CountdownExpired::NAME => {
                let e: CountdownExpired = decode(event)?;
                let row = self
                    .countdowns
                    .get_mut(&key)
                    .ok_or_else(|| orphan(event, "countdown"))?;
                row.views = count(e.views, "views")?;
                row.expired = true;
                row.expired_at = Some(at);
                row.version = version;
            }
            // The image's style and URL: nothing the countdown view shows,
            // but its version follows the stream's.
            CountdownRestyled::NAME => {
                let _: CountdownRestyled = decode(event)?;
                self.follow(event, &key, version)?;
            }
            CountdownImageUrlIssued::NAME => {
                let _: CountdownImageUrlIssued = decode(event)?;
                self.follow(event, &key, version)?;
            }
            CountdownImageUrlRevoked::NAME => {
                let _: CountdownImageUrlRevoked = decode(event)?;
                self.follow(event, &key, version)?;
            }
            _ => {
                return Err(ProjectionError::event(
                    event,
                    crate::EventFault::UnknownType,
                ));
            }
        }
        Ok(())
    }
}

/// Writes the effect of a batch: loads the rows of every stream it
/// touches, folds its events over them, and writes them back.
async fn apply(db: &impl Db, events: &[EventEnvelope]) -> Result<(), ProjectionError> {
    let keys = stream_keys(events);
    let mut batch = Batch::default();
    for timer in db
        .load(&TIMERS, "id", &keys, "", "", TimerRow::from_row)
        .await?
    {
        batch
            .timers
            .insert((timer.tenant.clone(), timer.id.clone()), timer);
    }
    for countdown in db
        .load(&COUNTDOWNS, "id", &keys, "", "", CountdownRow::from_row)
        .await?
    {
        batch
            .countdowns
            .insert((countdown.tenant.clone(), countdown.id.clone()), countdown);
    }
    for event in events {
        batch.fold(event)?;
    }
    let mut timers = Rows::new(&TIMERS);
    for timer in batch.timers.values() {
        timers.push(timer.cells());
    }
    let mut firings = Rows::new(&FIRINGS);
    for f in batch.firings {
        firings.push([
            f.tenant.into(),
            f.timer_id.into(),
            f.occurrence.into(),
            f.due_at.into(),
            f.fired_at.into(),
            f.late.into(),
        ]);
    }
    let mut countdowns = Rows::new(&COUNTDOWNS);
    for countdown in batch.countdowns.values() {
        countdowns.push(countdown.cells());
    }
    db.upsert(&timers).await?;
    db.upsert(&firings).await?;
    db.upsert(&countdowns).await
}

// ---------------------------------------------------------------- queries

/// Where a timer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimerStatus {
    /// It has an occurrence to come (`next_due_at`); a recurring timer stays
    /// pending after each firing.
    Pending,
    /// A one-shot timer that fired.
    Fired,
    /// Cancelled before it finished.
    Cancelled,
}

impl TimerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerStatus::Pending => "pending",
            TimerStatus::Fired => "fired",
            TimerStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(TimerStatus::Pending),
            "fired" => Some(TimerStatus::Fired),
            "cancelled" => Some(TimerStatus::Cancelled),
            _ => None,
        }
    }

    /// The column's value; the table's CHECK keeps it to the three.
    fn from_column(text: &str) -> Self {
        Self::parse(text).unwrap_or(TimerStatus::Pending)
    }
}

/// A timer as the read model holds it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimerView {
    /// The timer's id (its stream is `timers/{id}`).
    pub id: String,
    pub label: Option<String>,
    pub status: TimerStatus,
    /// The due time of the next occurrence while pending; of the last
    /// occurrence once fired or cancelled. What `due_before`, `due_after`
    /// and `sort=due_at` use.
    pub due_at: DateTime<Utc>,
    /// When it was first due, as scheduled.
    pub first_due_at: DateTime<Utc>,
    /// When it fires next; `null` once fired or cancelled.
    pub next_due_at: Option<DateTime<Utc>>,
    /// For a recurring timer: seconds between firings.
    pub every_secs: Option<i64>,
    /// Occurrences fired so far.
    pub fired_count: i64,
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Occurrences that fired late.
    pub late_count: i64,
    /// What it delivers when it fires: `{kind, domain, stream_id, name, body}`.
    pub deliver: Value,
    pub scheduled_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// The version of its stream the read model reflects.
    pub version: i64,
}

impl From<TimerRow> for TimerView {
    fn from(r: TimerRow) -> Self {
        Self {
            id: r.id,
            label: r.label,
            status: r.status,
            due_at: r.due_at,
            first_due_at: r.first_due_at,
            next_due_at: r.next_due_at,
            every_secs: r.every_secs,
            fired_count: r.fired_count,
            last_fired_at: r.last_fired_at,
            late_count: r.late_count,
            deliver: r.deliver,
            scheduled_at: r.scheduled_at,
            cancelled_at: r.cancelled_at,
            cancel_reason: r.cancel_reason,
            version: r.version,
        }
    }
}

/// One firing of a timer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimerFiring {
    /// Which firing, from 1.
    pub occurrence: i64,
    pub due_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// Fired more than the grace period after it was due.
    pub late: bool,
}

impl TimerFiring {
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            occurrence: row.int("occurrence")?,
            due_at: row.time("due_at")?,
            fired_at: row.time("fired_at")?,
            late: row.flag("late")?,
        })
    }
}

/// A timer with its latest firings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimerDetail {
    pub timer: TimerView,
    /// Its latest firings, the most recent first: at most 500
    /// (`timer.fired_count` counts them all).
    pub firings: Vec<TimerFiring>,
}

/// A countdown, with its remaining time at the instant of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CountdownView {
    /// The countdown's id (its stream is `timers/{id}`).
    pub id: String,
    pub label: String,
    pub deadline: DateTime<Utc>,
    /// Views counted before the deadline.
    pub views: i64,
    pub last_viewed_at: Option<DateTime<Utc>>,
    /// Whether its expiry was recorded.
    pub expired: bool,
    pub expired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Whole seconds from the answer's instant to the deadline; 0 once it
    /// passed. Computed when answering, not stored.
    pub remaining_secs: i64,
    /// The version of its stream the read model reflects.
    pub version: i64,
}

impl CountdownView {
    fn new(r: CountdownRow, now: DateTime<Utc>) -> Self {
        Self {
            remaining_secs: (r.deadline - now).num_seconds().max(0),
            id: r.id,
            label: r.label,
            deadline: r.deadline,
            views: r.views,
            last_viewed_at: r.last_viewed_at,
            expired: r.expired,
            expired_at: r.expired_at,
            created_at: r.created_at,
            version: r.version,
        }
    }
}

/// How a list of timers is sorted (then by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimerSort {
    #[default]
    DueAt,
    Id,
}

impl TimerSort {
    pub const NAMES: &'static [&'static str] = &["due_at", "id"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "due_at" => Some(TimerSort::DueAt),
            "id" => Some(TimerSort::Id),
            _ => None,
        }
    }

    fn key(self) -> SortKey {
        match self {
            TimerSort::DueAt => SortKey::time("due_at"),
            TimerSort::Id => SortKey::id(),
        }
    }
}

/// A page of timers.
#[derive(Debug, Clone, Default)]
pub struct TimerQuery {
    pub status: Option<TimerStatus>,
    /// Due at or after this instant.
    pub due_after: Option<DateTime<Utc>>,
    /// Due strictly before this instant.
    pub due_before: Option<DateTime<Utc>>,
    pub sort: TimerSort,
    pub order: SortOrder,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// How a list of countdowns is sorted (then by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountdownSort {
    #[default]
    Deadline,
    Views,
    Id,
}

impl CountdownSort {
    pub const NAMES: &'static [&'static str] = &["deadline", "views", "id"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "deadline" => Some(CountdownSort::Deadline),
            "views" => Some(CountdownSort::Views),
            "id" => Some(CountdownSort::Id),
            _ => None,
        }
    }

    fn key(self) -> SortKey {
        match self {
            CountdownSort::Deadline => SortKey::time("deadline"),
            CountdownSort::Views => SortKey::integer("views"),
            CountdownSort::Id => SortKey::id(),
        }
    }
}

/// A page of countdowns.
#[derive(Debug, Clone, Default)]
pub struct CountdownQuery {
    pub expired: Option<bool>,
    pub sort: CountdownSort,
    pub order: SortOrder,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// A page of the tenant's timers.
pub async fn list_timers<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    query: &TimerQuery,
) -> Result<Page<TimerView>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let params: Vec<Cell> = vec![
        tenant.into(),
        query.status.map(TimerStatus::as_str).into(),
        query.due_after.into(),
        query.due_before.into(),
        after_value.into(),
        after_id.into(),
        page_size(query.limit).into(),
    ];
    let query = query.clone();
    serve!(read_models.into(), NAME, |db| async move {
        let p = |n, ty| db.dialect().param(n, ty);
        let sql = format!(
            "SELECT {} FROM {}
             WHERE tenant = {}
               AND ({} IS NULL OR status = {})
               AND ({} IS NULL OR due_at >= {})
               AND ({} IS NULL OR due_at < {})
             {}",
            TIMERS.column_list(),
            db.table("timers"),
            p(1, Type::Text),
            p(2, Type::Text),
            p(2, Type::Text),
            p(3, Type::Time),
            p(3, Type::Time),
            p(4, Type::Time),
            p(4, Type::Time),
            key.tail(db.dialect(), query.order, 5, 6, 7)
        );
        let rows = db.rows(&sql, &params, TimerRow::from_row).await?;
        Ok(timer_page(rows, &query))
    })
}

/// The page of `query` from the rows fetched for it (`limit + 1` at most).
fn timer_page(rows: Vec<TimerRow>, query: &TimerQuery) -> Page<TimerView> {
    let sort = query.sort;
    let page = paginate(rows, query.limit, |r| match sort {
        TimerSort::DueAt => time_cursor("due_at", r.due_at, &r.id),
        TimerSort::Id => id_cursor("id", &r.id),
    });
    Page {
        items: page.items.into_iter().map(TimerView::from).collect(),
        next_cursor: page.next_cursor,
    }
}

/// One of the tenant's timers with its latest firings; `None` when the
/// tenant has no timer of that id.
pub async fn timer<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    id: &str,
) -> Result<Option<TimerDetail>, ProjectionError> {
    let key: Vec<Cell> = vec![tenant.into(), id.into()];
    serve!(read_models.into(), NAME, |db| async move {
        let p = |n, ty| db.dialect().param(n, ty);
        let sql = format!(
            "SELECT {} FROM {} WHERE tenant = {} AND id = {}",
            TIMERS.column_list(),
            db.table("timers"),
            p(1, Type::Text),
            p(2, Type::Text)
        );
        let Some(timer) = db.row(&sql, &key, TimerRow::from_row).await? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT occurrence, due_at, fired_at, late FROM {}
             WHERE tenant = {} AND timer_id = {} ORDER BY occurrence DESC LIMIT {}",
            db.table("firings"),
            p(1, Type::Text),
            p(2, Type::Text),
            p(3, Type::Int)
        );
        let mut params = key.clone();
        params.push((MAX_PAGE_SIZE as i64).into());
        let firings = db.rows(&sql, &params, TimerFiring::from_row).await?;
        Ok(Some(TimerDetail {
            timer: timer.into(),
            firings,
        }))
    })
}

/// A page of the tenant's countdowns, their remaining time taken at `now`.
pub async fn list_countdowns<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    query: &CountdownQuery,
    now: DateTime<Utc>,
) -> Result<Page<CountdownView>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let params: Vec<Cell> = vec![
        tenant.into(),
        query.expired.into(),
        after_value.into(),
        after_id.into(),
        page_size(query.limit).into(),
    ];
    let query = query.clone();
    serve!(read_models.into(), NAME, |db| async move {
        let p = |n, ty| db.dialect().param(n, ty);
        let sql = format!(
            "SELECT {} FROM {}
             WHERE tenant = {} AND ({} IS NULL OR expired = {})
             {}",
            COUNTDOWNS.column_list(),
            db.table("countdowns"),
            p(1, Type::Text),
            p(2, Type::Bool),
            p(2, Type::Bool),
            key.tail(db.dialect(), query.order, 3, 4, 5)
        );
        let rows = db.rows(&sql, &params, CountdownRow::from_row).await?;
        Ok(countdown_page(rows, &query, now))
    })
}

/// The page of `query` from the rows fetched for it (`limit + 1` at most),
/// their remaining time taken at `now`.
fn countdown_page(
    rows: Vec<CountdownRow>,
    query: &CountdownQuery,
    now: DateTime<Utc>,
) -> Page<CountdownView> {
    let sort = query.sort;
    let page = paginate(rows, query.limit, |r| match sort {
        CountdownSort::Deadline => time_cursor("deadline", r.deadline, &r.id),
        CountdownSort::Views => Cursor {
            sort: "views".into(),
            value: Value::from(r.views),
            id: r.id.clone(),
        },
        CountdownSort::Id => id_cursor("id", &r.id),
    });
    Page {
        items: page
            .items
            .into_iter()
            .map(|r| CountdownView::new(r, now))
            .collect(),
        next_cursor: page.next_cursor,
    }
}

/// One of the tenant's countdowns, its remaining time taken at `now`;
/// `None` when the tenant has no countdown of that id.
pub async fn countdown<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<CountdownView>, ProjectionError> {
    let key: Vec<Cell> = vec![tenant.into(), id.into()];
    serve!(read_models.into(), NAME, |db| async move {
        let p = |n, ty| db.dialect().param(n, ty);
        let sql = format!(
            "SELECT {} FROM {} WHERE tenant = {} AND id = {}",
            COUNTDOWNS.column_list(),
            db.table("countdowns"),
            p(1, Type::Text),
            p(2, Type::Text)
        );
        Ok(db
            .row(&sql, &key, CountdownRow::from_row)
            .await?
            .map(|row| CountdownView::new(row, now)))
    })
}
