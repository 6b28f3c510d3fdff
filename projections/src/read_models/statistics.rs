//! The statistics read model: daily rollups per tenant, customer and UTC day
//! over the other domains, and the query that sums them over a range of
//! days, grouped by day, customer and (for outage minutes) edge.
//!
//! What is counted, on the UTC day of each event's `occurred_at`:
//! - tickets opened, resolved and reopened. The customer comes from
//!   `ticket_opened` (later ticket events do not carry it), remembered per
//!   ticket in `ticket_openings`. Time to resolve is the time from the
//!   ticket's opening to each of its resolutions (a ticket resolved, reopened
//!   and resolved again counts twice, the second time from the same
//!   opening), on the day of the resolution. Every duration is kept
//!   (`resolution_durations`, a histogram in microseconds) so that the mean
//!   over a range is a sum over a count and the p90 is exact: the
//!   nearest-rank 90th percentile (the value at rank ⌈0.9·n⌉ of the n
//!   durations sorted ascending), never an average of daily percentiles.
//! - outage time per edge, from `edge_went_offline` to the next
//!   `edge_came_online`, split at UTC midnights between the days it spans.
//!   The customer is the one the edge was last registered for
//!   (`edge_registered`). An outage that has not ended counts nothing until
//!   it ends: an open outage has no length yet, and counting it up to "now"
//!   would make the tables depend on when they were built.
//! - draft autosaves (`draft_patched`) and publishes (`draft_published`),
//!   and countdown views (`countdown_viewed`, one per event). Drafts and
//!   countdowns carry no customer: they count under customer `""`.
//! - editor sessions (`statistics.session_started` / `session_ended`):
//!   started, ended, and the seconds between the `started_at` and `ended_at`
//!   the producer reported (negative lengths from a skewed clock count as 0),
//!   on the day the session ended, for the customer it started with (`""`
//!   if none). An end whose start was never seen counts as ended, untimed.
//!
//! Events that do not fit a valid history (a resolution of a ticket never
//! opened, an edge coming online that was never offline) count what they
//! can and nothing else; every table is a function of the events alone.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveDate, Utc};
use herald_events::{drafts, edges, statistics, tickets, timers};
use herald_events::{EventEnvelope, TenantId, TypedEvent};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use crate::{Projection, ProjectionError, ReadModels};

/// The projection's name.
pub const NAME: &str = "statistics";

/// The version of the tables' shape and of the fold (both backends).
pub(crate) const VERSION: u32 = 1;

/// The longest range of days one query may cover.
pub const MAX_RANGE_DAYS: u64 = 366;

/// The daily counters, in the order of [`COUNTER_COLUMNS`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    TicketsOpened,
    TicketsResolved,
    TicketsReopened,
    DraftAutosaves,
    DraftsPublished,
    CountdownViews,
    SessionsStarted,
    SessionsEnded,
    SessionsTimed,
    SessionMicros,
}

/// The columns of `daily`, one per [`Counter`].
pub(crate) const COUNTER_COLUMNS: [&str; 10] = [
    "tickets_opened",
    "tickets_resolved",
    "tickets_reopened",
    "draft_autosaves",
    "drafts_published",
    "countdown_views",
    "sessions_started",
    "sessions_ended",
    "sessions_timed",
    "session_micros",
];

pub(crate) type Counters = [i64; COUNTER_COLUMNS.len()];

/// Rolls up the other domains' events per tenant, customer and day.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatisticsProjection;

/// What one accepted event means to the statistics.
pub(crate) enum Fact {
    TicketOpened {
        customer: String,
    },
    TicketResolved,
    TicketReopened,
    EdgeRegistered {
        customer: String,
    },
    EdgeWentOffline,
    EdgeCameOnline,
    Count(Counter),
    SessionStarted {
        customer: String,
        started_at: DateTime<Utc>,
    },
    SessionEnded {
        ended_at: DateTime<Utc>,
    },
}

fn decode<T: TypedEvent>(event: &EventEnvelope) -> Result<T, ProjectionError> {
    T::deserialize(&event.payload).map_err(|e| {
        ProjectionError::Rejected(format!(
            "{} at position {}: the payload does not parse: {e}",
            event.event_type, event.position
        ))
    })
}

/// An event counted as it is (its payload must still parse).
fn count<T: TypedEvent>(event: &EventEnvelope, counter: Counter) -> Result<Fact, ProjectionError> {
    decode::<T>(event).map(|_| Fact::Count(counter))
}

