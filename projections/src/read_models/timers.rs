//! The timers read model: every timer with where it stands (pending with the
//! due time of its next occurrence, fired, cancelled) and each of its
//! firings, and every countdown with its views and expiry; plus the queries
//! that serve them (`/v1/views/timers`, `/v1/views/countdowns`).
//!
//! Timers and countdowns share the `timers/{id}` streams: a stream is one or
//! the other by its first event (`timer_scheduled` or `countdown_created`),
//! so each kind has its table, keyed by the stream's id. A countdown's
//! remaining time depends on the clock, so it is not stored: the queries
//! compute it from the deadline at the instant they answer.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use herald_events::timers::{
    CountdownCreated, CountdownExpired, CountdownViewed, TimerCancelled, TimerFired,
    TimerScheduled, DOMAIN,
};
use herald_events::{EventEnvelope, TypedEvent};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use super::{paginate, Cursor, Page, SortOrder, MAX_PAGE_SIZE};
use crate::{Projection, ProjectionError, ReadModels};

/// The projection's name: its checkpoint and schema prefix.
pub const NAME: &str = "timers";

/// Projects `timers.*` into the `timers`, `firings` and `countdowns` tables.
#[derive(Debug, Default)]
pub struct TimersProjection;

pub(super) const TIMER_COLUMNS: &str =
    "tenant, id, label, status, due_at, first_due_at, next_due_at, \
    every_secs, fired_count, last_fired_at, late_count, deliver, scheduled_at, cancelled_at, \
    cancel_reason, version";

pub(super) const COUNTDOWN_COLUMNS: &str =
    "tenant, id, label, deadline, views, last_viewed_at, expired, expired_at, created_at, version";

/// A timer row as the batch leaves it.
#[derive(Debug, Clone)]
pub(super) struct TimerRow {
    pub(super) tenant: String,
    pub(super) id: String,
    pub(super) label: Option<String>,
    pub(super) status: TimerStatus,
    /// The due time of the next occurrence while pending; of the last one
    /// (fired, or pending when cancelled) once finished. Never null, so it
    /// sorts and pages every timer.
    pub(super) due_at: DateTime<Utc>,
    pub(super) first_due_at: DateTime<Utc>,
    pub(super) next_due_at: Option<DateTime<Utc>>,
    pub(super) every_secs: Option<i64>,
    pub(super) fired_count: i64,
    pub(super) last_fired_at: Option<DateTime<Utc>>,
    pub(super) late_count: i64,
    pub(super) deliver: Value,
    pub(super) scheduled_at: DateTime<Utc>,
    pub(super) cancelled_at: Option<DateTime<Utc>>,
    pub(super) cancel_reason: Option<String>,
    pub(super) version: i64,
}

impl TimerRow {
    /// The row of [`TIMER_COLUMNS`], from either database.
    pub(super) fn from_row(row: &impl Columns) -> Result<Self, ProjectionError> {
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
pub(super) struct CountdownRow {
    pub(super) tenant: String,
    pub(super) id: String,
    pub(super) label: String,
    pub(super) deadline: DateTime<Utc>,
    pub(super) views: i64,
    pub(super) last_viewed_at: Option<DateTime<Utc>>,
    pub(super) expired: bool,
    pub(super) expired_at: Option<DateTime<Utc>>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) version: i64,
}

impl CountdownRow {
    /// The row of [`COUNTDOWN_COLUMNS`], from either database.
    pub(super) fn from_row(row: &impl Columns) -> Result<Self, ProjectionError> {
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
}

/// One firing to record.
#[derive(Debug)]
pub(super) struct FiringRow {
    pub(super) tenant: String,
    pub(super) timer_id: String,
    pub(super) occurrence: i64,
    pub(super) due_at: DateTime<Utc>,
    pub(super) fired_at: DateTime<Utc>,
    pub(super) late: bool,
}

/// A row's columns by name, whichever database it was read from: how the
/// rows of this read model and of `drafts` are read on Postgres and on
/// SQLite (where the embedded module implements it).
pub(super) trait Columns {
    fn text_opt(&self, column: &str) -> Result<Option<String>, ProjectionError>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, ProjectionError>;
    fn flag(&self, column: &str) -> Result<bool, ProjectionError>;
    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError>;
    fn json_opt(&self, column: &str) -> Result<Option<Value>, ProjectionError>;

