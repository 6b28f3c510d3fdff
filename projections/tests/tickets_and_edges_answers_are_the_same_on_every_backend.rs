//! The tickets and edges read models answer on every read-model backend
//! what they answer on Postgres (the projections' conformance suite, run on
//! Postgres in a database of its own and on SQLite): one log (several
//! tenants; tickets through every step, restated, never opened, malformed,
//! of an unknown type; edges reporting before their registration, never
//! reporting, flapping past the recent-incident limit, degraded, confirmed
//! offline, decommissioned, with report times finer than a microsecond) is
//! projected by the Postgres reference runner and the runner under test,
//! and every filter, both sorts in both orders, every page through cursors
//! (also cursors written by hand, good and bad), every detail and missing
//! ids give the same JSON — also after the read models under test are
//! rebuilt from the log.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_events::edges::{
    EdgeCameOnline, EdgeDecommissioned, EdgeRegistered, EdgeState, EdgeStatusReported,
    EdgeThresholdsSet, EdgeWentOffline, LinkDegraded, LinkRecovered, LinkReport, OutageConfirmed,
    Thresholds,
};
use herald_events::tickets::{
    NoteAppended, TicketAssigned, TicketClosed, TicketKind, TicketOpened, TicketReopened,
    TicketResolved,
};
use herald_events::{NewEvent, SchemaVersion, TenantId, TypedEvent};
use herald_projections::read_models::edges::{self, EdgeQuery, EdgeSort};
use herald_projections::read_models::tickets::{self, TicketQuery, TicketSort, TicketStatus};
use herald_projections::read_models::{Cursor, Page, SortOrder};
use herald_projections::{ProjectionError, ReadModels, RunnerConfig};
use herald_store::{EventStore, ExpectedVersion};
use herald_testkit::eventually;
use serde::Serialize;
use serde_json::{json, Value};

mod common;
mod conformance;

use conformance::{same, Backend, Fixture, Models, WAIT};

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "nobody-here"];
const TICKETS: usize = 30;
const EDGES: usize = 24;
/// Outages of the flapping edge: more than the detail's recent incidents.
const FLAPS: i64 = 13;