fn fact(event: &EventEnvelope) -> Result<Option<Fact>, ProjectionError> {
    let fact = match event.event_type.as_str() {
        "tickets.ticket_opened" => Fact::TicketOpened {
            customer: decode::<tickets::TicketOpened>(event)?.customer,
        },
        "tickets.ticket_resolved" => {
            decode::<tickets::TicketResolved>(event).map(|_| Fact::TicketResolved)?
        }
        "tickets.ticket_reopened" => {
            decode::<tickets::TicketReopened>(event).map(|_| Fact::TicketReopened)?
        }
        "edges.edge_registered" => Fact::EdgeRegistered {
            customer: decode::<edges::EdgeRegistered>(event)?.customer,
        },
        "edges.edge_went_offline" => {
            decode::<edges::EdgeWentOffline>(event).map(|_| Fact::EdgeWentOffline)?
        }
        "edges.edge_came_online" => {
            decode::<edges::EdgeCameOnline>(event).map(|_| Fact::EdgeCameOnline)?
        }
        "drafts.draft_patched" => count::<drafts::DraftPatched>(event, Counter::DraftAutosaves)?,
        "drafts.draft_published" => {
            count::<drafts::DraftPublished>(event, Counter::DraftsPublished)?
        }
        "timers.countdown_viewed" => {
            count::<timers::CountdownViewed>(event, Counter::CountdownViews)?
        }
        "statistics.session_started" => {
            let started = decode::<statistics::SessionStarted>(event)?;
            Fact::SessionStarted {
                customer: started.customer.unwrap_or_default(),
                started_at: started.started_at,
            }
        }
        "statistics.session_ended" => Fact::SessionEnded {
            ended_at: decode::<statistics::SessionEnded>(event)?.ended_at,
        },
        _ => return Ok(None),
    };
    Ok(Some(fact))
}

/// Whether the statistics read `event` (both backends).
pub(crate) fn accepts(event: &EventEnvelope) -> bool {
    ACCEPTED.contains(&event.event_type.as_str())
}

/// What a batch's events mean, every payload read before anything is
/// counted, so that a poison event fails the batch before any work.
pub(crate) fn facts(
    events: &[EventEnvelope],
) -> Result<Vec<(&EventEnvelope, Fact)>, ProjectionError> {
    let mut facts = Vec::with_capacity(events.len());
    for event in events {
        if let Some(fact) = fact(event)? {
            facts.push((event, fact));
        }
    }
    Ok(facts)
}

const ACCEPTED: &[&str] = &[
    "tickets.ticket_opened",
    "tickets.ticket_resolved",
    "tickets.ticket_reopened",
    "edges.edge_registered",
    "edges.edge_went_offline",
    "edges.edge_came_online",
    "drafts.draft_patched",
    "drafts.draft_published",
    "timers.countdown_viewed",
    "statistics.session_started",
    "statistics.session_ended",
];

/// (tenant, id within the domain): a ticket, an edge or a session.
pub(crate) type EntityKey = (String, String);

