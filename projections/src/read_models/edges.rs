//! The edges read model: every edge device's current state (registration,
//! reported state, last contact, degraded links, thresholds) and its
//! incidents (outages and degraded links, open until they end), projected
//! from `edges.*` events, and the queries that list and show them.
//!
//! Unlike tickets, an edge's row exists from its first event: status reports
//! may be published (by an ingest pipeline) before the provisioning system
//! registers the device, and what they tell is real; such a row shows
//! `registered: false` and no customer until the registration arrives.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use herald_events::edges::{
    EdgeCameOnline, EdgeDecommissioned, EdgeRegistered, EdgeState, EdgeStatusReported,
    EdgeThresholdsSet, EdgeWentOffline, LinkDegraded, LinkRecovered, OutageConfirmed, DOMAIN,
};
use herald_events::envelope::to_stored_precision;
use herald_events::{EventEnvelope, TenantId, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Transaction};
use utoipa::ToSchema;

use super::tickets::{DecodedBatch, Dialect, RowKey, StoredRow};
use super::{paginate, Cursor, Page, SortOrder};
use crate::{Projection, ProjectionError, ReadModels};

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
    pub(super) fn as_str(self) -> &'static str {
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

const TABLES: &[&str] = &["edges", "incidents"];

pub(super) const EDGE_COLUMNS: &str = "tenant, id, registered, customer, serial, site, state, \
    last_contact_at, offline_since, decommissioned, decommissioned_at, latency_ms, jitter_ms, \
    packet_loss_pct, degraded_links, open_incidents, registered_at, updated_at, version";

/// What an upsert of [`EDGE_COLUMNS`] does to a stored edge.
pub(super) const EDGE_UPSERT: &str = "ON CONFLICT (tenant, id) DO UPDATE SET \
    registered = EXCLUDED.registered, customer = EXCLUDED.customer, serial = EXCLUDED.serial, \
    site = EXCLUDED.site, state = EXCLUDED.state, last_contact_at = EXCLUDED.last_contact_at, \
    offline_since = EXCLUDED.offline_since, decommissioned = EXCLUDED.decommissioned, \
    decommissioned_at = EXCLUDED.decommissioned_at, latency_ms = EXCLUDED.latency_ms, \
    jitter_ms = EXCLUDED.jitter_ms, packet_loss_pct = EXCLUDED.packet_loss_pct, \
    degraded_links = EXCLUDED.degraded_links, open_incidents = EXCLUDED.open_incidents, \
    registered_at = EXCLUDED.registered_at, updated_at = EXCLUDED.updated_at, \
    version = EXCLUDED.version";

pub(super) const INCIDENT_COLUMNS: &str =
    "tenant, edge_id, seq, kind, link, started_at, ended_at, confirmed_at";

/// What an upsert of [`INCIDENT_COLUMNS`] does to a stored incident: it
/// ends, or is confirmed.
pub(super) const INCIDENT_UPSERT: &str = "ON CONFLICT (tenant, edge_id, seq) DO UPDATE SET \
    ended_at = EXCLUDED.ended_at, confirmed_at = EXCLUDED.confirmed_at";

/// The state an edge that never reported counts as (the edge aggregate's
/// `ASSUMED_INITIAL_STATE`): reachable since its registration.
const ASSUMED_STATE: EdgeState = EdgeState::Online;

/// A row of `edges`.
#[derive(Debug, Clone)]
pub(super) struct EdgeRow {
    pub(super) tenant: String,
    pub(super) id: String,
    pub(super) registered: bool,
    pub(super) customer: Option<String>,
    pub(super) serial: Option<String>,
    pub(super) site: Option<String>,
    pub(super) state: EdgeState,
    pub(super) last_contact_at: Option<DateTime<Utc>>,
    pub(super) offline_since: Option<DateTime<Utc>>,
    pub(super) decommissioned: bool,
    pub(super) decommissioned_at: Option<DateTime<Utc>>,
    pub(super) thresholds: Option<EdgeThresholdsSet>,
    pub(super) degraded_links: BTreeSet<String>,
    pub(super) registered_at: Option<DateTime<Utc>>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) version: i64,
}

