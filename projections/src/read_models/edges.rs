//! The edges read model: every edge device's current state (registration,
//! reported state, last contact, degraded links, thresholds) and its
//! incidents (outages and degraded links, open until they end), projected
//! from `edges.*` events, and the queries that list and show them, on
//! either database.
//!
//! Unlike tickets, an edge's row exists from its first event: status reports
//! may be published (by an ingest pipeline) before the provisioning system
//! registers the device, and what they tell is real; such a row shows
//! `registered: false` and no customer until the registration arrives.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use herald_events::edges::{
    EdgeCameOnline, EdgeDecommissioned, EdgeRegistered, EdgeState, EdgeStatusReported,
    EdgeThresholdsSet, EdgeWentOffline, LinkDegraded, LinkRecovered, OutageConfirmed, DOMAIN,
};
use herald_events::envelope::to_stored_precision;
use herald_events::{EventEnvelope, TenantId, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{paginate, Cursor, Page, SortOrder};
use crate::sql::{
    decode, read_model, serve, Cell, Column, Db, DecodedBatch, Dialect, Index, OnConflict, RowKey,
    RowReader, Rows, Serving, Table, Type,
};
use crate::ProjectionError;

/// The projection's name (checkpoint, schema prefix, metric label).
pub const NAME: &str = "edges";

/// How many ended incidents an edge's detail shows, newest first.
pub const RECENT_INCIDENTS: usize = 20;

/// The snake_case name of an edge state, as its events write it.
/// Every edge state.
pub const STATES: [EdgeState; 3] = [EdgeState::Online, EdgeState::Offline, EdgeState::Degraded];

pub fn state_name(state: EdgeState) -> &'static str {
    match state {
        EdgeState::Online => "online",
        EdgeState::Offline => "offline",
        EdgeState::Degraded => "degraded",
    }
}

/// The edge state named `text` (`online`, `offline` or `degraded`).
pub fn parse_state(text: &str) -> Option<EdgeState> {
    STATES.into_iter().find(|s| state_name(*s) == text)
}

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// The edge was offline.
    Outage,
    /// One of its links was beyond a threshold.
    LinkDegraded,
}

impl IncidentKind {
    fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Outage => "outage",
            IncidentKind::LinkDegraded => "link_degraded",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Outage, Self::LinkDegraded]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// Projects `edges.*` events into the `edges` and `incidents` tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct EdgesProjection;

read_model!(EdgesProjection);

/// The version of the tables' shape and of the fold.
const VERSION: u32 = 1;

const TABLE_NAMES: &[&str] = &["edges", "incidents"];

const TABLES: &[&Table] = &[&EDGES, &INCIDENTS];

const EDGES: Table = Table {
    name: "edges",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("id", Type::Text),
        Column::new("registered", Type::Bool),
        Column::new("customer", Type::Text).null(),
        Column::new("serial", Type::Text).null(),
        Column::new("site", Type::Text).null(),
        Column::new("state", Type::Text),
        Column::new("last_contact_at", Type::Time).null(),
        Column::new("offline_since", Type::Time).null(),
        Column::new("decommissioned", Type::Bool),
        Column::new("decommissioned_at", Type::Time).null(),
        Column::new("latency_ms", Type::Real).null(),
        Column::new("jitter_ms", Type::Real).null(),
        Column::new("packet_loss_pct", Type::Real).null(),
        // A JSON array per edge: unnest would flatten a text[][] into rows.
        Column::new("degraded_links", Type::Json),
        Column::new("open_incidents", Type::Int),
        Column::new("registered_at", Type::Time).null(),
        Column::new("updated_at", Type::Time),
        Column::new("version", Type::Int),
    ],
    key: 2,
    // The key of the `last_contact_at` sort (see `EdgeSort::key`).
    indexes: &[Index {
        name: "edges_by_last_contact",
        on: "tenant, (COALESCE(last_contact_at, {earliest})), id",
    }],
    on_conflict: OnConflict::Replace,
};