fn at(minute: i64) -> DateTime<Utc> {
    "2026-03-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minute)
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// A stream's events as they are written: each with its time; the stream
/// version of the next one is `len() + 1`.
#[derive(Default)]
struct Stream(Vec<NewEvent>);

impl Stream {
    fn push(&mut self, when: DateTime<Utc>, event: impl TypedEvent) -> u64 {
        self.0.push(event.to_new_event().occurred_at(when));
        self.0.len() as u64
    }

    fn raw(&mut self, when: DateTime<Utc>, event_type: &str, payload: Value) {
        let event = NewEvent::new(event_type.parse().unwrap(), SchemaVersion::V1, payload);
        self.0.push(event.occurred_at(when));
    }

    async fn append(self, store: &Arc<dyn EventStore>, tenant_name: &str, stream: &str) {
        store
            .append(
                &tenant(tenant_name),
                &stream.parse().unwrap(),
                ExpectedVersion::Any,
                self.0,
            )
            .await
            .expect("append");
    }
}

fn ticket_id(i: usize) -> String {
    match i {
        7 => "t-007".into(),
        11 => "T_011".into(),
        13 => "T.13".into(),
        _ => format!("T-{i:03}"),
    }
}

/// Ticket `i` of acme: every kind, three customers (two differing only in
/// case), edges or none, openings three to a minute (some a microsecond
/// apart), assignments, notes, resolutions, reopenings and closings.
fn ticket(i: usize) -> Stream {
    let mut s = Stream::default();
    let kind = [TicketKind::Outage, TicketKind::Affecting, TicketKind::Other][i % 3];
    let customer = ["northwind", "contoso", "Northwind"][(i / 2) % 3];
    let micros = if i.is_multiple_of(7) { 250_001 } else { 0 };
    let opened_at = at(i as i64 / 3) + chrono::Duration::microseconds(micros);
    let opened = |kind, customer: &str| TicketOpened {
        kind,
        customer: customer.into(),
        edge: (!i.is_multiple_of(4)).then(|| format!("E-{:03}", i % 5)),
        description: format!("{customer} is slow"),
        opened_by: (i % 2 == 1).then(|| "outage-monitor".into()),
    };
    s.push(opened_at, opened(kind, customer));
    let later = at(60 + (i % 4) as i64);
    if i == 12 {
        // A second opening (only around the aggregate) restates it.
        s.push(later, opened(TicketKind::Outage, "contoso"));
    }
    if i.is_multiple_of(2) {
        let assignee = ["ana", "bo"][(i / 2) % 2];
        s.push(
            later,
            TicketAssigned {
                assignee: assignee.into(),
                assigned_by: None,
            },
        );
    }
    if i.is_multiple_of(11) {
        s.push(
            later,
            TicketAssigned {
                assignee: "cy".into(),
                assigned_by: Some("ana".into()),
            },
        );
    }
    for n in 0..(i.is_multiple_of(5)) as usize + (i.is_multiple_of(10)) as usize {
        s.push(
            later,
            NoteAppended {
                note: format!("note {n} on {i}"),
                author: (n == 0).then(|| "ana".into()),
            },
        );
    }
    let resolved = || TicketResolved {
        resolution: Some("rebooted".into()),
        resolved_by: None,
    };
    let reopened = || TicketReopened {
        reason: Some("down again".into()),
        reopened_by: None,
    };
    let closed = || TicketClosed {
        reason: None,
        closed_by: Some("ana".into()),
    };
    let step = |n: i64| at(70 + n + (i % 3) as i64);
    match i % 9 {
        0 => {
            s.push(step(0), resolved());
            s.push(step(1), reopened());
            s.push(step(2), resolved());
            s.push(step(3), closed());
        }
        3 | 6 => {
            s.push(step(0), resolved());
        }
        4 => {
            s.push(step(0), resolved());
            s.push(step(1), closed());
        }
        8 => {
            s.push(step(0), resolved());
            s.push(step(1), reopened());
        }
        _ => {}
    }
    s
}

fn report(state: EdgeState, reported_at: Option<DateTime<Utc>>) -> EdgeStatusReported {
    EdgeStatusReported {
        state,
        links: vec![LinkReport {
            name: "wan1".into(),
            latency_ms: 12.5,
            jitter_ms: 1.0,
            packet_loss_pct: 0.0,
        }],
        reported_at,
    }
}

fn registered(customer: &str, site: &str, serial: &str) -> EdgeRegistered {
    EdgeRegistered {
        customer: customer.into(),
        serial: serial.into(),
        site: site.into(),
    }
}

const THRESHOLDS: Thresholds = Thresholds {
    latency_ms: 100.0,
    jitter_ms: 20.5,
    packet_loss_pct: 0.1,
};

fn degraded(link: &str) -> LinkDegraded {
    LinkDegraded {
        link: link.into(),
        latency_ms: 400.0,
        jitter_ms: 1.0,
        packet_loss_pct: 0.0,
        thresholds: THRESHOLDS,
    }
}

fn recovered(link: &str) -> LinkRecovered {
    LinkRecovered { link: link.into() }
}

fn offline() -> EdgeWentOffline {
    EdgeWentOffline {
        previous_state: EdgeState::Online,
        reason: None,
    }
}

fn online() -> EdgeCameOnline {
    EdgeCameOnline {
        previous_state: EdgeState::Offline,
        offline_since: None,
    }
}

fn edge_id(i: usize) -> String {
    match i {
        9 => "e-009".into(),
        10 => "E~10".into(),
        _ => format!("E-{i:03}"),
    }
}

/// Edge `i` of acme, one of eight lives; contacts two to a minute.
fn edge(i: usize) -> Stream {
    let mut s = Stream::default();
    let customer = ["northwind", "contoso", "Northwind"][i % 3];
    let site = ["berlin", "paris", "oslo", "Berlin"][(i / 3) % 4];
    let serial = format!("SN-{i}");
    let contact = at(i as i64 / 2);
    match i % 8 {
        // Registered, never reported.
        0 => {
            s.push(at(0), registered(customer, site, &serial));
        }
        1 => {
            s.push(at(0), registered(customer, site, &serial));
            s.push(contact, report(EdgeState::Online, Some(contact)));
        }
        // Reports before the registration: offline, unregistered.
        2 => {
            s.push(contact, report(EdgeState::Offline, None));
            s.push(contact, offline());
        }
        3 => {
            s.push(at(0), registered(customer, site, &serial));
            s.push(contact, report(EdgeState::Degraded, Some(contact)));
            s.push(contact, degraded("wan1"));
            s.push(contact, degraded("lte"));
            s.push(at(30), recovered("lte"));
            s.push(at(31), EdgeThresholdsSet::from(THRESHOLDS));
        }
        // An outage confirmed, then over.
        4 => {
            s.push(at(0), registered(customer, site, &serial));
            s.push(contact, report(EdgeState::Offline, Some(contact)));
            let down = s.push(contact, offline());
            s.push(
                at(20),
                OutageConfirmed {
                    offline_since_version: down,
                    offline_since: Some(contact),
                },
            );
            s.push(at(25), report(EdgeState::Online, Some(at(25))));
            s.push(at(25), online());
        }
        // Decommissioned with incidents open: they end.
        5 => {
            s.push(at(0), registered(customer, site, &serial));
            s.push(contact, report(EdgeState::Offline, Some(contact)));
            s.push(contact, offline());
            s.push(contact, degraded("wan1"));
            s.push(
                at(40),
                EdgeDecommissioned {
                    reason: Some("site closed".into()),
                },
            );
        }
        // Only thresholds: a row, unregistered, never reported.
        6 => {
            s.push(at(3), EdgeThresholdsSet::from(THRESHOLDS));
        }
        // Report times finer than a microsecond, and an older report after
        // a newer one.
        _ => {
            s.push(at(0), registered(customer, site, &serial));
            let fine = contact + chrono::Duration::nanoseconds(123_456_789);
            s.push(contact, report(EdgeState::Online, Some(fine)));
            s.push(
                contact,
                report(
                    EdgeState::Degraded,
                    Some(at(-30) + chrono::Duration::nanoseconds(999)),
                ),
            );
        }
    }
    s
}

/// An edge whose outages and degraded links end at the same minutes, more
/// of them than the detail shows.
fn flapping() -> Stream {
    let mut s = Stream::default();
    s.push(at(0), registered("northwind", "berlin", "SN-FLAP"));
    for n in 0..FLAPS {
        let (down, up) = (at(2 * n), at(2 * n + 1));
        s.push(down, report(EdgeState::Offline, Some(down)));
        let version = s.push(down, offline());
        s.push(down, degraded("wan1"));
        if n % 3 == 0 {
            s.push(
                down,
                OutageConfirmed {
                    offline_since_version: version,
                    offline_since: Some(down),
                },
            );
        }
        s.push(up, online());
        s.push(up, recovered("wan1"));
    }
    s.push(at(100), report(EdgeState::Offline, Some(at(100))));
    s.push(at(100), offline());
    s
}

async fn write_the_log(store: &Arc<dyn EventStore>) {
    for i in 1..=TICKETS {
        ticket(i)
            .append(store, "acme", &format!("tickets/{}", ticket_id(i)))
            .await;
    }
    let mut orphan = Stream::default();
    orphan.push(
        at(5),
        NoteAppended {
            note: "never opened".into(),
            author: None,
        },
    );
    orphan.append(store, "acme", "tickets/T-900").await;
    let mut malformed = Stream::default();
    malformed.raw(at(6), "tickets.ticket_opened", json!({"kind": "meltdown"}));
    malformed.append(store, "acme", "tickets/T-901").await;
    let mut newer = Stream::default();
    newer.raw(at(90), "tickets.ticket_escalated", json!({"level": 2}));
    newer.append(store, "acme", "tickets/T-001").await;
    // The same ids in other tenants are other tickets.
    for (name, i) in [("globex", 1), ("globex", 2), ("initech", 1)] {
        let mut s = ticket(i + 3);
        s.push(
            at(99),
            NoteAppended {
                note: format!("{name} note"),
                author: None,
            },
        );
        s.append(store, name, &format!("tickets/{}", ticket_id(i)))
            .await;
    }

    for i in 1..=EDGES {
        edge(i)
            .append(store, "acme", &format!("edges/{}", edge_id(i)))
            .await;
    }
    flapping().append(store, "acme", "edges/E-FLAP").await;
    for (name, i) in [("globex", 1), ("globex", 2), ("initech", 5)] {
        edge(i + 3)
            .append(store, name, &format!("edges/{}", edge_id(i)))
            .await;
    }
}

/// A read model's queries on both backends.
trait Model {
    type Query: Clone + Debug + Send;
    type Item: Serialize + Id;
    type Detail: Serialize;
    const NAME: &'static str;

    fn sort(query: &Self::Query) -> &'static str;
    fn set_cursor(query: &mut Self::Query, cursor: Option<Cursor>);
    async fn postgres(
        rm: &ReadModels,
        tenant: &TenantId,
        query: &Self::Query,
    ) -> Result<Page<Self::Item>, ProjectionError>;
    async fn tested(
        rm: &Models,
        tenant: &TenantId,
        query: &Self::Query,
    ) -> Result<Page<Self::Item>, ProjectionError>;
    async fn postgres_get(
        rm: &ReadModels,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Self::Detail>, ProjectionError>;
    async fn tested_get(
        rm: &Models,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Self::Detail>, ProjectionError>;
}

trait Id {
    fn id(&self) -> &str;
}

/// The [`Model`] named `$model` of the read model whose queries are
/// `$module::{list, get}` and `$module::{list, get}`.
macro_rules! model {
    ($model:ident, $module:ident, $query:ty, $item:ty, $detail:ty) => {
        struct $model;

        impl Id for $item {
            fn id(&self) -> &str {
                &self.id
            }
        }

        impl Model for $model {
            type Query = $query;
            type Item = $item;
            type Detail = $detail;
            const NAME: &'static str = stringify!($module);

            fn sort(query: &$query) -> &'static str {
                query.sort.as_str()
            }
            fn set_cursor(query: &mut $query, cursor: Option<Cursor>) {
                query.cursor = cursor;
            }
            async fn postgres(
                rm: &ReadModels,
                t: &TenantId,
                q: &$query,
            ) -> Result<Page<$item>, ProjectionError> {
                $module::list(rm, t, q).await
            }
            async fn tested(
                rm: &Models,
                t: &TenantId,
                q: &$query,
            ) -> Result<Page<$item>, ProjectionError> {
                $module::list(rm, t, q).await
            }
            async fn postgres_get(
                rm: &ReadModels,
                t: &TenantId,
                id: &str,
            ) -> Result<Option<$detail>, ProjectionError> {
                $module::get(rm, t, id).await
            }
            async fn tested_get(
                rm: &Models,
                t: &TenantId,
                id: &str,
            ) -> Result<Option<$detail>, ProjectionError> {
                $module::get(rm, t, id).await
            }
        }
    };
}

model!(
    Tickets,
    tickets,
    TicketQuery,
    tickets::TicketView,
    tickets::TicketDetail
);
model!(Edges, edges, EdgeQuery, edges::EdgeView, edges::EdgeDetail);

struct Both {
    postgres: ReadModels,
    tested: Models,
}

impl Both {
    /// Pages through `query` on both backends, following Postgres's cursors
    /// (the same as SQLite's, or the pages differ); the ids of every row.
    async fn page_through<M: Model>(&self, tenant: &TenantId, mut query: M::Query) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..200 {
            let what = format!("{} {tenant} {query:?}", M::NAME);
            let postgres = M::postgres(&self.postgres, tenant, &query).await;
            let tested = M::tested(&self.tested, tenant, &query).await;
            let page = postgres.as_ref().map(|p| {
                let ids: Vec<String> = p.items.iter().map(|i| i.id().to_owned()).collect();
                (ids, p.next_cursor.clone())
            });
            let (page_ids, next) = match page {
                Ok(page) => page,
                Err(e) => panic!("{what}: {e}"),
            };
            same(&what, postgres, tested).unwrap();
            ids.extend(page_ids);
            match next {
                Some(text) => {
                    let cursor = Cursor::decode(&text, M::sort(&query)).expect("a cursor");
                    M::set_cursor(&mut query, Some(cursor));
                }
                None => return ids,
            }
        }
        panic!("{}: more than 200 pages", M::NAME);
    }

    /// One page with a cursor written by hand: the same page or the same
    /// error.
    async fn by_hand<M: Model>(
        &self,
        tenant: &TenantId,
        query: &M::Query,
        cursor: Cursor,
    ) -> Result<Value, String> {
        let mut query = query.clone();
        M::set_cursor(&mut query, Some(cursor));
        let what = format!("{} {tenant} {query:?}", M::NAME);
        same(
            &what,
            M::postgres(&self.postgres, tenant, &query).await,
            M::tested(&self.tested, tenant, &query).await,
        )
        .map(|page| serde_json::to_value(page).unwrap())
    }

    /// The detail of `id` on both backends (`null` when there is none).
    async fn detail<M: Model>(&self, tenant: &TenantId, id: &str) -> Value {
        let what = format!("{} {tenant} {id}", M::NAME);
        let detail = same(
            &what,
            M::postgres_get(&self.postgres, tenant, id).await,
            M::tested_get(&self.tested, tenant, id).await,
        );
        serde_json::to_value(detail.unwrap_or_else(|e| panic!("{what}: {e}"))).unwrap()
    }
}

fn ticket_queries() -> Vec<TicketQuery> {
    let q = TicketQuery::default;
    let mut filters = vec![q()];
    for status in [
        TicketStatus::Open,
        TicketStatus::Resolved,
        TicketStatus::Closed,
    ] {
        filters.push(TicketQuery {
            status: Some(status),
            ..q()
        });
    }
    for kind in [TicketKind::Outage, TicketKind::Affecting, TicketKind::Other] {
        filters.push(TicketQuery {
            kind: Some(kind),
            ..q()
        });
    }
    for customer in ["northwind", "Northwind", "north"] {
        filters.push(TicketQuery {
            customer: Some(customer.into()),
            ..q()
        });
    }
    for edge in ["E-001", "E-000", "e-001"] {
        filters.push(TicketQuery {
            edge: Some(edge.into()),
            ..q()
        });
    }
    for assignee in ["ana", "bo", "cy", "nobody"] {
        filters.push(TicketQuery {
            assignee: Some(assignee.into()),
            ..q()
        });
    }
    filters.push(TicketQuery {
        status: Some(TicketStatus::Open),
        kind: Some(TicketKind::Outage),
        customer: Some("northwind".into()),
        ..q()
    });
    filters.push(TicketQuery {
        status: Some(TicketStatus::Resolved),
        edge: Some("E-003".into()),
        assignee: Some("ana".into()),
        ..q()
    });
    let mut queries = Vec::new();
    for (n, filter) in filters.into_iter().enumerate() {
        // Every sort and order, at several page sizes (all of them on the
        // unfiltered list).
        let limits: &[usize] = if n == 0 { &[1, 2, 7, 500] } else { &[2, 500] };
        for sort in [TicketSort::OpenedAt, TicketSort::UpdatedAt] {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                for &limit in limits {
                    queries.push(TicketQuery {
                        sort,
                        order,
                        limit,
                        ..filter.clone()
                    });
                }
            }
        }
    }
    queries
}