#[derive(Debug, Clone)]
pub(crate) struct TicketOpening {
    pub(crate) customer: String,
    pub(crate) opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct EdgeState {
    pub(crate) customer: String,
    pub(crate) offline_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub(crate) struct SessionStart {
    pub(crate) customer: String,
    pub(crate) started_at: DateTime<Utc>,
}

/// A batch's effect, folded in memory: deltas of the rollups, and the
/// helper rows it read and changed.
///
/// Both backends fold the same way: load the helper rows the batch's
/// facts need ([`Needed::of`]) into `tickets`, `edges` and `sessions`,
/// [`absorb`](Fold::absorb) the facts, then add the deltas to the rollups
/// and upsert the changed helper rows.
#[derive(Default)]
pub(crate) struct Fold {
    pub(crate) daily: HashMap<(String, NaiveDate, String), Counters>,
    /// (tenant, day, customer, micros) → resolutions of that length.
    pub(crate) durations: HashMap<(String, NaiveDate, String, i64), i64>,
    /// (tenant, day, customer, edge) → microseconds offline.
    pub(crate) outages: HashMap<(String, NaiveDate, String, String), i64>,
    pub(crate) tickets: HashMap<EntityKey, TicketOpening>,
    pub(crate) edges: HashMap<EntityKey, EdgeState>,
    pub(crate) sessions: HashMap<EntityKey, SessionStart>,
    pub(crate) changed_tickets: HashSet<EntityKey>,
    pub(crate) changed_edges: HashSet<EntityKey>,
    pub(crate) changed_sessions: HashSet<EntityKey>,
}

fn micros(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX).max(0)
}

fn midnight_after(day: NaiveDate) -> DateTime<Utc> {
    day.checked_add_days(Days::new(1))
        .unwrap_or(NaiveDate::MAX)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
}

/// The part of `[from, to)` on each UTC day it touches, in microseconds.
fn split_by_day(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(NaiveDate, i64)> {
    let mut parts = Vec::new();
    let mut start = from;
    while start < to {
        let day = start.date_naive();
        let end = midnight_after(day).min(to);
        if end <= start {
            break;
        }
        parts.push((day, micros(start, end)));
        start = end;
    }
    parts
}

impl Fold {
    /// Folds a batch's facts, in position order, into the loaded state.
    pub(crate) fn absorb(&mut self, facts: Vec<(&EventEnvelope, Fact)>) {
        for (event, fact) in facts {
            self.apply(event, fact);
        }
    }

    fn count(&mut self, tenant: &str, day: NaiveDate, customer: &str, counter: Counter, n: i64) {
        let row = self
            .daily
            .entry((tenant.to_owned(), day, customer.to_owned()))
            .or_default();
        row[counter as usize] += n;
    }

    fn apply(&mut self, event: &EventEnvelope, fact: Fact) {
        let tenant = event.tenant.as_str();
        let day = event.occurred_at.date_naive();
        let key = (tenant.to_owned(), event.stream.id().to_owned());
        match fact {
            Fact::TicketOpened { customer } => {
                self.count(tenant, day, &customer, Counter::TicketsOpened, 1);
                self.tickets.insert(
                    key.clone(),
                    TicketOpening {
                        customer,
                        opened_at: event.occurred_at,
                    },
                );
                self.changed_tickets.insert(key);
            }
            Fact::TicketResolved => {
                let opening = self.tickets.get(&key).cloned();
                let customer = opening.as_ref().map_or("", |o| o.customer.as_str());
                self.count(tenant, day, customer, Counter::TicketsResolved, 1);
                if let Some(o) = opening {
                    let length = micros(o.opened_at, event.occurred_at);
                    *self
                        .durations
                        .entry((tenant.to_owned(), day, o.customer, length))
                        .or_default() += 1;
                }
            }
            Fact::TicketReopened => {
                let customer = self.tickets.get(&key).map(|o| o.customer.clone());
                let customer = customer.unwrap_or_default();
                self.count(tenant, day, &customer, Counter::TicketsReopened, 1);
            }
            Fact::EdgeRegistered { customer } => {
                self.edges.entry(key.clone()).or_default().customer = customer;
                self.changed_edges.insert(key);
            }
            Fact::EdgeWentOffline => {
                let edge = self.edges.entry(key.clone()).or_default();
                // Offline twice in a row: the outage began at the first.
                edge.offline_since.get_or_insert(event.occurred_at);
                self.changed_edges.insert(key);
            }
            Fact::EdgeCameOnline => {
                let edge = self.edges.entry(key.clone()).or_default();
                let since = edge.offline_since.take();
                let customer = edge.customer.clone();
                self.changed_edges.insert(key.clone());
                for (part_day, length) in since
                    .map(|s| split_by_day(s, event.occurred_at))
                    .unwrap_or_default()
                {
                    *self
                        .outages
                        .entry((tenant.to_owned(), part_day, customer.clone(), key.1.clone()))
                        .or_default() += length;
                }
            }
            Fact::Count(counter) => self.count(tenant, day, "", counter, 1),
            Fact::SessionStarted {
                customer,
                started_at,
            } => {
                self.count(tenant, day, &customer, Counter::SessionsStarted, 1);
                self.sessions.insert(
                    key.clone(),
                    SessionStart {
                        customer,
                        started_at,
                    },
                );
                self.changed_sessions.insert(key);
            }
            Fact::SessionEnded { ended_at } => match self.sessions.get(&key).cloned() {
                Some(start) => {
                    let c = &start.customer;
                    self.count(tenant, day, c, Counter::SessionsEnded, 1);
                    self.count(tenant, day, c, Counter::SessionsTimed, 1);
                    let length = micros(start.started_at, ended_at);
                    self.count(tenant, day, c, Counter::SessionMicros, length);
                }
                None => self.count(tenant, day, "", Counter::SessionsEnded, 1),
            },
        }
    }
}

/// The keys of the helper rows a batch needs from earlier batches.
#[derive(Default)]
pub(crate) struct Needed {
    pub(crate) tickets: HashSet<EntityKey>,
    pub(crate) edges: HashSet<EntityKey>,
    pub(crate) sessions: HashSet<EntityKey>,
}

impl Needed {
    pub(crate) fn of(facts: &[(&EventEnvelope, Fact)]) -> Self {
        let mut needed = Needed::default();
        for (event, fact) in facts {
            let key = || {
                (
                    event.tenant.as_str().to_owned(),
                    event.stream.id().to_owned(),
                )
            };
            match fact {
                Fact::TicketResolved | Fact::TicketReopened => {
                    needed.tickets.insert(key());
                }
                Fact::EdgeRegistered { .. } | Fact::EdgeWentOffline | Fact::EdgeCameOnline => {
                    needed.edges.insert(key());
                }
                Fact::SessionEnded { .. } => {
                    needed.sessions.insert(key());
                }
                _ => {}
            }
        }
        needed
    }
}

/// A column's type, as each backend spells it.
#[derive(Debug, Clone, Copy)]
enum Type {
    Text,
    Day,
    Int,
    Time,
    /// A nullable instant.
    MaybeTime,
}

/// The SQL of the backend a statistics table lives in. Postgres tables are
/// `{schema}.<table>`, SQLite ones `{prefix}<table>`: the functions below
/// take that qualifier (`"rm_statistics_g1."` or `"rm_statistics_g1_"`).
/// On SQLite a day is an INTEGER (`NaiveDate::num_days_from_ce`, which
/// orders like the days) and an instant is [`time_text`](crate::embedded::time_text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn type_name(self, ty: Type) -> &'static str {
        match (self, ty) {
            (Dialect::Postgres, Type::Text) => "text",
            (Dialect::Postgres, Type::Day) => "date",
            (Dialect::Postgres, Type::Int) => "bigint",
            (Dialect::Postgres, Type::Time | Type::MaybeTime) => "timestamptz",
            (Dialect::Sqlite, Type::Text | Type::Time | Type::MaybeTime) => "TEXT",
            (Dialect::Sqlite, Type::Day | Type::Int) => "INTEGER",
        }
    }