    fn text(&self, column: &str) -> Result<String, ProjectionError> {
        self.text_opt(column)?.ok_or_else(|| null(column))
    }

    fn int(&self, column: &str) -> Result<i64, ProjectionError> {
        self.int_opt(column)?.ok_or_else(|| null(column))
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, ProjectionError> {
        self.time_opt(column)?.ok_or_else(|| null(column))
    }

    fn json(&self, column: &str) -> Result<Value, ProjectionError> {
        self.json_opt(column)?.ok_or_else(|| null(column))
    }
}

fn null(column: &str) -> ProjectionError {
    ProjectionError::Internal(format!("the column {column} is unexpectedly null"))
}

impl Columns for Row {
    fn text_opt(&self, column: &str) -> Result<Option<String>, ProjectionError> {
        Ok(self.try_get(column)?)
    }

    fn int_opt(&self, column: &str) -> Result<Option<i64>, ProjectionError> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool, ProjectionError> {
        Ok(self.try_get(column)?)
    }

    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError> {
        Ok(self.try_get(column)?)
    }

    fn json_opt(&self, column: &str) -> Result<Option<Value>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
}

/// A count from an event, as the bigint it is stored as.
pub(super) fn count(n: u64, what: &str) -> Result<i64, ProjectionError> {
    i64::try_from(n).map_err(|_| ProjectionError::Rejected(format!("{what} {n} is out of range")))
}

/// The typed payload of `event`, or the refusal that parks it (a payload
/// its type does not describe, or an unknown schema version). Shared by the
/// read models of this crate.
pub(super) fn decode<T: TypedEvent>(event: &EventEnvelope) -> Result<T, ProjectionError> {
    if event.version.get() != T::VERSION {
        return Err(ProjectionError::Rejected(format!(
            "{} v{} at position {}: only v{} is known",
            event.event_type,
            event.version,
            event.position,
            T::VERSION
        )));
    }
    // From a borrow: the payload stays in the envelope, uncloned.
    T::deserialize(&event.payload).map_err(|e| {
        ProjectionError::Rejected(format!(
            "{} at position {}: {e}",
            event.event_type, event.position
        ))
    })
}

/// The refusal of an event on a stream that was never created as `what`.
pub(super) fn orphan(event: &EventEnvelope, what: &str) -> ProjectionError {
    ProjectionError::Rejected(format!(
        "{} at position {} is on {}, which is not a {what}",
        event.event_type, event.position, event.stream
    ))
}

pub(super) type Key = (String, String);

/// The (tenant, stream id) keys of `events`, each once, in order of
/// appearance: the rows a batch loads.
pub(super) fn keys(events: &[EventEnvelope]) -> Vec<(&str, &str)> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .map(|e| (e.tenant.as_str(), e.stream.id()))
        .filter(|key| seen.insert(*key))
        .collect()
}

/// The rows a batch touches, loaded once, folded in memory, written back
/// (by each backend's projection).
#[derive(Default)]
pub(super) struct Batch {
    pub(super) timers: HashMap<Key, TimerRow>,
    pub(super) countdowns: HashMap<Key, CountdownRow>,
    pub(super) firings: Vec<FiringRow>,
}

impl Batch {
    pub(super) fn fold(&mut self, event: &EventEnvelope) -> Result<(), ProjectionError> {
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
            other => {
                return Err(ProjectionError::Rejected(format!(
                    "unknown event type timers.{other} at position {}",
                    event.position
                )))
            }
        }
        Ok(())
    }

    /// Loads the existing rows of every stream the events touch.
    async fn load(
        &mut self,
        tx: &Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let (tenants, ids): (Vec<&str>, Vec<&str>) = keys(events).into_iter().unzip();
        let keys = "JOIN unnest($1::text[], $2::text[]) AS k(tenant, id) USING (tenant, id)";
        for row in tx
            .query(
                &format!("SELECT {TIMER_COLUMNS} FROM {schema}.timers {keys}"),
                &[&tenants, &ids],
            )
            .await?
        {
            let timer = TimerRow::from_row(&row)?;
            self.timers
                .insert((timer.tenant.clone(), timer.id.clone()), timer);
        }
        for row in tx
            .query(
                &format!("SELECT {COUNTDOWN_COLUMNS} FROM {schema}.countdowns {keys}"),
                &[&tenants, &ids],
            )
            .await?
        {
            let countdown = CountdownRow::from_row(&row)?;
            self.countdowns
                .insert((countdown.tenant.clone(), countdown.id.clone()), countdown);
        }
        Ok(())
    }