fn corrupt(table: &str, what: &str, value: &str) -> ProjectionError {
    ProjectionError::Rejected(format!(
        "the {table} table holds an unknown {what} {value:?}"
    ))
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

    pub(super) fn from_row(row: &impl StoredRow) -> Result<Self, ProjectionError> {
        let state = row.text("state")?;
        let thresholds = match (
            row.maybe_real("latency_ms")?,
            row.maybe_real("jitter_ms")?,
            row.maybe_real("packet_loss_pct")?,
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
            customer: row.maybe_text("customer")?,
            serial: row.maybe_text("serial")?,
            site: row.maybe_text("site")?,
            state: parse_state(&state).ok_or_else(|| corrupt("edges", "state", &state))?,
            last_contact_at: row.maybe_time("last_contact_at")?,
            offline_since: row.maybe_time("offline_since")?,
            decommissioned: row.flag("decommissioned")?,
            decommissioned_at: row.maybe_time("decommissioned_at")?,
            thresholds,
            degraded_links: serde_json::from_value(row.json("degraded_links")?)
                .map_err(|_| corrupt("edges", "degraded_links", "(not a list of names)"))?,
            registered_at: row.maybe_time("registered_at")?,
            updated_at: row.time("updated_at")?,
            version: row.int("version")?,
        })
    }

    /// The degraded links as stored: a JSON array of names.
    pub(super) fn links_json(&self) -> Value {
        Value::from_iter(self.degraded_links.iter().cloned())
    }
}

/// A row of `incidents`: identified by its edge and `seq`, the stream
/// version of the event that began it.
#[derive(Debug, Clone)]
pub(super) struct IncidentRow {
    pub(super) seq: i64,
    pub(super) kind: IncidentKind,
    pub(super) link: Option<String>,
    pub(super) started_at: DateTime<Utc>,
    pub(super) ended_at: Option<DateTime<Utc>>,
    pub(super) confirmed_at: Option<DateTime<Utc>>,
}

impl IncidentRow {
    pub(super) fn from_row(row: &impl StoredRow) -> Result<Self, ProjectionError> {
        let kind = row.text("kind")?;
        Ok(Self {
            seq: row.int("seq")?,
            kind: IncidentKind::parse(&kind).ok_or_else(|| corrupt("incidents", "kind", &kind))?,
            link: row.maybe_text("link")?,
            started_at: row.time("started_at")?,
            ended_at: row.maybe_time("ended_at")?,
            confirmed_at: row.maybe_time("confirmed_at")?,
        })
    }
}

/// A decoded `edges.*` event.
#[derive(Debug)]
pub(super) enum Change {
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

/// The payload of `event` as `T`; a payload that does not fit is the
/// event's fault (the runner parks it).
fn payload<T: TypedEvent>(event: &EventEnvelope) -> Result<T, ProjectionError> {
    T::deserialize(&event.payload).map_err(|e| {
        ProjectionError::Rejected(format!(
            "{} at position {}: the payload does not fit the schema: {e}",
            event.event_type, event.position
        ))
    })
}

impl Change {
    /// `None` for an event type this model does not know (a newer one).
    pub(super) fn of(event: &EventEnvelope) -> Result<Option<Self>, ProjectionError> {
        let change = match event.event_type.name() {
            EdgeRegistered::NAME => Change::Registered(payload(event)?),
            EdgeStatusReported::NAME => Change::StatusReported(payload(event)?),
            EdgeWentOffline::NAME => {
                payload::<EdgeWentOffline>(event)?;
                Change::WentOffline
            }
            EdgeCameOnline::NAME => {
                payload::<EdgeCameOnline>(event)?;
                Change::CameOnline
            }
            LinkDegraded::NAME => Change::LinkDegraded(payload::<LinkDegraded>(event)?.link),
            LinkRecovered::NAME => Change::LinkRecovered(payload::<LinkRecovered>(event)?.link),
            EdgeThresholdsSet::NAME => Change::ThresholdsSet(payload(event)?),
            EdgeDecommissioned::NAME => {
                payload::<EdgeDecommissioned>(event)?;
                Change::Decommissioned
            }
            OutageConfirmed::NAME => {
                Change::OutageConfirmed(payload::<OutageConfirmed>(event)?.offline_since_version)
            }
            _ => return Ok(None),
        };
        Ok(Some(change))
    }
}

/// An edge during the fold of a batch: its row, its open incidents, and the
/// incidents that ended in this batch (still to be written).
#[derive(Debug)]
pub(super) struct EdgeFold {
    pub(super) edge: EdgeRow,
    pub(super) open: Vec<IncidentRow>,
    pub(super) ended: Vec<IncidentRow>,
}

/// The edges a batch touched, as stored (those that were), by key.
pub(super) type StoredEdges = HashMap<RowKey, EdgeFold>;

impl EdgeFold {
    /// A stored edge, before its open incidents are added.
    pub(super) fn stored(edge: EdgeRow) -> Self {
        Self {
            edge,
            open: Vec::new(),
            ended: Vec::new(),
        }
    }