fn edge_queries() -> Vec<EdgeQuery> {
    let q = EdgeQuery::default;
    let mut filters = vec![q()];
    for state in [EdgeState::Online, EdgeState::Offline, EdgeState::Degraded] {
        filters.push(EdgeQuery {
            state: Some(state),
            ..q()
        });
    }
    for customer in ["northwind", "Northwind", "nobody"] {
        filters.push(EdgeQuery {
            customer: Some(customer.into()),
            ..q()
        });
    }
    for site in ["berlin", "Berlin", "oslo"] {
        filters.push(EdgeQuery {
            site: Some(site.into()),
            ..q()
        });
    }
    for open in [true, false] {
        filters.push(EdgeQuery {
            has_open_incident: Some(open),
            ..q()
        });
    }
    filters.push(EdgeQuery {
        state: Some(EdgeState::Offline),
        customer: Some("contoso".into()),
        has_open_incident: Some(true),
        ..q()
    });
    let mut queries = Vec::new();
    for (n, filter) in filters.into_iter().enumerate() {
        let limits: &[usize] = if n == 0 { &[1, 3, 500] } else { &[2, 500] };
        for sort in [EdgeSort::Id, EdgeSort::LastContactAt] {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                for &limit in limits {
                    queries.push(EdgeQuery {
                        sort,
                        order,
                        limit,
                        ..filter.clone()
                    });
                }
            }
        }
    }
    queries
}