/// An incident written again ends, or is confirmed.
const INCIDENTS: Table = Table {
    name: "incidents",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("edge_id", Type::Text),
        Column::new("seq", Type::Int),
        Column::new("kind", Type::Text),
        Column::new("link", Type::Text).null(),
        Column::new("started_at", Type::Time),
        Column::new("ended_at", Type::Time).null(),
        Column::new("confirmed_at", Type::Time).null(),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Update(&["ended_at", "confirmed_at"]),
};

/// Whether the edges read model reads `event`.
fn accepts(event: &EventEnvelope) -> bool {
    event.event_type.domain() == DOMAIN && event.stream.domain().as_str() == DOMAIN
}

/// The state an edge that never reported counts as (the edge aggregate's
/// `ASSUMED_INITIAL_STATE`): reachable since its registration.
const ASSUMED_STATE: EdgeState = EdgeState::Online;

/// A row of `edges`.
#[derive(Debug, Clone)]
struct EdgeRow {
    tenant: String,
    id: String,
    registered: bool,
    customer: Option<String>,
    serial: Option<String>,
    site: Option<String>,
    state: EdgeState,
    last_contact_at: Option<DateTime<Utc>>,
    offline_since: Option<DateTime<Utc>>,
    decommissioned: bool,
    decommissioned_at: Option<DateTime<Utc>>,
    thresholds: Option<EdgeThresholdsSet>,
    degraded_links: BTreeSet<String>,
    registered_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    version: i64,
}

fn corrupt(table: &'static str, what: &'static str, value: &str) -> ProjectionError {
    crate::Corruption::UnknownValue {
        table,
        what,
        value: value.to_owned(),
    }
    .into()
}

impl EdgeRow {
    fn new(tenant: &str, id: &str, at: DateTime<Utc>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            registered: false,
            customer: None,
            serial: None,
            site: None,
            state: ASSUMED_STATE,
            last_contact_at: None,
            offline_since: None,
            decommissioned: false,
            decommissioned_at: None,
            thresholds: None,
            degraded_links: BTreeSet::new(),
            registered_at: None,
            updated_at: at,
            version: 0,
        }
    }

    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        let state = row.text("state")?;
        let thresholds = match (
            row.real_opt("latency_ms")?,
            row.real_opt("jitter_ms")?,
            row.real_opt("packet_loss_pct")?,
        ) {
            (Some(latency_ms), Some(jitter_ms), Some(packet_loss_pct)) => Some(EdgeThresholdsSet {
                latency_ms,
                jitter_ms,
                packet_loss_pct,
            }),
            _ => None,
        };
        Ok(Self {
            tenant: row.text("tenant")?,
            id: row.text("id")?,
            registered: row.flag("registered")?,
            customer: row.text_opt("customer")?,
            serial: row.text_opt("serial")?,
            site: row.text_opt("site")?,
            state: parse_state(&state).ok_or_else(|| corrupt("edges", "state", &state))?,
            last_contact_at: row.time_opt("last_contact_at")?,
            offline_since: row.time_opt("offline_since")?,
            decommissioned: row.flag("decommissioned")?,
            decommissioned_at: row.time_opt("decommissioned_at")?,
            thresholds,
            degraded_links: serde_json::from_value(row.json("degraded_links")?)
                .map_err(|_| corrupt("edges", "degraded_links", "(not a list of names)"))?,
            registered_at: row.time_opt("registered_at")?,
            updated_at: row.time("updated_at")?,
            version: row.int("version")?,
        })
    }

    /// The degraded links as stored: a JSON array of names.
    fn links_json(&self) -> Value {
        Value::from_iter(self.degraded_links.iter().cloned())
    }
}

/// A row of `incidents`: identified by its edge and `seq`, the stream
/// version of the event that began it.
#[derive(Debug, Clone)]
struct IncidentRow {
    seq: i64,
    kind: IncidentKind,
    link: Option<String>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
}

impl IncidentRow {
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        let kind = row.text("kind")?;
        Ok(Self {
            seq: row.int("seq")?,
            kind: IncidentKind::parse(&kind).ok_or_else(|| corrupt("incidents", "kind", &kind))?,
            link: row.text_opt("link")?,
            started_at: row.time("started_at")?,
            ended_at: row.time_opt("ended_at")?,
            confirmed_at: row.time_opt("confirmed_at")?,
        })
    }
}