    /// Adds a stored open incident of the edge of `tenant` and `edge_id`,
    /// if it is among `edges`.
    pub(super) fn add_open(
        edges: &mut StoredEdges,
        tenant: String,
        edge_id: String,
        incident: IncidentRow,
    ) {
        if let Some(fold) = edges.get_mut(&(tenant, edge_id)) {
            fold.open.push(incident);
        }
    }

    /// Folds a batch's events over the stored state of their edges; an
    /// edge not stored yet starts at its first event.
    pub(super) fn fold_batch(
        mut folds: StoredEdges,
        changes: &[(&EventEnvelope, Change)],
    ) -> Vec<EdgeFold> {
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
    pub(super) fn incidents(&self) -> impl Iterator<Item = &IncidentRow> {
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

/// The stored rows and open incidents of the edges `keys` names.
async fn stored_edges(
    tx: &Transaction<'_>,
    schema: &str,
    keys: &[RowKey],
) -> Result<StoredEdges, ProjectionError> {
    let (tenants, ids): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(t, i)| (t.as_str(), i.as_str())).unzip();
    let mut edges = HashMap::new();
    for row in tx
        .query(
            &format!(
                "SELECT {EDGE_COLUMNS} FROM {schema}.edges
                 WHERE (tenant, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
            ),
            &[&tenants, &ids],
        )
        .await?
    {
        let edge = EdgeRow::from_row(&row)?;
        edges.insert(
            (edge.tenant.clone(), edge.id.clone()),
            EdgeFold::stored(edge),
        );
    }
    for row in tx
        .query(
            &format!(
                "SELECT {INCIDENT_COLUMNS} FROM {schema}.incidents
                 WHERE ended_at IS NULL
                   AND (tenant, edge_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                 ORDER BY seq"
            ),
            &[&tenants, &ids],
        )
        .await?
    {
        let incident = IncidentRow::from_row(&row)?;
        EdgeFold::add_open(&mut edges, row.get("tenant"), row.get("edge_id"), incident);
    }
    Ok(edges)
}

async fn write_edges(
    tx: &Transaction<'_>,
    schema: &str,
    folds: &[EdgeFold],
) -> Result<(), ProjectionError> {
    let edges = || folds.iter().map(|f| &f.edge);
    let tenant: Vec<&str> = edges().map(|e| e.tenant.as_str()).collect();
    let id: Vec<&str> = edges().map(|e| e.id.as_str()).collect();
    let registered: Vec<bool> = edges().map(|e| e.registered).collect();
    let customer: Vec<Option<&str>> = edges().map(|e| e.customer.as_deref()).collect();
    let serial: Vec<Option<&str>> = edges().map(|e| e.serial.as_deref()).collect();
    let site: Vec<Option<&str>> = edges().map(|e| e.site.as_deref()).collect();
    let state: Vec<&str> = edges().map(|e| state_name(e.state)).collect();
    let last_contact_at: Vec<_> = edges().map(|e| e.last_contact_at).collect();
    let offline_since: Vec<_> = edges().map(|e| e.offline_since).collect();
    let decommissioned: Vec<bool> = edges().map(|e| e.decommissioned).collect();
    let decommissioned_at: Vec<_> = edges().map(|e| e.decommissioned_at).collect();
    let latency_ms: Vec<_> = edges()
        .map(|e| e.thresholds.map(|t| t.latency_ms))
        .collect();
    let jitter_ms: Vec<_> = edges().map(|e| e.thresholds.map(|t| t.jitter_ms)).collect();
    let packet_loss_pct: Vec<_> = edges()
        .map(|e| e.thresholds.map(|t| t.packet_loss_pct))
        .collect();
    // A JSON array per edge: unnest would flatten a text[][] into rows.
    let degraded_links: Vec<Value> = edges().map(EdgeRow::links_json).collect();
    let open_incidents: Vec<i64> = folds.iter().map(|f| f.open.len() as i64).collect();
    let registered_at: Vec<_> = edges().map(|e| e.registered_at).collect();
    let updated_at: Vec<_> = edges().map(|e| e.updated_at).collect();
    let version: Vec<i64> = edges().map(|e| e.version).collect();
    let columns: [&(dyn ToSql + Sync); 19] = [
        &tenant,
        &id,
        &registered,
        &customer,
        &serial,
        &site,
        &state,
        &last_contact_at,
        &offline_since,
        &decommissioned,
        &decommissioned_at,
        &latency_ms,
        &jitter_ms,
        &packet_loss_pct,
        &degraded_links,
        &open_incidents,
        &registered_at,
        &updated_at,
        &version,
    ];
    tx.execute(
        &format!(
            "INSERT INTO {schema}.edges ({EDGE_COLUMNS})
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::timestamptz[], $9::timestamptz[], $10::bool[],
                         $11::timestamptz[], $12::float8[], $13::float8[], $14::float8[],
                         $15::jsonb[], $16::bigint[], $17::timestamptz[], $18::timestamptz[],
                         $19::bigint[])
             {EDGE_UPSERT}"
        ),
        &columns,
    )
    .await?;
    Ok(())
}

/// Writes every open incident of the folded edges and those that ended in
/// the batch (new ones are inserted, the others get their end and
/// confirmation).
async fn write_incidents(
    tx: &Transaction<'_>,
    schema: &str,
    folds: &[EdgeFold],
) -> Result<(), ProjectionError> {
    let incidents: Vec<(&EdgeRow, &IncidentRow)> = folds
        .iter()
        .flat_map(|f| f.incidents().map(move |i| (&f.edge, i)))
        .collect();
    if incidents.is_empty() {
        return Ok(());
    }
    let tenant: Vec<&str> = incidents.iter().map(|(e, _)| e.tenant.as_str()).collect();
    let edge_id: Vec<&str> = incidents.iter().map(|(e, _)| e.id.as_str()).collect();
    let seq: Vec<i64> = incidents.iter().map(|(_, i)| i.seq).collect();
    let kind: Vec<&str> = incidents.iter().map(|(_, i)| i.kind.as_str()).collect();
    let link: Vec<Option<&str>> = incidents.iter().map(|(_, i)| i.link.as_deref()).collect();
    let started_at: Vec<_> = incidents.iter().map(|(_, i)| i.started_at).collect();
    let ended_at: Vec<_> = incidents.iter().map(|(_, i)| i.ended_at).collect();
    let confirmed_at: Vec<_> = incidents.iter().map(|(_, i)| i.confirmed_at).collect();
    tx.execute(
        &format!(
            "INSERT INTO {schema}.incidents ({INCIDENT_COLUMNS})
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])
             {INCIDENT_UPSERT}"
        ),
        &[
            &tenant,
            &edge_id,
            &seq,
            &kind,
            &link,
            &started_at,
            &ended_at,
            &confirmed_at,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for EdgesProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.event_type.domain() == DOMAIN && event.stream.domain().as_str() == DOMAIN
    }

    async fn setup(&self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.edges (
                tenant text NOT NULL,
                id text NOT NULL,
                registered boolean NOT NULL,
                customer text,
                serial text,
                site text,
                state text NOT NULL,
                last_contact_at timestamptz,
                offline_since timestamptz,
                decommissioned boolean NOT NULL,
                decommissioned_at timestamptz,
                latency_ms double precision,
                jitter_ms double precision,
                packet_loss_pct double precision,
                degraded_links jsonb NOT NULL,
                open_incidents bigint NOT NULL,
                registered_at timestamptz,
                updated_at timestamptz NOT NULL,
                version bigint NOT NULL,
                PRIMARY KEY (tenant, id)
            );
            CREATE INDEX IF NOT EXISTS edges_by_last_contact
                ON {schema}.edges (tenant, (COALESCE(last_contact_at, '-infinity')), id);
            CREATE TABLE IF NOT EXISTS {schema}.incidents (
                tenant text NOT NULL,
                edge_id text NOT NULL,
                seq bigint NOT NULL,
                kind text NOT NULL,
                link text,
                started_at timestamptz NOT NULL,
                ended_at timestamptz,
                confirmed_at timestamptz,
                PRIMARY KEY (tenant, edge_id, seq)
            );"
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
        let batch = DecodedBatch::decode(events, Change::of)?;
        if batch.keys.is_empty() {
            return Ok(());
        }
        let stored = stored_edges(tx, schema, &batch.keys).await?;
        let folds = EdgeFold::fold_batch(stored, &batch.changes);
        write_edges(tx, schema, &folds).await?;
        write_incidents(tx, schema, &folds).await?;
        Ok(())
    }
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
    pub(super) fn view(self, open_incidents: u64) -> EdgeView {
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
    pub(super) fn from_row(row: &impl StoredRow) -> Result<Self, ProjectionError> {
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
    pub(super) fn key(self, dialect: Dialect) -> String {
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
    ProjectionError::Rejected(
        "the cursor does not point into this list; pass the next_cursor of an earlier answer \
         unchanged"
            .into(),
    )
}

pub(super) fn edge_view(row: &impl StoredRow) -> Result<EdgeView, ProjectionError> {
    let open_incidents = row.int("open_incidents")?;
    Ok(EdgeRow::from_row(row)?.view(open_incidents as u64))
}

/// Where a page starts after its cursor: the last edge's id, and (for the
/// `last_contact_at` sort) its last contact, `None` when it never reported.
pub(super) struct After<'a> {
    pub(super) id: Option<&'a str>,
    pub(super) contact: Option<DateTime<Utc>>,
}

impl EdgeQuery {
    /// The statement of a page, on either backend. Its parameters: the
    /// tenant, the four filters (state, customer, site, has an open
    /// incident; NULL when absent), the cursor's sort value and id (NULL
    /// without a cursor) and the row limit.
    pub(super) fn sql(&self, dialect: Dialect, at: &str) -> String {
        let p = |n, ty| dialect.param(n, ty);
        let edges = dialect.table(at, "edges");
        let key = self.sort.key(dialect);
        let (direction, beyond) = (self.order.sql(), self.order.after());
        // The id sort compares (id, id): the same row comparison serves
        // both, with the cursor's value typed for its sort.
        let cursor_key = match self.sort {
            EdgeSort::Id => p(6, "text"),
            EdgeSort::LastContactAt => {
                format!("COALESCE({}, {})", p(6, "timestamptz"), dialect.earliest())
            }
        };
        format!(
            "SELECT {EDGE_COLUMNS} FROM {edges}
             WHERE tenant = {}
               AND ({} IS NULL OR state = {})
               AND ({} IS NULL OR customer = {})
               AND ({} IS NULL OR site = {})
               AND ({} IS NULL OR (open_incidents > 0) = {})
               AND ({} IS NULL OR ({key}, id) {beyond} ({cursor_key}, {}))
             ORDER BY {key} {direction}, id {direction}
             LIMIT {}",
            p(1, "text"),
            p(2, "text"),
            p(2, "text"),
            p(3, "text"),
            p(3, "text"),
            p(4, "text"),
            p(4, "text"),
            p(5, "bool"),
            p(5, "bool"),
            p(7, "text"),
            p(7, "text"),
            p(8, "bigint"),
        )
    }

    /// Where the page starts.
    pub(super) fn after(&self) -> Result<After<'_>, ProjectionError> {
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
    pub(super) fn page(&self, edges: Vec<EdgeView>) -> Page<EdgeView> {
        let sort = self.sort;
        paginate(edges, self.limit, |e| Cursor {
            sort: sort.as_str().to_owned(),
            value: sort.value(e),
            id: e.id.clone(),
        })
    }
}

/// The statements of an edge's detail, on either backend; each takes the
/// tenant and the edge's id, and the recent incidents the limit third.
pub(super) struct DetailSql {
    pub(super) edge: String,
    pub(super) open_incidents: String,
    pub(super) recent_incidents: String,
}

impl DetailSql {
    pub(super) fn new(dialect: Dialect, at: &str) -> Self {
        let (tenant, id) = (dialect.param(1, "text"), dialect.param(2, "text"));
        let incidents = dialect.table(at, "incidents");
        let of_edge = format!("WHERE tenant = {tenant} AND edge_id = {id}");
        Self {
            edge: format!(
                "SELECT {EDGE_COLUMNS} FROM {} WHERE tenant = {tenant} AND id = {id}",
                dialect.table(at, "edges")
            ),
            open_incidents: format!(
                "SELECT {INCIDENT_COLUMNS} FROM {incidents}
                 {of_edge} AND ended_at IS NULL ORDER BY seq"
            ),
            recent_incidents: format!(
                "SELECT {INCIDENT_COLUMNS} FROM {incidents}
                 {of_edge} AND ended_at IS NOT NULL
                 ORDER BY ended_at DESC, seq DESC LIMIT {}",
                dialect.param(3, "bigint")
            ),
        }
    }
}

/// A page of `tenant`'s edges.
pub async fn list(
    read_models: &ReadModels,
    tenant: &TenantId,
    query: &EdgeQuery,
) -> Result<Page<EdgeView>, ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    let after = query.after()?;
    let cursor_value: &(dyn ToSql + Sync) = match query.sort {
        EdgeSort::Id => &after.id,
        EdgeSort::LastContactAt => &after.contact,
    };
    let rows = client
        .query(
            &query.sql(Dialect::Postgres, &schema),
            &[
                &tenant.as_str(),
                &query.state.map(state_name),
                &query.customer,
                &query.site,
                &query.has_open_incident,
                cursor_value,
                &after.id,
                &(query.limit as i64 + 1),
            ],
        )
        .await?;
    let edges = rows.iter().map(edge_view).collect::<Result<Vec<_>, _>>()?;
    Ok(query.page(edges))
}

/// `tenant`'s edge `id` with its open and recent incidents; `None` when
/// there is no such edge.
pub async fn get(
    read_models: &ReadModels,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<EdgeDetail>, ProjectionError> {
    let (mut client, schema) = read_models.serving(NAME).await?;
    let sql = DetailSql::new(Dialect::Postgres, &schema);
    // One snapshot, so the edge's count of open incidents is the list shown.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let key: [&(dyn ToSql + Sync); 2] = [&tenant.as_str(), &id];
    let Some(row) = tx.query_opt(&sql.edge, &key).await? else {
        return Ok(None);
    };
    let edge = edge_view(&row)?;
    let open_incidents = tx
        .query(&sql.open_incidents, &key)
        .await?
        .iter()
        .map(EdgeIncident::from_row)
        .collect::<Result<_, _>>()?;
    let recent_incidents = tx
        .query(
            &sql.recent_incidents,
            &[&tenant.as_str(), &id, &(RECENT_INCIDENTS as i64)],
        )
        .await?
        .iter()
        .map(EdgeIncident::from_row)
        .collect::<Result<_, _>>()?;
    tx.commit().await?;
    Ok(Some(EdgeDetail {
        edge,
        open_incidents,
        recent_incidents,
    }))
}
