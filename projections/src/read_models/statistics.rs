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

use chrono::{DateTime, Days, NaiveDate, Utc};
use herald_events::{drafts, edges, statistics, tickets, timers};
use herald_events::{EventEnvelope, TenantId, TypedEvent};
use serde::Serialize;

use crate::sql::{
    decode, read_model, serve, Cell, Column, Db, Dialect, OnConflict, RowReader, Rows, Serving,
    Table, Type,
};
use crate::ProjectionError;

/// The projection's name.
pub const NAME: &str = "statistics";

/// The version of the tables' shape and of the fold (both backends).
const VERSION: u32 = 1;

/// The longest range of days one query may cover.
pub const MAX_RANGE_DAYS: u64 = 366;

/// The daily counters, in the order of [`COUNTER_COLUMNS`].
#[derive(Debug, Clone, Copy)]
enum Counter {
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
const COUNTER_COLUMNS: [&str; 10] = [
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

type Counters = [i64; COUNTER_COLUMNS.len()];

/// Rolls up the other domains' events per tenant, customer and day.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatisticsProjection;

/// What one accepted event means to the statistics.
enum Fact {
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
fn accepts(event: &EventEnvelope) -> bool {
    ACCEPTED.contains(&event.event_type.as_str())
}

/// What a batch's events mean, every payload read before anything is
/// counted, so that a poison event fails the batch before any work.
fn facts(events: &[EventEnvelope]) -> Result<Vec<(&EventEnvelope, Fact)>, ProjectionError> {
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
type EntityKey = (String, String);

#[derive(Debug, Clone)]
struct TicketOpening {
    customer: String,
    opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
struct EdgeState {
    customer: String,
    offline_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct SessionStart {
    customer: String,
    started_at: DateTime<Utc>,
}

/// A batch's effect, folded in memory: deltas of the rollups, and the
/// helper rows it read and changed.
///
/// Both backends fold the same way: load the helper rows the batch's
/// facts need ([`Needed::of`]) into `tickets`, `edges` and `sessions`,
/// [`absorb`](Fold::absorb) the facts, then add the deltas to the rollups
/// and upsert the changed helper rows.
#[derive(Default)]
struct Fold {
    daily: HashMap<(String, NaiveDate, String), Counters>,
    /// (tenant, day, customer, micros) → resolutions of that length.
    durations: HashMap<(String, NaiveDate, String, i64), i64>,
    /// (tenant, day, customer, edge) → microseconds offline.
    outages: HashMap<(String, NaiveDate, String, String), i64>,
    tickets: HashMap<EntityKey, TicketOpening>,
    edges: HashMap<EntityKey, EdgeState>,
    sessions: HashMap<EntityKey, SessionStart>,
    changed_tickets: HashSet<EntityKey>,
    changed_edges: HashSet<EntityKey>,
    changed_sessions: HashSet<EntityKey>,
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
    fn absorb(&mut self, facts: Vec<(&EventEnvelope, Fact)>) {
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
struct Needed {
    tickets: HashSet<EntityKey>,
    edges: HashSet<EntityKey>,
    sessions: HashSet<EntityKey>,
}

impl Needed {
    fn of(facts: &[(&EventEnvelope, Fact)]) -> Self {
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

/// The tables of a generation (without the schema or prefix).
const TABLE_NAMES: &[&str] = &[
    "daily",
    "resolution_durations",
    "outages",
    "ticket_openings",
    "edge_states",
    "session_starts",
];

const TABLES: &[&Table] = &[
    &DAILY,
    &DURATIONS,
    &OUTAGES,
    &TICKET_OPENINGS,
    &EDGE_STATES,
    &SESSION_STARTS,
];

const fn counter(name: &'static str) -> Column {
    Column::new(name, Type::Int)
}

/// The rollups add what a batch counted to what is stored.
const DAILY: Table = Table {
    name: "daily",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("day", Type::Day),
        Column::new("customer", Type::Text),
        counter(COUNTER_COLUMNS[0]),
        counter(COUNTER_COLUMNS[1]),
        counter(COUNTER_COLUMNS[2]),
        counter(COUNTER_COLUMNS[3]),
        counter(COUNTER_COLUMNS[4]),
        counter(COUNTER_COLUMNS[5]),
        counter(COUNTER_COLUMNS[6]),
        counter(COUNTER_COLUMNS[7]),
        counter(COUNTER_COLUMNS[8]),
        counter(COUNTER_COLUMNS[9]),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Add,
};

const DURATIONS: Table = Table {
    name: "resolution_durations",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("day", Type::Day),
        Column::new("customer", Type::Text),
        Column::new("micros", Type::Int),
        Column::new("resolutions", Type::Int),
    ],
    key: 4,
    indexes: &[],
    on_conflict: OnConflict::Add,
};

const OUTAGES: Table = Table {
    name: "outages",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("day", Type::Day),
        Column::new("customer", Type::Text),
        Column::new("edge", Type::Text),
        Column::new("micros", Type::Int),
    ],
    key: 4,
    indexes: &[],
    on_conflict: OnConflict::Add,
};

/// The helper rows are replaced.
const TICKET_OPENINGS: Table = Table {
    name: "ticket_openings",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("ticket", Type::Text),
        Column::new("customer", Type::Text),
        Column::new("opened_at", Type::Time),
    ],
    key: 2,
    indexes: &[],
    on_conflict: OnConflict::Replace,
};

const EDGE_STATES: Table = Table {
    name: "edge_states",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("edge", Type::Text),
        Column::new("customer", Type::Text),
        Column::new("offline_since", Type::Time).null(),
    ],
    key: 2,
    indexes: &[],
    on_conflict: OnConflict::Replace,
};

const SESSION_STARTS: Table = Table {
    name: "session_starts",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("session", Type::Text),
        Column::new("customer", Type::Text),
        Column::new("started_at", Type::Time),
    ],
    key: 2,
    indexes: &[],
    on_conflict: OnConflict::Replace,
};

read_model!(StatisticsProjection);

/// The entity key of a helper row (tenant, then the table's id column).
fn entity_key(row: &dyn RowReader, id: &str) -> Result<EntityKey, ProjectionError> {
    Ok((row.text("tenant")?, row.text(id)?))
}

/// Writes the effect of a batch: loads the helper rows its facts need,
/// folds them, adds the deltas to the rollups and upserts the changed
/// helper rows.
async fn apply(db: &impl Db, events: &[EventEnvelope]) -> Result<(), ProjectionError> {
    let facts = facts(events)?;
    let needed = Needed::of(&facts);
    let mut fold = Fold::default();
    let sorted = |keys: &HashSet<EntityKey>| keys.iter().cloned().collect::<Vec<_>>();
    for (key, opening) in db
        .load(
            &TICKET_OPENINGS,
            "ticket",
            &sorted(&needed.tickets),
            "",
            "",
            |row| {
                Ok((
                    entity_key(row, "ticket")?,
                    TicketOpening {
                        customer: row.text("customer")?,
                        opened_at: row.time("opened_at")?,
                    },
                ))
            },
        )
        .await?
    {
        fold.tickets.insert(key, opening);
    }
    for (key, state) in db
        .load(
            &EDGE_STATES,
            "edge",
            &sorted(&needed.edges),
            "",
            "",
            |row| {
                Ok((
                    entity_key(row, "edge")?,
                    EdgeState {
                        customer: row.text("customer")?,
                        offline_since: row.time_opt("offline_since")?,
                    },
                ))
            },
        )
        .await?
    {
        fold.edges.insert(key, state);
    }
    for (key, start) in db
        .load(
            &SESSION_STARTS,
            "session",
            &sorted(&needed.sessions),
            "",
            "",
            |row| {
                Ok((
                    entity_key(row, "session")?,
                    SessionStart {
                        customer: row.text("customer")?,
                        started_at: row.time("started_at")?,
                    },
                ))
            },
        )
        .await?
    {
        fold.sessions.insert(key, start);
    }
    fold.absorb(facts);
    for rows in fold.rows() {
        db.upsert(&rows).await?;
    }
    Ok(())
}

impl Fold {
    /// The rows a batch writes: its deltas of the rollups and its changed
    /// helper rows.
    fn rows(self) -> [Rows; 6] {
        let mut daily = Rows::new(&DAILY);
        for ((tenant, day, customer), counters) in self.daily {
            let mut row: [Cell; 13] = std::array::from_fn(|_| Cell::Int(None));
            row[0] = tenant.into();
            row[1] = day.into();
            row[2] = customer.into();
            for (cell, value) in row[3..].iter_mut().zip(counters) {
                *cell = value.into();
            }
            daily.push(row);
        }
        let mut durations = Rows::new(&DURATIONS);
        for ((tenant, day, customer, micros), resolutions) in self.durations {
            durations.push([
                tenant.into(),
                day.into(),
                customer.into(),
                micros.into(),
                resolutions.into(),
            ]);
        }
        let mut outages = Rows::new(&OUTAGES);
        for ((tenant, day, customer, edge), micros) in self.outages {
            outages.push([
                tenant.into(),
                day.into(),
                customer.into(),
                edge.into(),
                micros.into(),
            ]);
        }
        let mut tickets = Rows::new(&TICKET_OPENINGS);
        for key in &self.changed_tickets {
            let o = &self.tickets[key];
            tickets.push([
                (&key.0).into(),
                (&key.1).into(),
                (&o.customer).into(),
                o.opened_at.into(),
            ]);
        }
        let mut edges = Rows::new(&EDGE_STATES);
        for key in &self.changed_edges {
            let e = &self.edges[key];
            edges.push([
                (&key.0).into(),
                (&key.1).into(),
                (&e.customer).into(),
                e.offline_since.into(),
            ]);
        }
        let mut sessions = Rows::new(&SESSION_STARTS);
        for key in &self.changed_sessions {
            let s = &self.sessions[key];
            sessions.push([
                (&key.0).into(),
                (&key.1).into(),
                (&s.customer).into(),
                s.started_at.into(),
            ]);
        }
        [daily, durations, outages, tickets, edges, sessions]
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
                select.push(format!("{} AS {column}", dialect.cast("NULL", ty)));
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
type RowKey = (Option<NaiveDate>, Option<String>, Option<String>);

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

/// The three statements of a query; their parameters are the tenant, the
/// first and last days and the customer (null for all). Each answers the
/// row key (`day`, `customer`, `edge`), then:
/// - `daily`: the sums of [`COUNTER_COLUMNS`], under their names;
/// - `durations`: `micros` and `resolutions`, micros ascending;
/// - `outages`: the microseconds offline, `micros`.
struct QuerySql {
    daily: String,
    durations: String,
    outages: String,
}

impl QuerySql {
    fn new(db: &impl Db, group: GroupBy) -> Self {
        let dialect = db.dialect();
        let filter = format!(
            "WHERE tenant = {} AND day BETWEEN {} AND {} AND ({} IS NULL OR customer = {})",
            dialect.param(1, Type::Text),
            dialect.param(2, Type::Day),
            dialect.param(3, Type::Day),
            dialect.param(4, Type::Text),
            dialect.param(4, Type::Text),
        );
        let sum = |column: &str| {
            format!(
                "{} AS {column}",
                dialect.cast(&format!("sum({column})"), Type::Int)
            )
        };
        let (keys, group_sql) = group.sql(dialect, false);
        let sums: Vec<String> = COUNTER_COLUMNS.iter().map(|c| sum(c)).collect();
        // HAVING: ungrouped, an aggregate over no rows is still one row (of
        // nulls); the total row is added by `finish` anyway.
        let daily = format!(
            "SELECT {keys}, {} FROM {} {filter} {group_sql} HAVING count(*) > 0",
            sums.join(", "),
            db.table(DAILY.name)
        );
        let with_micros = if group_sql.is_empty() {
            "GROUP BY micros".to_owned()
        } else {
            format!("{group_sql}, micros")
        };
        let durations = format!(
            "SELECT {keys}, micros, {} FROM {} {filter} {with_micros} ORDER BY micros",
            sum("resolutions"),
            db.table(DURATIONS.name)
        );
        let (keys, group_sql) = group.sql(dialect, true);
        let outages = format!(
            "SELECT {keys}, {} FROM {} {filter} {group_sql} HAVING count(*) > 0",
            sum("micros"),
            db.table(OUTAGES.name)
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
struct Answer {
    counters: BTreeMap<RowKey, Counters>,
    /// Per row: (micros, resolutions), micros ascending.
    durations: BTreeMap<RowKey, Vec<(i64, i64)>>,
    outage_micros: BTreeMap<RowKey, i64>,
}

impl Answer {
    /// A row of [`QuerySql::daily`].
    fn add_counters(&mut self, key: RowKey, counters: Counters) {
        self.counters.insert(key, counters);
    }

    /// A row of [`QuerySql::durations`] (in their order).
    fn add_durations(&mut self, key: RowKey, micros: i64, resolutions: i64) {
        self.durations
            .entry(key)
            .or_default()
            .push((micros, resolutions));
    }

    /// A row of [`QuerySql::outages`].
    fn add_outage(&mut self, key: RowKey, micros: i64) {
        self.outage_micros.insert(key, micros);
    }

    fn finish(mut self, group: GroupBy) -> Vec<StatisticsRow> {
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

fn row_key(row: &dyn RowReader) -> Result<RowKey, ProjectionError> {
    Ok((
        row.day_opt("day")?,
        row.text_opt("customer")?,
        row.text_opt("edge")?,
    ))
}

/// The statistics of `tenant` over the days `from` to `to` (both
/// included, UTC), grouped as asked, for one customer or all. Rows come
/// sorted by day, customer and edge; ungrouped, there is exactly one.
/// The range is not limited here: callers bound it (the HTTP API at
/// [`MAX_RANGE_DAYS`]).
pub async fn query<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &TenantId,
    from: NaiveDate,
    to: NaiveDate,
    group: GroupBy,
    customer: Option<&str>,
) -> Result<Vec<StatisticsRow>, ProjectionError> {
    let params: Vec<Cell> = vec![
        tenant.as_str().into(),
        from.into(),
        to.into(),
        customer.into(),
    ];
    // One snapshot for the three tables, so that a batch committed midway
    // cannot show in one metric and not in another.
    serve!(
        read_models.into(),
        NAME,
        snapshot
            | db
            | async move {
                let sql = QuerySql::new(db, group);
                let mut answer = Answer::default();
                let daily = db
                    .rows(&sql.daily, &params, |row| {
                        let mut counters = Counters::default();
                        for (value, column) in counters.iter_mut().zip(COUNTER_COLUMNS) {
                            *value = row.int(column)?;
                        }
                        Ok((row_key(row)?, counters))
                    })
                    .await?;
                for (key, counters) in daily {
                    answer.add_counters(key, counters);
                }
                let durations = db
                    .rows(&sql.durations, &params, |row| {
                        Ok((row_key(row)?, row.int("micros")?, row.int("resolutions")?))
                    })
                    .await?;
                for (key, micros, resolutions) in durations {
                    answer.add_durations(key, micros, resolutions);
                }
                let outages = db
                    .rows(&sql.outages, &params, |row| {
                        Ok((row_key(row)?, row.int("micros")?))
                    })
                    .await?;
                for (key, micros) in outages {
                    answer.add_outage(key, micros);
                }
                Ok::<_, ProjectionError>(answer.finish(group))
            }
    )
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
    fn every_statement_prepares_on_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let prefix = "rm_statistics_g1_";
        let ddl = crate::sql::ddl(Dialect::Sqlite, prefix, TABLES);
        conn.execute_batch(&ddl).unwrap();
        conn.execute_batch(&ddl).unwrap();
        for table in TABLES {
            conn.prepare(&table.upsert_sql(Dialect::Sqlite, prefix))
                .unwrap();
        }
        let db = crate::sql::Lite::new(&conn, prefix);
        for day in [false, true] {
            for customer in [false, true] {
                for edge in [false, true] {
                    let group = GroupBy {
                        day,
                        customer,
                        edge,
                    };
                    let sql = QuerySql::new(&db, group);
                    for statement in [sql.daily, sql.durations, sql.outages] {
                        conn.prepare(&statement).unwrap();
                    }
                }
            }
        }
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