    async fn write(self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        if !self.timers.is_empty() {
            let t: Vec<&TimerRow> = self.timers.values().collect();
            let status: Vec<&str> = t.iter().map(|r| r.status.as_str()).collect();
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.timers ({TIMER_COLUMNS})
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                         $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::bigint[],
                         $9::bigint[], $10::timestamptz[], $11::bigint[], $12::jsonb[],
                         $13::timestamptz[], $14::timestamptz[], $15::text[], $16::bigint[])
                     ON CONFLICT (tenant, id) DO UPDATE SET
                         label = EXCLUDED.label, status = EXCLUDED.status,
                         due_at = EXCLUDED.due_at, first_due_at = EXCLUDED.first_due_at,
                         next_due_at = EXCLUDED.next_due_at, every_secs = EXCLUDED.every_secs,
                         fired_count = EXCLUDED.fired_count, last_fired_at = EXCLUDED.last_fired_at,
                         late_count = EXCLUDED.late_count, deliver = EXCLUDED.deliver,
                         scheduled_at = EXCLUDED.scheduled_at, cancelled_at = EXCLUDED.cancelled_at,
                         cancel_reason = EXCLUDED.cancel_reason, version = EXCLUDED.version"
                ),
                &[
                    &t.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.label.as_deref()).collect::<Vec<_>>(),
                    &status,
                    &t.iter().map(|r| r.due_at).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.first_due_at).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.next_due_at).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.every_secs).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.fired_count).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.last_fired_at).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.late_count).collect::<Vec<_>>(),
                    &t.iter().map(|r| &r.deliver).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.scheduled_at).collect::<Vec<_>>(),
                    &t.iter().map(|r| r.cancelled_at).collect::<Vec<_>>(),
                    &t.iter()
                        .map(|r| r.cancel_reason.as_deref())
                        .collect::<Vec<_>>(),
                    &t.iter().map(|r| r.version).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        if !self.firings.is_empty() {
            let f = &self.firings;
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.firings (tenant, timer_id, occurrence, due_at, fired_at, late)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[],
                         $4::timestamptz[], $5::timestamptz[], $6::bool[])
                     ON CONFLICT (tenant, timer_id, occurrence) DO UPDATE SET
                         due_at = EXCLUDED.due_at, fired_at = EXCLUDED.fired_at,
                         late = EXCLUDED.late"
                ),
                &[
                    &f.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
                    &f.iter().map(|r| r.timer_id.as_str()).collect::<Vec<_>>(),
                    &f.iter().map(|r| r.occurrence).collect::<Vec<_>>(),
                    &f.iter().map(|r| r.due_at).collect::<Vec<_>>(),
                    &f.iter().map(|r| r.fired_at).collect::<Vec<_>>(),
                    &f.iter().map(|r| r.late).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        if !self.countdowns.is_empty() {
            let c: Vec<&CountdownRow> = self.countdowns.values().collect();
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.countdowns ({COUNTDOWN_COLUMNS})
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                         $5::bigint[], $6::timestamptz[], $7::bool[], $8::timestamptz[],
                         $9::timestamptz[], $10::bigint[])
                     ON CONFLICT (tenant, id) DO UPDATE SET
                         label = EXCLUDED.label, deadline = EXCLUDED.deadline,
                         views = EXCLUDED.views, last_viewed_at = EXCLUDED.last_viewed_at,
                         expired = EXCLUDED.expired, expired_at = EXCLUDED.expired_at,
                         created_at = EXCLUDED.created_at, version = EXCLUDED.version"
                ),
                &[
                    &c.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.deadline).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.views).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.last_viewed_at).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.expired).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.expired_at).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.created_at).collect::<Vec<_>>(),
                    &c.iter().map(|r| r.version).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for TimersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["timers", "firings", "countdowns"]
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.event_type.domain() == DOMAIN
    }

    async fn setup(&self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.timers (
                 tenant text NOT NULL,
                 id text NOT NULL,
                 label text,
                 status text NOT NULL CHECK (status IN ('pending', 'fired', 'cancelled')),
                 due_at timestamptz NOT NULL,
                 first_due_at timestamptz NOT NULL,
                 next_due_at timestamptz,
                 every_secs bigint,
                 fired_count bigint NOT NULL,
                 last_fired_at timestamptz,
                 late_count bigint NOT NULL,
                 deliver jsonb NOT NULL,
                 scheduled_at timestamptz NOT NULL,
                 cancelled_at timestamptz,
                 cancel_reason text,
                 version bigint NOT NULL,
                 PRIMARY KEY (tenant, id)
             );
             CREATE INDEX IF NOT EXISTS timers_by_due ON {schema}.timers (tenant, due_at, id);
             CREATE INDEX IF NOT EXISTS timers_by_status_due
                 ON {schema}.timers (tenant, status, due_at, id);
             CREATE TABLE IF NOT EXISTS {schema}.firings (
                 tenant text NOT NULL,
                 timer_id text NOT NULL,
                 occurrence bigint NOT NULL,
                 due_at timestamptz NOT NULL,
                 fired_at timestamptz NOT NULL,
                 late bool NOT NULL,
                 PRIMARY KEY (tenant, timer_id, occurrence)
             );
             CREATE TABLE IF NOT EXISTS {schema}.countdowns (
                 tenant text NOT NULL,
                 id text NOT NULL,
                 label text NOT NULL,
                 deadline timestamptz NOT NULL,
                 views bigint NOT NULL,
                 last_viewed_at timestamptz,
                 expired bool NOT NULL,
                 expired_at timestamptz,
                 created_at timestamptz NOT NULL,
                 version bigint NOT NULL,
                 PRIMARY KEY (tenant, id)
             );
             CREATE INDEX IF NOT EXISTS countdowns_by_deadline
                 ON {schema}.countdowns (tenant, deadline, id);"
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let mut batch = Batch::default();
        batch.load(tx, schema, events).await?;
        for event in events {
            batch.fold(event)?;
        }
        batch.write(tx, schema).await
    }
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
    pub(super) fn from_row(row: &impl Columns) -> Result<Self, ProjectionError> {
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
    pub(super) fn new(r: CountdownRow, now: DateTime<Utc>) -> Self {
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

    pub(super) fn key(self) -> SortKey {
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

    pub(super) fn key(self) -> SortKey {
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

/// A sort column and the SQL type of its values, which the cursor's value
/// must parse as: the keyset pagination of the lists here and in `drafts`
/// (one SQL text with fixed parameters, whatever the filters and sort).
#[derive(Debug, Clone, Copy)]
pub(super) struct SortKey {
    pub(super) column: &'static str,
    /// `timestamptz`, `bigint` or `text`.
    pub(super) sql_type: &'static str,
}

impl SortKey {
    pub(super) fn time(column: &'static str) -> Self {
        Self {
            column,
            sql_type: "timestamptz",
        }
    }

    pub(super) fn integer(column: &'static str) -> Self {
        Self {
            column,
            sql_type: "bigint",
        }
    }

    pub(super) fn id() -> Self {
        Self {
            column: "id",
            sql_type: "text",
        }
    }

    /// The cursor's sort value as SQL text of the column's type; a forged
    /// cursor is refused here rather than failing the query.
    pub(super) fn after(
        self,
        cursor: Option<&Cursor>,
    ) -> Result<(Option<String>, Option<String>), ProjectionError> {
        let Some(cursor) = cursor else {
            return Ok((None, None));
        };
        let value = match (self.sql_type, &cursor.value) {
            ("timestamptz", Value::String(t)) => DateTime::parse_from_rfc3339(t).ok().map(|t| {
                t.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Micros, true)
            }),
            ("bigint", Value::Number(n)) => n.as_i64().map(|n| n.to_string()),
            ("text", Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        match value {
            Some(value) => Ok((Some(value), Some(cursor.id.clone()))),
            None => Err(ProjectionError::Rejected(
                "the cursor does not belong to this list; pass next_cursor unchanged".into(),
            )),
        }
    }

    /// `AND` the rows after the cursor (`$a`, `$b`: its value and id, both
    /// text, `NULL` for the first page), `ORDER BY` and `LIMIT $limit`.
    pub(super) fn tail(self, order: SortOrder, a: usize, b: usize, limit: usize) -> String {
        let (column, ty, after, dir) = (self.column, self.sql_type, order.after(), order.sql());
        format!(
            "AND (${a}::text IS NULL OR ({column}, id) {after} (${a}::text::{ty}, ${b}::text))
             ORDER BY {column} {dir}, id {dir} LIMIT ${limit}"
        )
    }
}

/// The cursor after a row sorted by a time column.
pub(super) fn time_cursor(sort: &str, at: DateTime<Utc>, id: &str) -> Cursor {
    Cursor {
        sort: sort.to_owned(),
        value: Value::String(at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        id: id.to_owned(),
    }
}

/// The cursor after a row sorted by its id.
pub(super) fn id_cursor(sort: &str, id: &str) -> Cursor {
    Cursor {
        sort: sort.to_owned(),
        value: Value::String(id.to_owned()),
        id: id.to_owned(),
    }
}

/// The rows to fetch for a page of `limit`: one more shows there is a next.
pub(super) fn page_size(limit: usize) -> i64 {
    limit.clamp(1, MAX_PAGE_SIZE) as i64 + 1
}

/// A page of the tenant's timers.
pub async fn list_timers(
    read_models: &ReadModels,
    tenant: &str,
    query: &TimerQuery,
) -> Result<Page<TimerView>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let status = query.status.map(TimerStatus::as_str);
    let (client, schema) = read_models.serving(NAME).await?;
    let sql = format!(
        "SELECT {TIMER_COLUMNS} FROM {schema}.timers
         WHERE tenant = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR due_at >= $3)
           AND ($4::timestamptz IS NULL OR due_at < $4)
         {}",
        key.tail(query.order, 5, 6, 7)
    );
    let params: [&(dyn ToSql + Sync); 7] = [
        &tenant,
        &status,
        &query.due_after,
        &query.due_before,
        &after_value,
        &after_id,
        &page_size(query.limit),
    ];
    let rows = client
        .query(&sql, &params)
        .await?
        .iter()
        .map(TimerRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(timer_page(rows, query))
}

/// The page of `query` from the rows fetched for it (`limit + 1` at most).
pub(super) fn timer_page(rows: Vec<TimerRow>, query: &TimerQuery) -> Page<TimerView> {
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
pub async fn timer(
    read_models: &ReadModels,
    tenant: &str,
    id: &str,
) -> Result<Option<TimerDetail>, ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    let Some(row) = client
        .query_opt(
            &format!("SELECT {TIMER_COLUMNS} FROM {schema}.timers WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let firings = client
        .query(
            &format!(
                "SELECT occurrence, due_at, fired_at, late FROM {schema}.firings
                 WHERE tenant = $1 AND timer_id = $2 ORDER BY occurrence DESC LIMIT $3"
            ),
            &[&tenant, &id, &(MAX_PAGE_SIZE as i64)],
        )
        .await?
        .iter()
        .map(TimerFiring::from_row)
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(Some(TimerDetail {
        timer: TimerRow::from_row(&row)?.into(),
        firings,
    }))
}

/// A page of the tenant's countdowns, their remaining time taken at `now`.
pub async fn list_countdowns(
    read_models: &ReadModels,
    tenant: &str,
    query: &CountdownQuery,
    now: DateTime<Utc>,
) -> Result<Page<CountdownView>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let (client, schema) = read_models.serving(NAME).await?;
    let sql = format!(
        "SELECT {COUNTDOWN_COLUMNS} FROM {schema}.countdowns
         WHERE tenant = $1 AND ($2::bool IS NULL OR expired = $2)
         {}",
        key.tail(query.order, 3, 4, 5)
    );
    let params: [&(dyn ToSql + Sync); 5] = [
        &tenant,
        &query.expired,
        &after_value,
        &after_id,
        &page_size(query.limit),
    ];
    let rows = client
        .query(&sql, &params)
        .await?
        .iter()
        .map(CountdownRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(countdown_page(rows, query, now))
}

/// The page of `query` from the rows fetched for it (`limit + 1` at most),
/// their remaining time taken at `now`.
pub(super) fn countdown_page(
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
pub async fn countdown(
    read_models: &ReadModels,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<CountdownView>, ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    client
        .query_opt(
            &format!(
                "SELECT {COUNTDOWN_COLUMNS} FROM {schema}.countdowns WHERE tenant = $1 AND id = $2"
            ),
            &[&tenant, &id],
        )
        .await?
        .map(|row| Ok(CountdownView::new(CountdownRow::from_row(&row)?, now)))
        .transpose()
}