    /// The `n`th query parameter (from 1).
    fn param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    /// `expr` as a value of type `ty` (SQLite needs no cast).
    fn cast(self, expr: &str, ty: Type) -> String {
        match self {
            Dialect::Postgres => format!("{expr}::{}", self.type_name(ty)),
            Dialect::Sqlite => expr.to_owned(),
        }
    }
}

/// The statistics tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Daily,
    Durations,
    Outages,
    TicketOpenings,
    EdgeStates,
    SessionStarts,
}

/// The tables of a generation (without the schema or prefix).
pub(crate) const TABLES: &[&str] = &[
    Table::Daily.name(),
    Table::Durations.name(),
    Table::Outages.name(),
    Table::TicketOpenings.name(),
    Table::EdgeStates.name(),
    Table::SessionStarts.name(),
];

const ALL_TABLES: [Table; 6] = [
    Table::Daily,
    Table::Durations,
    Table::Outages,
    Table::TicketOpenings,
    Table::EdgeStates,
    Table::SessionStarts,
];

impl Table {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Table::Daily => "daily",
            Table::Durations => "resolution_durations",
            Table::Outages => "outages",
            Table::TicketOpenings => "ticket_openings",
            Table::EdgeStates => "edge_states",
            Table::SessionStarts => "session_starts",
        }
    }

    /// The primary key's columns.
    fn key(self) -> &'static [(&'static str, Type)] {
        const DAY: [(&str, Type); 3] = [
            ("tenant", Type::Text),
            ("day", Type::Day),
            ("customer", Type::Text),
        ];
        match self {
            Table::Daily => &DAY,
            Table::Durations => &[DAY[0], DAY[1], DAY[2], ("micros", Type::Int)],
            Table::Outages => &[DAY[0], DAY[1], DAY[2], ("edge", Type::Text)],
            Table::TicketOpenings => &[("tenant", Type::Text), ("ticket", Type::Text)],
            Table::EdgeStates => &[("tenant", Type::Text), ("edge", Type::Text)],
            Table::SessionStarts => &[("tenant", Type::Text), ("session", Type::Text)],
        }
    }

    /// The other columns.
    fn values(self) -> Vec<(&'static str, Type)> {
        match self {
            Table::Daily => COUNTER_COLUMNS.iter().map(|c| (*c, Type::Int)).collect(),
            Table::Durations => vec![("resolutions", Type::Int)],
            Table::Outages => vec![("micros", Type::Int)],
            Table::TicketOpenings => vec![("customer", Type::Text), ("opened_at", Type::Time)],
            Table::EdgeStates => vec![("customer", Type::Text), ("offline_since", Type::MaybeTime)],
            Table::SessionStarts => vec![("customer", Type::Text), ("started_at", Type::Time)],
        }
    }

    /// Whether an upsert adds to the stored values (the rollups) rather
    /// than replacing them (the helper rows).
    fn adds(self) -> bool {
        matches!(self, Table::Daily | Table::Durations | Table::Outages)
    }

    /// The id column of a helper table (keyed by tenant and id).
    pub(crate) fn id_column(self) -> &'static str {
        self.key()[1].0
    }

    /// The value columns, comma-separated, each prefixed with `alias`.
    pub(crate) fn value_columns(self, alias: &str) -> String {
        let columns: Vec<String> = self
            .values()
            .iter()
            .map(|(c, _)| format!("{alias}{c}"))
            .collect();
        columns.join(", ")
    }

    fn create_sql(self, dialect: Dialect, tables: &str) -> String {
        let columns: Vec<String> = self
            .key()
            .iter()
            .copied()
            .chain(self.values())
            .map(|(c, ty)| {
                let null = if matches!(ty, Type::MaybeTime) {
                    ""
                } else {
                    " NOT NULL"
                };
                format!("{c} {}{null}", dialect.type_name(ty))
            })
            .collect();
        let key: Vec<&str> = self.key().iter().map(|(c, _)| *c).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {tables}{} ({}, PRIMARY KEY ({}));",
            self.name(),
            columns.join(", "),
            key.join(", ")
        )
    }

    /// The upsert of rows: on Postgres from one array per column (`unnest`),
    /// on SQLite one row of parameters. The rollups add, the helper rows
    /// are replaced.
    pub(crate) fn upsert_sql(self, dialect: Dialect, tables: &str) -> String {
        let key: Vec<&str> = self.key().iter().map(|(c, _)| *c).collect();
        let all: Vec<(&str, Type)> = self.key().iter().copied().chain(self.values()).collect();
        let params = all
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| match dialect {
                Dialect::Postgres => format!("${}::{}[]", i + 1, dialect.type_name(*ty)),
                Dialect::Sqlite => dialect.param(i + 1),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let source = match dialect {
            Dialect::Postgres => format!("SELECT * FROM unnest({params})"),
            Dialect::Sqlite => format!("VALUES ({params})"),
        };
        let updates: Vec<String> = self
            .values()
            .iter()
            .map(|(c, _)| {
                if self.adds() {
                    format!("{c} = t.{c} + EXCLUDED.{c}")
                } else {
                    format!("{c} = EXCLUDED.{c}")
                }
            })
            .collect();
        let columns: Vec<&str> = all.iter().map(|(c, _)| *c).collect();
        format!(
            "INSERT INTO {tables}{} AS t ({}) {source} ON CONFLICT ({}) DO UPDATE SET {}",
            self.name(),
            columns.join(", "),
            key.join(", "),
            updates.join(", ")
        )
    }
}