/// A decoded `edges.*` event.
#[derive(Debug)]
enum Change {
    Registered(EdgeRegistered),
    StatusReported(EdgeStatusReported),
    WentOffline,
    CameOnline,
    LinkDegraded(String),
    LinkRecovered(String),
    ThresholdsSet(EdgeThresholdsSet),
    Decommissioned,
    OutageConfirmed(u64),
}

impl Change {
    /// `None` for an event type this model does not know (a newer one).
    fn of(event: &EventEnvelope) -> Result<Option<Self>, ProjectionError> {
        let change = match event.event_type.name() {
            EdgeRegistered::NAME => Change::Registered(decode(event)?),
            EdgeStatusReported::NAME => Change::StatusReported(decode(event)?),
            EdgeWentOffline::NAME => {
                decode::<EdgeWentOffline>(event)?;
                Change::WentOffline
            }
            EdgeCameOnline::NAME => {
                decode::<EdgeCameOnline>(event)?;
                Change::CameOnline
            }
            LinkDegraded::NAME => Change::LinkDegraded(decode::<LinkDegraded>(event)?.link),
            LinkRecovered::NAME => Change::LinkRecovered(decode::<LinkRecovered>(event)?.link),
            EdgeThresholdsSet::NAME => Change::ThresholdsSet(decode(event)?),
            EdgeDecommissioned::NAME => {
                decode::<EdgeDecommissioned>(event)?;
                Change::Decommissioned
            }
            OutageConfirmed::NAME => {
                Change::OutageConfirmed(decode::<OutageConfirmed>(event)?.offline_since_version)
            }
            _ => return Ok(None),
        };
        Ok(Some(change))
    }
}

/// An edge during the fold of a batch: its row, its open incidents, and the
/// incidents that ended in this batch (still to be written).
#[derive(Debug)]
struct EdgeFold {
    edge: EdgeRow,
    open: Vec<IncidentRow>,
    ended: Vec<IncidentRow>,
}

/// The edges a batch touched, as stored (those that were), by key.
type StoredEdges = HashMap<RowKey, EdgeFold>;

impl EdgeFold {
    /// A stored edge, before its open incidents are added.
    fn stored(edge: EdgeRow) -> Self {
        Self {
            edge,
            open: Vec::new(),
            ended: Vec::new(),
        }
    }

    /// Adds a stored open incident of the edge of `tenant` and `edge_id`,
    /// if it is among `edges`.
    fn add_open(edges: &mut StoredEdges, tenant: String, edge_id: String, incident: IncidentRow) {
        if let Some(fold) = edges.get_mut(&(tenant, edge_id)) {
            fold.open.push(incident);
        }
    }

    /// Folds a batch's events over the stored state of their edges; an
    /// edge not stored yet starts at its first event.
    fn fold_batch(mut folds: StoredEdges, changes: &[(&EventEnvelope, Change)]) -> Vec<EdgeFold> {
        for (event, change) in changes {
            let (tenant, id) = (event.tenant.as_str(), event.stream.id());
            let fold = folds
                .entry((tenant.to_owned(), id.to_owned()))
                .or_insert_with(|| EdgeFold::stored(EdgeRow::new(tenant, id, event.occurred_at)));
            fold.apply(change, event.stream_version.get() as i64, event.occurred_at);
        }
        folds.into_values().collect()
    }

    /// Every incident to write: the open ones and those that ended in the
    /// batch.
    fn incidents(&self) -> impl Iterator<Item = &IncidentRow> {
        self.open.iter().chain(&self.ended)
    }

    fn open_incident(
        &mut self,
        kind: IncidentKind,
        link: Option<String>,
        seq: i64,
        at: DateTime<Utc>,
    ) {
        let already = self.open.iter().any(|i| i.kind == kind && i.link == link);
        if !already {
            self.open.push(IncidentRow {
                seq,
                kind,
                link,
                started_at: at,
                ended_at: None,
                confirmed_at: None,
            });
        }
    }

    /// Ends the open incidents `which` picks.
    fn end_incidents(&mut self, at: DateTime<Utc>, which: impl Fn(&IncidentRow) -> bool) {
        let (ending, open): (Vec<_>, Vec<_>) = self.open.drain(..).partition(|i| which(i));
        self.open = open;
        self.ended.extend(ending.into_iter().map(|i| IncidentRow {
            ended_at: Some(at),
            ..i
        }));
    }