fn cursor(sort: &str, value: Value, id: &str) -> Cursor {
    Cursor {
        sort: sort.into(),
        value,
        id: id.into(),
    }
}

/// Every query of both read models answers the same on both backends.
async fn compare_everything(both: &Both) {
    let acme = tenant("acme");
    for name in TENANTS {
        let tenant = tenant(name);
        let mut all_tickets = None;
        for query in ticket_queries() {
            let ids = both.page_through::<Tickets>(&tenant, query.clone()).await;
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), ids.len(), "{query:?}: a ticket twice");
            if query
                == (TicketQuery {
                    limit: 1,
                    ..TicketQuery::default()
                })
            {
                all_tickets = Some(ids);
            }
        }
        let all_tickets = all_tickets.expect("the unfiltered list");
        let mut all_edges = None;
        for query in edge_queries() {
            let ids = both.page_through::<Edges>(&tenant, query.clone()).await;
            if query
                == (EdgeQuery {
                    limit: 1,
                    ..EdgeQuery::default()
                })
            {
                all_edges = Some(ids);
            }
        }
        let all_edges = all_edges.expect("the unfiltered list");
        let (want_tickets, want_edges) = match name {
            "acme" => (TICKETS, EDGES + 1),
            "globex" => (2, 2),
            "initech" => (1, 1),
            _ => (0, 0),
        };
        assert_eq!(all_tickets.len(), want_tickets, "{name}'s tickets");
        assert_eq!(all_edges.len(), want_edges, "{name}'s edges");
        for id in &all_tickets {
            let detail = both.detail::<Tickets>(&tenant, id).await;
            assert_eq!(detail["ticket"]["id"], json!(id), "{name} {id}");
        }
        for id in &all_edges {
            let detail = both.detail::<Edges>(&tenant, id).await;
            assert_eq!(detail["edge"]["id"], json!(id), "{name} {id}");
        }
        for id in ["T-900", "T-901", "T-999", "t-001", "", "T-0"] {
            let detail = both.detail::<Tickets>(&tenant, id).await;
            assert_eq!(detail, Value::Null, "{name} {id}");
        }
        for id in ["E-999", "e-001", "", "E-0"] {
            let detail = both.detail::<Edges>(&tenant, id).await;
            assert_eq!(detail, Value::Null, "{name} {id}");
        }
    }

    // The flapping edge shows its latest ended incidents only, ties of
    // their end broken by seq.
    let flap = both.detail::<Edges>(&acme, "E-FLAP").await;
    let recent = flap["recent_incidents"].as_array().unwrap();
    assert_eq!(recent.len(), edges::RECENT_INCIDENTS, "{flap}");
    assert_eq!(recent[0]["ended_at"], recent[1]["ended_at"], "{flap}");
    assert_eq!(
        flap["open_incidents"].as_array().unwrap().len(),
        1,
        "{flap}"
    );
    // A ticket through every step: notes, history with the unknown event
    // left out.
    let t9 = both.detail::<Tickets>(&acme, "T-009").await;
    assert_eq!(t9["ticket"]["reopen_count"], 1, "{t9}");
    assert_eq!(t9["history"].as_array().unwrap().len(), 5, "{t9}");
    let t10 = both.detail::<Tickets>(&acme, "T-010").await;
    assert_eq!(t10["notes"].as_array().unwrap().len(), 2, "{t10}");

    // Cursors written by hand: instants with an offset, ids that are no
    // row's, never-reported edges, and values that are no cursor's.
    let opened = TicketQuery {
        limit: 4,
        ..TicketQuery::default()
    };
    let updated = TicketQuery {
        sort: TicketSort::UpdatedAt,
        order: SortOrder::Desc,
        ..opened.clone()
    };
    for (query, value, id, ok) in [
        (&opened, json!("2026-03-01T10:03:00+02:00"), "T-010", true),
        (&opened, json!("2026-03-01T08:02:00.250001Z"), "T-0", true),
        (&opened, json!("2026-03-01T08:02:00.25Z"), "T-007", true),
        (&updated, json!("2026-03-01T09:01:00Z"), "Z", true),
        (&opened, json!(5), "T-001", false),
        (&opened, json!("yesterday"), "T-001", false),
        (&opened, Value::Null, "T-001", false),
    ] {
        let answer = both
            .by_hand::<Tickets>(&acme, query, cursor(query.sort.as_str(), value, id))
            .await;
        assert_eq!(answer.is_ok(), ok, "{answer:?}");
        if let Ok(page) = answer {
            assert!(!page["items"].as_array().unwrap().is_empty(), "{page}");
        }
    }
    let by_contact = EdgeQuery {
        sort: EdgeSort::LastContactAt,
        limit: 3,
        ..EdgeQuery::default()
    };
    let by_contact_desc = EdgeQuery {
        order: SortOrder::Desc,
        ..by_contact.clone()
    };
    let by_id = EdgeQuery {
        limit: 3,
        ..EdgeQuery::default()
    };
    for (query, value, id, ok) in [
        (&by_contact, Value::Null, "E-008", true),
        (&by_contact, Value::Null, "", true),
        (&by_contact_desc, Value::Null, "E-100", true),
        (
            &by_contact,
            json!("2026-03-01T08:03:00.123456Z"),
            "E-007",
            true,
        ),
        (
            &by_contact,
            json!("2026-03-01T09:03:00+01:00"),
            "E-006",
            true,
        ),
        (
            &by_contact_desc,
            json!("2026-03-01T08:05:00Z"),
            "E-011",
            true,
        ),
        (&by_id, json!(42), "E-010", true),
        (&by_id, Value::Null, "E-0", true),
        (&by_contact, json!(true), "E-001", false),
        (&by_contact, json!("soon"), "E-001", false),
    ] {
        let answer = both
            .by_hand::<Edges>(&acme, query, cursor(query.sort.as_str(), value, id))
            .await;
        assert_eq!(answer.is_ok(), ok, "{answer:?}");
        if let Ok(page) = answer {
            assert!(!page["items"].as_array().unwrap().is_empty(), "{page}");
        }
    }
}