/// Creates every table of a generation, `IF NOT EXISTS`.
pub(crate) fn ddl(dialect: Dialect, tables: &str) -> String {
    ALL_TABLES
        .iter()
        .map(|t| t.create_sql(dialect, tables))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits keys into the two text arrays `unnest` takes.
fn key_columns(keys: &HashSet<EntityKey>) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(t, id)| (t.as_str(), id.as_str())).unzip()
}

/// The helper rows of `table` (keyed by tenant and its id) for `keys`.
async fn load(
    tx: &Transaction<'_>,
    schema: &str,
    table: Table,
    keys: &HashSet<EntityKey>,
) -> Result<Vec<tokio_postgres::Row>, ProjectionError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids) = key_columns(keys);
    let sql = format!(
        "SELECT h.tenant, h.{id}, {columns} FROM {schema}.{table} h \
         JOIN unnest($1::text[], $2::text[]) AS k(tenant, id) \
         ON h.tenant = k.tenant AND h.{id} = k.id",
        id = table.id_column(),
        columns = table.value_columns("h."),
        table = table.name(),
    );
    Ok(tx.query(&sql, &[&tenants, &ids]).await?)
}

impl Fold {
    async fn load_helpers(
        &mut self,
        tx: &Transaction<'_>,
        schema: &str,
        needed: &Needed,
    ) -> Result<(), ProjectionError> {
        let key = |row: &tokio_postgres::Row| (row.get::<_, String>(0), row.get::<_, String>(1));
        for row in load(tx, schema, Table::TicketOpenings, &needed.tickets).await? {
            self.tickets.insert(
                key(&row),
                TicketOpening {
                    customer: row.get(2),
                    opened_at: row.get(3),
                },
            );
        }
        for row in load(tx, schema, Table::EdgeStates, &needed.edges).await? {
            self.edges.insert(
                key(&row),
                EdgeState {
                    customer: row.get(2),
                    offline_since: row.get(3),
                },
            );
        }
        for row in load(tx, schema, Table::SessionStarts, &needed.sessions).await? {
            self.sessions.insert(
                key(&row),
                SessionStart {
                    customer: row.get(2),
                    started_at: row.get(3),
                },
            );
        }
        Ok(())
    }

    async fn write(self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        let tables = format!("{schema}.");
        self.write_daily(tx, &tables).await?;
        self.write_durations(tx, &tables).await?;
        self.write_outages(tx, &tables).await?;
        self.write_helpers(tx, &tables).await
    }

    async fn write_daily(&self, tx: &Transaction<'_>, tables: &str) -> Result<(), ProjectionError> {
        if self.daily.is_empty() {
            return Ok(());
        }
        let mut tenants = Vec::new();
        let mut days = Vec::new();
        let mut customers = Vec::new();
        let mut counters: Vec<Vec<i64>> = vec![Vec::new(); COUNTER_COLUMNS.len()];
        for ((tenant, day, customer), values) in &self.daily {
            tenants.push(tenant.as_str());
            days.push(*day);
            customers.push(customer.as_str());
            for (column, value) in counters.iter_mut().zip(values) {
                column.push(*value);
            }
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenants, &days, &customers];
        params.extend(counters.iter().map(|c| c as &(dyn ToSql + Sync)));
        tx.execute(&Table::Daily.upsert_sql(Dialect::Postgres, tables), &params)
            .await?;
        Ok(())
    }

    async fn write_durations(
        &self,
        tx: &Transaction<'_>,
        tables: &str,
    ) -> Result<(), ProjectionError> {
        if self.durations.is_empty() {
            return Ok(());
        }
        let mut tenants = Vec::new();
        let mut days = Vec::new();
        let mut customers = Vec::new();
        let mut lengths = Vec::new();
        let mut counts = Vec::new();
        for ((tenant, day, customer, length), count) in &self.durations {
            tenants.push(tenant.as_str());
            days.push(*day);
            customers.push(customer.as_str());
            lengths.push(*length);
            counts.push(*count);
        }
        let sql = Table::Durations.upsert_sql(Dialect::Postgres, tables);
        tx.execute(&sql, &[&tenants, &days, &customers, &lengths, &counts])
            .await?;
        Ok(())
    }

    async fn write_outages(
        &self,
        tx: &Transaction<'_>,
        tables: &str,
    ) -> Result<(), ProjectionError> {
        if self.outages.is_empty() {
            return Ok(());
        }
        let mut tenants = Vec::new();
        let mut days = Vec::new();
        let mut customers = Vec::new();
        let mut edges = Vec::new();
        let mut lengths = Vec::new();
        for ((tenant, day, customer, edge), length) in &self.outages {
            tenants.push(tenant.as_str());
            days.push(*day);
            customers.push(customer.as_str());
            edges.push(edge.as_str());
            lengths.push(*length);
        }
        let sql = Table::Outages.upsert_sql(Dialect::Postgres, tables);
        tx.execute(&sql, &[&tenants, &days, &customers, &edges, &lengths])
            .await?;
        Ok(())
    }