    fn apply(&mut self, change: &Change, seq: i64, at: DateTime<Utc>) {
        let edge = &mut self.edge;
        match change {
            Change::Registered(e) => {
                edge.registered = true;
                edge.customer = Some(e.customer.clone());
                edge.serial = Some(e.serial.clone());
                edge.site = Some(e.site.clone());
                edge.registered_at.get_or_insert(at);
            }
            Change::StatusReported(e) => {
                edge.state = e.state;
                // At the precision instants are stored at (a report's own
                // time may be finer), so that both backends keep the same.
                let contact = to_stored_precision(e.reported_at.unwrap_or(at));
                edge.last_contact_at =
                    Some(edge.last_contact_at.map_or(contact, |t| t.max(contact)));
            }
            Change::WentOffline => {
                edge.state = EdgeState::Offline;
                edge.offline_since.get_or_insert(at);
                self.open_incident(IncidentKind::Outage, None, seq, at);
            }
            Change::CameOnline => {
                // The report that brought it back set its state already;
                // without one, back means up.
                if edge.state == EdgeState::Offline {
                    edge.state = EdgeState::Online;
                }
                edge.offline_since = None;
                self.end_incidents(at, |i| i.kind == IncidentKind::Outage);
            }
            Change::LinkDegraded(link) => {
                edge.degraded_links.insert(link.clone());
                self.open_incident(IncidentKind::LinkDegraded, Some(link.clone()), seq, at);
            }
            Change::LinkRecovered(link) => {
                edge.degraded_links.remove(link);
                self.end_incidents(at, |i| {
                    i.kind == IncidentKind::LinkDegraded && i.link.as_ref() == Some(link)
                });
            }
            Change::ThresholdsSet(t) => edge.thresholds = Some(*t),
            Change::Decommissioned => {
                edge.decommissioned = true;
                edge.decommissioned_at.get_or_insert(at);
                // Nobody watches a decommissioned edge: what was open ends.
                self.end_incidents(at, |_| true);
            }
            Change::OutageConfirmed(version) => {
                let outage = self
                    .open
                    .iter_mut()
                    .find(|i| i.kind == IncidentKind::Outage && i.seq == *version as i64);
                if let Some(outage) = outage {
                    outage.confirmed_at.get_or_insert(at);
                }
            }
        }
        self.edge.updated_at = at;
        self.edge.version = self.edge.version.max(seq);
    }
}

/// Writes the effect of a batch: loads the edges it touches with their open
/// incidents, folds its events over them, and writes the edges and every
/// incident that is open or ended in the batch.
async fn apply(db: &impl Db, events: &[EventEnvelope]) -> Result<(), ProjectionError> {
    let batch = DecodedBatch::decode(events, Change::of)?;
    if batch.keys.is_empty() {
        return Ok(());
    }
    let mut stored = StoredEdges::new();
    for edge in db
        .load(&EDGES, "id", &batch.keys, "", "", EdgeRow::from_row)
        .await?
    {
        stored.insert(
            (edge.tenant.clone(), edge.id.clone()),
            EdgeFold::stored(edge),
        );
    }
    let open = db
        .load(
            &INCIDENTS,
            "edge_id",
            &batch.keys,
            "ended_at IS NULL",
            "ORDER BY seq",
            |row| {
                Ok((
                    row.text("tenant")?,
                    row.text("edge_id")?,
                    IncidentRow::from_row(row)?,
                ))
            },
        )
        .await?;
    for (tenant, edge_id, incident) in open {
        EdgeFold::add_open(&mut stored, tenant, edge_id, incident);
    }
    let folds = EdgeFold::fold_batch(stored, &batch.changes);
    let mut edges = Rows::new(&EDGES);
    let mut incidents = Rows::new(&INCIDENTS);
    for fold in &folds {
        let e = &fold.edge;
        edges.push([
            (&e.tenant).into(),
            (&e.id).into(),
            e.registered.into(),
            (&e.customer).into(),
            (&e.serial).into(),
            (&e.site).into(),
            state_name(e.state).into(),
            e.last_contact_at.into(),
            e.offline_since.into(),
            e.decommissioned.into(),
            e.decommissioned_at.into(),
            e.thresholds.map(|t| t.latency_ms).into(),
            e.thresholds.map(|t| t.jitter_ms).into(),
            e.thresholds.map(|t| t.packet_loss_pct).into(),
            e.links_json().into(),
            (fold.open.len() as i64).into(),
            e.registered_at.into(),
            e.updated_at.into(),
            e.version.into(),
        ]);
        for i in fold.incidents() {
            incidents.push([
                (&e.tenant).into(),
                (&e.id).into(),
                i.seq.into(),
                i.kind.as_str().into(),
                (&i.link).into(),
                i.started_at.into(),
                i.ended_at.into(),
                i.confirmed_at.into(),
            ]);
        }
    }
    db.upsert(&edges).await?;
    db.upsert(&incidents).await
}