async fn tickets_and_edges_answer_the_same_on_every_backend(backend: Backend) {
    // Small batches on both sides, of other sizes: the folds over stored
    // rows must agree whatever the batches.
    let mut f = Fixture::new(
        backend,
        &["tickets", "edges"],
        RunnerConfig {
            batch_size: 3,
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
        RunnerConfig {
            batch_size: 5,
            rebuild_batch_size: 2_000,
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
    )
    .await;
    write_the_log(&f.store).await;
    f.start();
    let caught_up = eventually(WAIT, || async {
        let p = f.reference.statuses().await.unwrap();
        let s = f.tested.statuses().await.unwrap();
        p.len() == 2
            && s.len() == 2
            && p.iter()
                .chain(&s)
                .all(|s| s.lag_events == 0 && s.generation.is_some())
    })
    .await;
    assert!(
        caught_up,
        "{:?}\n{:?}",
        f.reference.statuses().await,
        f.tested.statuses().await
    );

    // The same events parked, for the same reason.
    for name in ["tickets", "edges"] {
        let parked = f.parked_alike(name).await;
        assert_eq!(parked, usize::from(name == "tickets"), "{name}");
    }

    let (postgres, tested) = f.both();
    let both = Both { postgres, tested };
    compare_everything(&both).await;

    // Rebuilt from the log in one big batch, the backend under test still
    // answers the same.
    for name in ["tickets", "edges"] {
        f.rebuild(name).await;
    }
    compare_everything(&both).await;

    f.stop().await;
}
conformance!(tickets_and_edges_answer_the_same_on_every_backend);