    async fn write_helpers(
        &self,
        tx: &Transaction<'_>,
        tables: &str,
    ) -> Result<(), ProjectionError> {
        if !self.changed_tickets.is_empty() {
            let (tenants, ids) = key_columns(&self.changed_tickets);
            let (customers, times): (Vec<&str>, Vec<DateTime<Utc>>) = self
                .changed_tickets
                .iter()
                .map(|k| {
                    let o = &self.tickets[k];
                    (o.customer.as_str(), o.opened_at)
                })
                .unzip();
            let sql = Table::TicketOpenings.upsert_sql(Dialect::Postgres, tables);
            tx.execute(&sql, &[&tenants, &ids, &customers, &times])
                .await?;
        }
        if !self.changed_edges.is_empty() {
            let (tenants, ids) = key_columns(&self.changed_edges);
            let (customers, times): (Vec<&str>, Vec<Option<DateTime<Utc>>>) = self
                .changed_edges
                .iter()
                .map(|k| {
                    let e = &self.edges[k];
                    (e.customer.as_str(), e.offline_since)
                })
                .unzip();
            let sql = Table::EdgeStates.upsert_sql(Dialect::Postgres, tables);
            tx.execute(&sql, &[&tenants, &ids, &customers, &times])
                .await?;
        }
        if !self.changed_sessions.is_empty() {
            let (tenants, ids) = key_columns(&self.changed_sessions);
            let (customers, times): (Vec<&str>, Vec<DateTime<Utc>>) = self
                .changed_sessions
                .iter()
                .map(|k| {
                    let s = &self.sessions[k];
                    (s.customer.as_str(), s.started_at)
                })
                .unzip();
            let sql = Table::SessionStarts.upsert_sql(Dialect::Postgres, tables);
            tx.execute(&sql, &[&tenants, &ids, &customers, &times])
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for StatisticsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        accepts(event)
    }

    async fn setup(&self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        tx.batch_execute(&ddl(Dialect::Postgres, &format!("{schema}.")))
            .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let facts = facts(events)?;
        let mut fold = Fold::default();
        fold.load_helpers(tx, schema, &Needed::of(&facts)).await?;
        fold.absorb(facts);
        fold.write(tx, schema).await
    }
}

/// Which dimensions a query groups by; none gives one total row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub day: bool,
    pub customer: bool,
    /// Only outage minutes have an edge: grouped by edge, the outage
    /// minutes of each edge get rows of their own, and every other metric
    /// stays in the rows whose edge is null.
    pub edge: bool,
}

impl GroupBy {
    /// The dimensions one may name.
    pub const NAMES: [&'static str; 3] = ["day", "customer", "edge"];

    /// Reads `day,customer,edge` (any subset, comma-separated, each at most
    /// once; empty for none).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut group = GroupBy::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let flag = match name {
                "day" => &mut group.day,
                "customer" => &mut group.customer,
                "edge" => &mut group.edge,
                other => {
                    return Err(format!(
                        "group_by takes {}, not {:?}",
                        Self::NAMES.join(", "),
                        other.chars().take(32).collect::<String>()
                    ))
                }
            };
            if std::mem::replace(flag, true) {
                return Err(format!("group_by names {name} twice"));
            }
        }
        Ok(group)
    }

    /// The dimensions grouped by, in the order of [`Self::NAMES`].
    pub fn names(&self) -> Vec<&'static str> {
        [self.day, self.customer, self.edge]
            .into_iter()
            .zip(Self::NAMES)
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }

    /// The select list of the key columns (null where not grouped) and
    /// the GROUP BY clause, for a table with or without an edge column.
    fn sql(&self, dialect: Dialect, with_edge: bool) -> (String, String) {
        let mut select = Vec::new();
        let mut group = Vec::new();
        for (on, column, ty) in [
            (self.day, "day", Type::Day),
            (self.customer, "customer", Type::Text),
            (self.edge && with_edge, "edge", Type::Text),
        ] {
            if on {
                select.push(column.to_owned());
                group.push(column);
            } else {
                select.push(dialect.cast("NULL", ty));
            }
        }
        let group = if group.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {}", group.join(", "))
        };
        (select.join(", "), group)
    }
}