// ---------------------------------------------------------------- queries

/// The limits beyond which the edge's links count as degraded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct EdgeThresholds {
    pub latency_ms: f64,
    pub jitter_ms: f64,
    pub packet_loss_pct: f64,
}

/// An edge as the list and the detail show it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EdgeView {
    /// The edge's id (its stream is `edges/{id}`).
    pub id: String,
    /// Whether `edge_registered` was seen (reports may come first).
    pub registered: bool,
    pub customer: Option<String>,
    /// The device's serial number.
    pub serial: Option<String>,
    /// Where the device is installed.
    pub site: Option<String>,
    /// `online`, `offline` or `degraded`: the latest report's (or
    /// transition's); `online` before any report.
    #[schema(example = "online")]
    pub state: String,
    /// The time of the latest status report (its `reported_at`, else when
    /// it occurred); `null` if it never reported.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// When it went offline, while it is.
    pub offline_since: Option<DateTime<Utc>>,
    pub decommissioned: bool,
    pub decommissioned_at: Option<DateTime<Utc>>,
    /// Its own thresholds; `null`: the defaults.
    pub thresholds: Option<EdgeThresholds>,
    /// The links beyond a threshold now, by name.
    pub degraded_links: Vec<String>,
    /// How many of its incidents are open.
    pub open_incidents: u64,
    pub registered_at: Option<DateTime<Utc>>,
    /// When its latest event occurred.
    pub updated_at: DateTime<Utc>,
    /// The stream version of its latest event.
    pub version: u64,
}

impl EdgeRow {
    fn view(self, open_incidents: u64) -> EdgeView {
        let e = self;
        EdgeView {
            id: e.id,
            registered: e.registered,
            customer: e.customer,
            serial: e.serial,
            site: e.site,
            state: state_name(e.state).to_owned(),
            last_contact_at: e.last_contact_at,
            offline_since: e.offline_since,
            decommissioned: e.decommissioned,
            decommissioned_at: e.decommissioned_at,
            thresholds: e.thresholds.map(|t| EdgeThresholds {
                latency_ms: t.latency_ms,
                jitter_ms: t.jitter_ms,
                packet_loss_pct: t.packet_loss_pct,
            }),
            degraded_links: e.degraded_links.into_iter().collect(),
            open_incidents,
            registered_at: e.registered_at,
            updated_at: e.updated_at,
            version: e.version as u64,
        }
    }
}

/// An outage or a degraded link of an edge.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EdgeIncident {
    /// The stream version of the event that began it (unique per edge).
    pub seq: u64,
    pub kind: IncidentKind,
    /// The degraded link's name (`link_degraded` incidents).
    pub link: Option<String>,
    pub started_at: DateTime<Utc>,
    /// `null` while it is open.
    pub ended_at: Option<DateTime<Utc>>,
    /// When the outage monitor confirmed an outage.
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl EdgeIncident {
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        IncidentRow::from_row(row).map(Self::from)
    }
}

impl From<IncidentRow> for EdgeIncident {
    fn from(i: IncidentRow) -> Self {
        Self {
            seq: i.seq as u64,
            kind: i.kind,
            link: i.link,
            started_at: i.started_at,
            ended_at: i.ended_at,
            confirmed_at: i.confirmed_at,
        }
    }
}

/// An edge with its open incidents (oldest first) and its latest ended
/// ones (at most [`RECENT_INCIDENTS`], newest first).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EdgeDetail {
    pub edge: EdgeView,
    pub open_incidents: Vec<EdgeIncident>,
    pub recent_incidents: Vec<EdgeIncident>,
}

/// What an edge list is ordered by (then by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdgeSort {
    #[default]
    Id,
    /// Edges that never reported come first in ascending order.
    LastContactAt,
}

impl EdgeSort {
    /// The `sort` values, the default first.
    pub const NAMES: &'static [&'static str] = &["id", "last_contact_at"];

    pub fn as_str(self) -> &'static str {
        match self {
            EdgeSort::Id => "id",
            EdgeSort::LastContactAt => "last_contact_at",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Id, Self::LastContactAt]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// The sort key in SQL: never NULL, so that row comparisons order
    /// edges that never reported (first, as the earliest contact).
    fn key(self, dialect: Dialect) -> String {
        match self {
            EdgeSort::Id => "id".to_owned(),
            EdgeSort::LastContactAt => {
                format!("COALESCE(last_contact_at, {})", dialect.earliest())
            }
        }
    }

    /// The cursor value of `edge` for this sort.
    fn value(self, edge: &EdgeView) -> Value {
        match self {
            EdgeSort::Id => Value::String(edge.id.clone()),
            EdgeSort::LastContactAt => edge.last_contact_at.map_or(Value::Null, |t| {
                Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
            }),
        }
    }
}

/// A page of a tenant's edges: filters (all optional, combined with and),
/// sort, order, size and where to start.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeQuery {
    pub state: Option<EdgeState>,
    pub customer: Option<String>,
    pub site: Option<String>,
    /// Only edges with (`true`) or without (`false`) an open incident.
    pub has_open_incident: Option<bool>,
    pub sort: EdgeSort,
    pub order: SortOrder,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for EdgeQuery {
    fn default() -> Self {
        Self {
            state: None,
            customer: None,
            site: None,
            has_open_incident: None,
            sort: EdgeSort::default(),
            order: SortOrder::default(),
            limit: 50,
            cursor: None,
        }
    }
}

/// The last-contact time a `last_contact_at` cursor points after (`None`:
/// an edge that never reported).
fn contact_after(cursor: &Cursor) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    match &cursor.value {
        Value::Null => Ok(None),
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad_cursor()),
        _ => Err(bad_cursor()),
    }
}

fn bad_cursor() -> ProjectionError {
    crate::QueryFault::ForeignCursor.into()
}

fn edge_view(row: &dyn RowReader) -> Result<EdgeView, ProjectionError> {
    let open_incidents = row.int("open_incidents")?;
    Ok(EdgeRow::from_row(row)?.view(open_incidents as u64))
}

/// Where a page starts after its cursor: the last edge's id, and (for the
/// `last_contact_at` sort) its last contact, `None` when it never reported.
struct After<'a> {
    id: Option<&'a str>,
    contact: Option<DateTime<Utc>>,
}

impl EdgeQuery {
    /// The statement of a page, on either backend. Its parameters: the
    /// tenant, the four filters (state, customer, site, has an open
    /// incident; NULL when absent), the cursor's sort value and id (NULL
    /// without a cursor) and the row limit.
    fn sql(&self, db: &impl Db) -> String {
        let dialect = db.dialect();
        let p = |n, ty| dialect.param(n, ty);
        let edges = db.table("edges");
        let key = self.sort.key(dialect);
        let (direction, beyond) = (self.order.sql(), self.order.after());
        // The id sort compares (id, id): the same row comparison serves
        // both, with the cursor's value typed for its sort.
        let cursor_key = match self.sort {
            EdgeSort::Id => p(6, Type::Text),
            EdgeSort::LastContactAt => {
                format!("COALESCE({}, {})", p(6, Type::Time), dialect.earliest())
            }
        };
        format!(
            "SELECT {} FROM {edges}
             WHERE tenant = {}
               AND ({} IS NULL OR state = {})
               AND ({} IS NULL OR customer = {})
               AND ({} IS NULL OR site = {})
               AND ({} IS NULL OR (open_incidents > 0) = {})
               AND ({} IS NULL OR ({key}, id) {beyond} ({cursor_key}, {}))
             ORDER BY {key} {direction}, id {direction}
             LIMIT {}",
            EDGES.column_list(),
            p(1, Type::Text),
            p(2, Type::Text),
            p(2, Type::Text),
            p(3, Type::Text),
            p(3, Type::Text),
            p(4, Type::Text),
            p(4, Type::Text),
            p(5, Type::Bool),
            p(5, Type::Bool),
            p(7, Type::Text),
            p(7, Type::Text),
            p(8, Type::Int),
        )
    }