/// One row of a statistics query: the metrics of one group over the range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatisticsRow {
    /// The UTC day; present when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
    /// The customer (`""` for drafts, countdowns and sessions without
    /// one); present when grouped by customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The edge of the outage minutes; present when grouped by edge, on
    /// the rows of edges (the row without it holds every other metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    pub tickets_opened: i64,
    pub tickets_resolved: i64,
    pub tickets_reopened: i64,
    /// Resolutions whose ticket's opening is known (those timed).
    pub resolutions_timed: i64,
    /// Mean seconds from a ticket's opening to its resolution; null without
    /// resolutions.
    pub mean_time_to_resolve_secs: Option<f64>,
    /// The nearest-rank 90th percentile of those seconds (the value at rank
    /// ⌈0.9·n⌉ of the n durations sorted ascending); null without
    /// resolutions.
    pub p90_time_to_resolve_secs: Option<f64>,
    /// Minutes edges were offline (outages that have ended only).
    pub outage_minutes: f64,
    pub draft_autosaves: i64,
    pub drafts_published: i64,
    pub countdown_views: i64,
    pub sessions_started: i64,
    pub sessions_ended: i64,
    /// Seconds of the ended sessions whose start is known.
    pub session_seconds: f64,
    /// Mean seconds of those sessions; null without any.
    pub mean_session_secs: Option<f64>,
}

/// The key of a row: day, customer, edge (each null unless grouped).
pub(crate) type RowKey = (Option<NaiveDate>, Option<String>, Option<String>);

/// The nearest-rank 90th percentile of a histogram sorted by value
/// ascending: the value at rank ⌈0.9·n⌉ (from 1) of the n values.
fn p90(histogram: &[(i64, i64)]) -> Option<i64> {
    let n: i64 = histogram.iter().map(|(_, count)| count).sum();
    if n == 0 {
        return None;
    }
    let rank = (9 * n + 9) / 10;
    let mut seen = 0;
    histogram.iter().find_map(|(value, count)| {
        seen += count;
        (seen >= rank).then_some(*value)
    })
}

/// The three statements of a query, over the tables `{tables}<table>`;
/// their parameters are the tenant, the first and last days and the
/// customer (null for all). Each answers the row key (day, customer,
/// edge) in its first three columns, then:
/// - `daily`: the sums of [`COUNTER_COLUMNS`], in that order;
/// - `durations`: micros and resolutions, micros ascending;
/// - `outages`: the microseconds offline.
pub(crate) struct QuerySql {
    pub(crate) daily: String,
    pub(crate) durations: String,
    pub(crate) outages: String,
}

impl QuerySql {
    pub(crate) fn new(dialect: Dialect, tables: &str, group: GroupBy) -> Self {
        let p = |n| dialect.param(n);
        let filter = format!(
            "WHERE tenant = {} AND day BETWEEN {} AND {} AND ({} IS NULL OR customer = {})",
            p(1),
            p(2),
            p(3),
            dialect.cast(&p(4), Type::Text),
            p(4)
        );
        let sum = |column: &str| dialect.cast(&format!("sum({column})"), Type::Int);
        let (keys, group_sql) = group.sql(dialect, false);
        let sums: Vec<String> = COUNTER_COLUMNS.iter().map(|c| sum(c)).collect();
        // HAVING: ungrouped, an aggregate over no rows is still one row (of
        // nulls); the total row is added by `finish` anyway.
        let daily = format!(
            "SELECT {keys}, {} FROM {tables}daily {filter} {group_sql} HAVING count(*) > 0",
            sums.join(", ")
        );
        let with_micros = if group_sql.is_empty() {
            "GROUP BY micros".to_owned()
        } else {
            format!("{group_sql}, micros")
        };
        let durations = format!(
            "SELECT {keys}, micros, {} FROM {tables}resolution_durations \
             {filter} {with_micros} ORDER BY micros",
            sum("resolutions")
        );
        let (keys, group_sql) = group.sql(dialect, true);
        let outages = format!(
            "SELECT {keys}, {} FROM {tables}outages {filter} {group_sql} HAVING count(*) > 0",
            sum("micros")
        );
        QuerySql {
            daily,
            durations,
            outages,
        }
    }
}

/// Accumulates the rows of a query from the three tables.
#[derive(Default)]
pub(crate) struct Rows {
    counters: BTreeMap<RowKey, Counters>,
    /// Per row: (micros, resolutions), micros ascending.
    durations: BTreeMap<RowKey, Vec<(i64, i64)>>,
    outage_micros: BTreeMap<RowKey, i64>,
}

impl Rows {
    /// A row of [`QuerySql::daily`].
    pub(crate) fn add_counters(&mut self, key: RowKey, counters: Counters) {
        self.counters.insert(key, counters);
    }

    /// A row of [`QuerySql::durations`] (in their order).
    pub(crate) fn add_durations(&mut self, key: RowKey, micros: i64, resolutions: i64) {
        self.durations
            .entry(key)
            .or_default()
            .push((micros, resolutions));
    }

    /// A row of [`QuerySql::outages`].
    pub(crate) fn add_outage(&mut self, key: RowKey, micros: i64) {
        self.outage_micros.insert(key, micros);
    }