    /// Where the page starts.
    fn after(&self) -> Result<After<'_>, ProjectionError> {
        let contact = match (&self.cursor, self.sort) {
            (Some(cursor), EdgeSort::LastContactAt) => contact_after(cursor)?,
            _ => None,
        };
        Ok(After {
            id: self.cursor.as_ref().map(|c| c.id.as_str()),
            contact,
        })
    }

    /// The page of the `limit + 1` edges the statement found.
    fn page(&self, edges: Vec<EdgeView>) -> Page<EdgeView> {
        let sort = self.sort;
        paginate(edges, self.limit, |e| Cursor {
            sort: sort.as_str().to_owned(),
            value: sort.value(e),
            id: e.id.clone(),
        })
    }
}

/// A page of `tenant`'s edges.
pub async fn list<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &TenantId,
    query: &EdgeQuery,
) -> Result<Page<EdgeView>, ProjectionError> {
    let after = query.after()?;
    let cursor_value: Cell = match query.sort {
        EdgeSort::Id => after.id.into(),
        EdgeSort::LastContactAt => after.contact.into(),
    };
    let params: Vec<Cell> = vec![
        tenant.as_str().into(),
        query.state.map(state_name).into(),
        query.customer.clone().into(),
        query.site.clone().into(),
        query.has_open_incident.into(),
        cursor_value,
        after.id.into(),
        (query.limit as i64 + 1).into(),
    ];
    let query = query.clone();
    serve!(read_models.into(), NAME, |db| async move {
        let edges = db.rows(&query.sql(db), &params, edge_view).await?;
        Ok(query.page(edges))
    })
}

/// `tenant`'s edge `id` with its open and recent incidents; `None` when
/// there is no such edge.
pub async fn get<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<EdgeDetail>, ProjectionError> {
    let key: Vec<Cell> = vec![tenant.as_str().into(), id.into()];
    // One snapshot, so the edge's count of open incidents is the list shown.
    serve!(
        read_models.into(),
        NAME,
        snapshot
            | db
            | async move {
                let dialect = db.dialect();
                let (tenant, id) = (dialect.param(1, Type::Text), dialect.param(2, Type::Text));
                let (incidents, columns) = (db.table("incidents"), INCIDENTS.column_list());
                let of_edge = format!("WHERE tenant = {tenant} AND edge_id = {id}");
                let sql = format!(
                    "SELECT {} FROM {} WHERE tenant = {tenant} AND id = {id}",
                    EDGES.column_list(),
                    db.table("edges")
                );
                let Some(edge) = db.row(&sql, &key, edge_view).await? else {
                    return Ok(None);
                };
                let sql = format!(
                    "SELECT {columns} FROM {incidents} {of_edge} AND ended_at IS NULL ORDER BY seq"
                );
                let open_incidents = db.rows(&sql, &key, EdgeIncident::from_row).await?;
                let sql = format!(
                    "SELECT {columns} FROM {incidents} {of_edge} AND ended_at IS NOT NULL
             ORDER BY ended_at DESC, seq DESC LIMIT {}",
                    dialect.param(3, Type::Int)
                );
                let mut recent = key.clone();
                recent.push((RECENT_INCIDENTS as i64).into());
                let recent_incidents = db.rows(&sql, &recent, EdgeIncident::from_row).await?;
                Ok::<_, ProjectionError>(Some(EdgeDetail {
                    edge,
                    open_incidents,
                    recent_incidents,
                }))
            }
    )
}