    pub(crate) fn finish(mut self, group: GroupBy) -> Vec<StatisticsRow> {
        let mut keys: Vec<RowKey> = self
            .counters
            .keys()
            .chain(self.durations.keys())
            .chain(self.outage_micros.keys())
            .cloned()
            .collect();
        if group == GroupBy::default() {
            // Ungrouped: one total row, zeros included.
            keys.push((None, None, None));
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                let c = self.counters.remove(&key).unwrap_or_default();
                let histogram = self.durations.remove(&key).unwrap_or_default();
                let outage = self.outage_micros.remove(&key).unwrap_or_default();
                let timed: i64 = histogram.iter().map(|(_, n)| n).sum();
                let total: i128 = histogram
                    .iter()
                    .map(|(m, n)| i128::from(*m) * i128::from(*n))
                    .sum();
                let secs = |micros: f64| micros / 1e6;
                let mean = |sum: f64, n: i64| (n > 0).then(|| secs(sum / n as f64));
                let (day, customer, edge) = key;
                StatisticsRow {
                    day,
                    customer,
                    edge,
                    tickets_opened: c[Counter::TicketsOpened as usize],
                    tickets_resolved: c[Counter::TicketsResolved as usize],
                    tickets_reopened: c[Counter::TicketsReopened as usize],
                    resolutions_timed: timed,
                    mean_time_to_resolve_secs: mean(total as f64, timed),
                    p90_time_to_resolve_secs: p90(&histogram).map(|m| secs(m as f64)),
                    outage_minutes: outage as f64 / 60e6,
                    draft_autosaves: c[Counter::DraftAutosaves as usize],
                    drafts_published: c[Counter::DraftsPublished as usize],
                    countdown_views: c[Counter::CountdownViews as usize],
                    sessions_started: c[Counter::SessionsStarted as usize],
                    sessions_ended: c[Counter::SessionsEnded as usize],
                    session_seconds: secs(c[Counter::SessionMicros as usize] as f64),
                    mean_session_secs: mean(
                        c[Counter::SessionMicros as usize] as f64,
                        c[Counter::SessionsTimed as usize],
                    ),
                }
            })
            .collect()
    }
}

fn row_key(row: &tokio_postgres::Row) -> RowKey {
    (row.get(0), row.get(1), row.get(2))
}

/// The statistics of `tenant` over the days `from` to `to` (both
/// included, UTC), grouped as asked, for one customer or all. Rows come
/// sorted by day, customer and edge; ungrouped, there is exactly one.
/// The range is not limited here: callers bound it (the HTTP API at
/// [`MAX_RANGE_DAYS`]).
pub async fn query(
    read_models: &ReadModels,
    tenant: &TenantId,
    from: NaiveDate,
    to: NaiveDate,
    group: GroupBy,
    customer: Option<&str>,
) -> Result<Vec<StatisticsRow>, ProjectionError> {
    let (mut client, schema) = read_models.serving(NAME).await?;
    // One snapshot for the three tables, so that a batch committed midway
    // cannot show in one metric and not in another.
    let client = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let params: [&(dyn ToSql + Sync); 4] = [&tenant.as_str(), &from, &to, &customer];
    let sql = QuerySql::new(Dialect::Postgres, &format!("{schema}."), group);
    let mut rows = Rows::default();
    for row in client.query(&sql.daily, &params).await? {
        let mut counters = Counters::default();
        for (i, value) in counters.iter_mut().enumerate() {
            *value = row.get(i + 3);
        }
        rows.add_counters(row_key(&row), counters);
    }
    for row in client.query(&sql.durations, &params).await? {
        rows.add_durations(row_key(&row), row.get(3), row.get(4));
    }
    for row in client.query(&sql.outages, &params).await? {
        rows.add_outage(row_key(&row), row.get(3));
    }
    client.commit().await?;
    Ok(rows.finish(group))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_outage_across_midnight_is_split_between_the_days() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            split_by_day(at("2026-03-01T23:30:00Z"), at("2026-03-03T00:15:00Z")),
            [
                (day("2026-03-01"), 30 * 60_000_000),
                (day("2026-03-02"), 24 * 60 * 60_000_000),
                (day("2026-03-03"), 15 * 60_000_000),
            ]
        );
        assert_eq!(
            split_by_day(at("2026-03-01T10:00:00Z"), at("2026-03-01T10:00:00.5Z")),
            [(day("2026-03-01"), 500_000)]
        );
        assert!(split_by_day(at("2026-03-02T00:00:00Z"), at("2026-03-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        assert_eq!(p90(&[]), None);
        assert_eq!(p90(&[(7, 1)]), Some(7));
        // Ten values 1..=10: rank 9.
        let ten: Vec<(i64, i64)> = (1..=10).map(|v| (v, 1)).collect();
        assert_eq!(p90(&ten), Some(9));
        // Eleven: rank ⌈9.9⌉ = 10.
        let eleven: Vec<(i64, i64)> = (1..=11).map(|v| (v, 1)).collect();
        assert_eq!(p90(&eleven), Some(10));
        // Counts weigh: 9 × 1 and 1 × 100 → rank 9 is 1.
        assert_eq!(p90(&[(1, 9), (100, 1)]), Some(1));
        assert_eq!(p90(&[(1, 8), (100, 2)]), Some(100));
    }

    #[test]
    fn group_by_reads_any_subset_once() {
        assert_eq!(GroupBy::parse("").unwrap(), GroupBy::default());
        let all = GroupBy::parse("edge, day,customer").unwrap();
        assert_eq!(all.names(), ["day", "customer", "edge"]);
        assert!(GroupBy::parse("day,day").is_err());
        assert!(GroupBy::parse("week").is_err());
    }
}
