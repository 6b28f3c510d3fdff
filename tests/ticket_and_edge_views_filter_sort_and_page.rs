//! `GET /v1/views/tickets` and `/v1/views/edges` over a real projection:
//! every filter selects exactly the matching rows; both sorts in both
//! orders page through every row exactly once, in order (ties broken by
//! id), with cursors; a ticket or an edge is shown with its notes and
//! history or its incidents; each tenant sees only its own rows; and a key
//! without `read` on the domain gets 403, bad parameters 400, a missing id
//! 404.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use chrono::{DateTime, Utc};
use herald::api;
use herald_events::edges::{
    EdgeRegistered, EdgeState, EdgeStatusReported, EdgeWentOffline, LinkDegraded, LinkReport,
    Thresholds,
};
use herald_events::tickets::{
    NoteAppended, TicketAssigned, TicketClosed, TicketKind, TicketOpened, TicketResolved,
};
use herald_events::{NewEvent, TenantId, TypedEvent};
use herald_projections::read_models::edges::EdgesProjection;
use herald_projections::read_models::tickets::TicketsProjection;
use herald_store::{EventStore, ExpectedVersion};
use herald_testkit::TestDatabase;
use serde_json::Value;

const TICKETS: usize = 23;
const EDGES: usize = 13;

fn minutes(n: usize) -> DateTime<Utc> {
    "2026-05-04T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(n as i64)
}

/// A ticket of tenant acme as the test writes it and expects it back.
#[derive(Debug, Clone)]
struct Ticket {
    id: String,
    kind: TicketKind,
    kind_name: &'static str,
    status: &'static str,
    customer: &'static str,
    edge: Option<String>,
    assignee: Option<&'static str>,
    noted: bool,
    opened_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Tickets with every combination of the filters; three at a time share
/// `opened_at` and a quarter share each `updated_at`, so ties are ordered
/// by id.
fn tickets() -> Vec<Ticket> {
    (1..=TICKETS)
        .map(|i| {
            let kinds = [
                (TicketKind::Outage, "outage"),
                (TicketKind::Affecting, "affecting"),
                (TicketKind::Other, "other"),
            ];
            let (kind, kind_name) = kinds[i % 3];
            let assignee = (i % 2 == 0).then(|| ["ana", "bo"][(i / 2) % 2]);
            let noted = i % 5 == 0;
            let opened_at = minutes(i / 3);
            let touched = assignee.is_some() || noted || i % 3 == 0;
            Ticket {
                id: format!("T-{i:03}"),
                kind,
                kind_name,
                status: match (i % 6, i % 3) {
                    (0, _) => "closed",
                    (_, 0) => "resolved",
                    _ => "open",
                },
                customer: ["northwind", "contoso"][i % 2],
                edge: (i % 4 != 0).then(|| format!("E-{:03}", i % 5)),
                assignee,
                noted,
                opened_at,
                updated_at: if touched {
                    minutes(60 + i % 4)
                } else {
                    opened_at
                },
            }
        })
        .collect()
}

fn ticket_events(t: &Ticket) -> Vec<NewEvent> {
    let later = t.updated_at;
    let mut events = vec![TicketOpened {
        kind: t.kind,
        customer: t.customer.into(),
        edge: t.edge.clone(),
        description: format!("{} is slow", t.customer),
        opened_by: None,
    }
    .to_new_event()
    .occurred_at(t.opened_at)];
    if let Some(assignee) = t.assignee {
        let assigned = TicketAssigned {
            assignee: assignee.into(),
            assigned_by: None,
        };
        events.push(assigned.to_new_event().occurred_at(later));
    }
    if t.noted {
        let note = NoteAppended {
            note: "called the customer".into(),
            author: Some("ana".into()),
        };
        events.push(note.to_new_event().occurred_at(later));
    }
    if t.status != "open" {
        let resolved = TicketResolved {
            resolution: None,
            resolved_by: None,
        };
        events.push(resolved.to_new_event().occurred_at(later));
    }
    if t.status == "closed" {
        let closed = TicketClosed {
            reason: None,
            closed_by: None,
        };
        events.push(closed.to_new_event().occurred_at(later));
    }
    events
}

/// An edge of tenant acme as the test writes it and expects it back.
#[derive(Debug, Clone)]
struct Edge {
    id: String,
    customer: &'static str,
    site: &'static str,
    state: EdgeState,
    state_name: &'static str,
    /// `None`: it never reported. Two at a time share a contact time.
    last_contact_at: Option<DateTime<Utc>>,
}

impl Edge {
    fn has_open_incident(&self) -> bool {
        self.state != EdgeState::Online
    }
}

fn edges() -> Vec<Edge> {
    (1..=EDGES)
        .map(|i| {
            let reported = i % 4 != 0;
            let (state, state_name) = match (reported, i % 3, i % 5) {
                (false, _, _) => (EdgeState::Online, "online"),
                (true, 0, _) => (EdgeState::Offline, "offline"),
                (true, _, 0) => (EdgeState::Degraded, "degraded"),
                _ => (EdgeState::Online, "online"),
            };
            Edge {
                id: format!("E-{i:03}"),
                customer: ["northwind", "contoso"][i % 2],
                site: ["berlin", "paris", "oslo"][i % 3],
                state,
                state_name,
                last_contact_at: reported.then(|| minutes(i / 2)),
            }
        })
        .collect()
}

fn edge_events(e: &Edge) -> Vec<NewEvent> {
    let registered = EdgeRegistered {
        customer: e.customer.into(),
        serial: format!("SN-{}", e.id),
        site: e.site.into(),
    };
    let mut events = vec![registered.to_new_event().occurred_at(minutes(0))];
    let Some(contact) = e.last_contact_at else {
        return events;
    };
    let report = EdgeStatusReported {
        state: e.state,
        links: vec![LinkReport {
            name: "wan1".into(),
            latency_ms: 500.0,
            jitter_ms: 1.0,
            packet_loss_pct: 0.0,
        }],
        reported_at: Some(contact),
    };
    events.push(report.to_new_event().occurred_at(contact));
    match e.state {
        EdgeState::Offline => events.push(
            EdgeWentOffline {
                previous_state: EdgeState::Online,
                reason: None,
            }
            .to_new_event()
            .occurred_at(contact),
        ),
        EdgeState::Degraded => events.push(
            LinkDegraded {
                link: "wan1".into(),
                latency_ms: 500.0,
                jitter_ms: 1.0,
                packet_loss_pct: 0.0,
                thresholds: Thresholds {
                    latency_ms: 150.0,
                    jitter_ms: 30.0,
                    packet_loss_pct: 2.0,
                },
            }
            .to_new_event()
            .occurred_at(contact),
        ),
        EdgeState::Online => {}
    }
    events
}

async fn append(store: &Arc<dyn EventStore>, tenant: &str, stream: &str, events: Vec<NewEvent>) {
    store
        .append(
            &TenantId::new(tenant).unwrap(),
            &stream.parse().unwrap(),
            ExpectedVersion::Any,
            events,
        )
        .await
        .expect("append");
}

/// Follows `next_cursor` from `first` to the last page; the ids of every
/// row in the order shown.
async fn page_through<F, Fut>(get: F, first: &str) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    let mut ids = Vec::new();
    let mut uri = first.to_owned();
    for _ in 0..100 {
        let (status, page) = get(uri.clone()).await;
        assert_eq!(status, 200, "{uri}: {page}");
        let items = page["items"].as_array().expect("items");
        ids.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(!items.is_empty(), "{uri}: an empty page with a cursor");
                let separator = if first.contains('?') { '&' } else { '?' };
                uri = format!("{first}{separator}cursor={cursor}");
            }
            None => return ids,
        }
    }
    panic!("{first}: more than 100 pages");
}

/// A row the test expects, known by its id.
trait Identified {
    fn id(&self) -> &str;
}

impl Identified for Ticket {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Identified for Edge {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The ids of `rows` that `keep` selects, ordered by `key` then id.
fn expected<T: Identified, K: Ord>(
    rows: &[T],
    keep: impl Fn(&T) -> bool,
    key: impl Fn(&T) -> K,
) -> Vec<String> {
    let mut kept: Vec<&T> = rows.iter().filter(|r| keep(r)).collect();
    kept.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.id().cmp(b.id())));
    kept.into_iter().map(|r| r.id().to_owned()).collect()
}

fn reversed(mut ids: Vec<String>) -> Vec<String> {
    ids.reverse();
    ids
}

#[actix_web::test]
async fn ticket_and_edge_views_filter_sort_and_page() {
    let db = TestDatabase::create().await;
    let (state, runner, _stop) = support::postgres_state_with_projections(
        &db,
        vec![Arc::new(TicketsProjection), Arc::new(EdgesProjection)],
    )
    .await;
    let store = Arc::clone(&state.store);
    let scopes = ["read:tickets", "read:edges"];
    let (_, acme) = support::create_key(&store, "acme", &scopes, Some(100_000)).await;
    let (_, globex) = support::create_key(&store, "globex", &scopes, Some(100_000)).await;
    let (_, tickets_only) =
        support::create_key(&store, "acme", &["read:tickets"], Some(100_000)).await;
    let (_, edges_only) = support::create_key(&store, "acme", &["read:edges"], Some(100_000)).await;

    let tickets = tickets();
    let edges = edges();
    for t in &tickets {
        append(
            &store,
            "acme",
            &format!("tickets/{}", t.id),
            ticket_events(t),
        )
        .await;
    }
    for e in &edges {
        append(&store, "acme", &format!("edges/{}", e.id), edge_events(e)).await;
    }
    // Another tenant, with an id acme has too.
    for (id, customer) in [("T-001", "globex-retail"), ("T-900", "globex-bank")] {
        let opened = TicketOpened {
            kind: TicketKind::Other,
            customer: customer.into(),
            edge: None,
            description: "slow".into(),
            opened_by: None,
        };
        append(
            &store,
            "globex",
            &format!("tickets/{id}"),
            vec![opened.to_new_event()],
        )
        .await;
    }
    let globex_edge = EdgeRegistered {
        customer: "globex-retail".into(),
        serial: "SN-G".into(),
        site: "madrid".into(),
    };
    append(
        &store,
        "globex",
        "edges/E-900",
        vec![globex_edge.to_new_event()],
    )
    .await;
    support::caught_up(&runner, Duration::from_secs(60)).await;

    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(api::routes),
    )
    .await;
    let get = |key: &str, uri: &str| {
        let request = test::TestRequest::get()
            .uri(uri)
            .insert_header(("authorization", format!("Bearer {key}")))
            .to_request();
        let app = &app;
        async move {
            let response = test::call_service(app, request).await;
            let status = response.status().as_u16();
            let body = test::read_body(response).await;
            (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
        }
    };
    let as_acme = |uri: String| get(&acme, &uri);

    // Tickets: both sorts, both orders, small pages, every ticket once.
    let by_opened = expected(&tickets, |_| true, |t| t.opened_at);
    let by_updated = expected(&tickets, |_| true, |t| t.updated_at);
    for (query, want) in [
        ("limit=4", by_opened.clone()),
        ("sort=opened_at&order=asc&limit=5", by_opened.clone()),
        (
            "sort=opened_at&order=desc&limit=4",
            reversed(by_opened.clone()),
        ),
        ("sort=updated_at&limit=3", by_updated.clone()),
        ("sort=updated_at&order=desc&limit=6", reversed(by_updated)),
        ("limit=500", by_opened.clone()),
    ] {
        let got = page_through(as_acme, &format!("/v1/views/tickets?{query}")).await;
        assert_eq!(got, want, "{query}");
    }

    // Tickets: each filter, and filters together.
    type TicketFilter = Box<dyn Fn(&Ticket) -> bool>;
    let ticket_filters: Vec<(&str, TicketFilter)> = vec![
        ("status=open", Box::new(|t: &Ticket| t.status == "open")),
        (
            "status=resolved",
            Box::new(|t: &Ticket| t.status == "resolved"),
        ),
        ("status=closed", Box::new(|t: &Ticket| t.status == "closed")),
        (
            "kind=outage",
            Box::new(|t: &Ticket| t.kind_name == "outage"),
        ),
        (
            "kind=affecting",
            Box::new(|t: &Ticket| t.kind_name == "affecting"),
        ),
        (
            "customer=contoso",
            Box::new(|t: &Ticket| t.customer == "contoso"),
        ),
        (
            "edge=E-001",
            Box::new(|t: &Ticket| t.edge.as_deref() == Some("E-001")),
        ),
        (
            "assignee=bo",
            Box::new(|t: &Ticket| t.assignee == Some("bo")),
        ),
        (
            "status=open&customer=northwind&kind=other",
            Box::new(|t: &Ticket| {
                t.status == "open" && t.customer == "northwind" && t.kind_name == "other"
            }),
        ),
        ("assignee=nobody", Box::new(|_: &Ticket| false)),
    ];
    for (query, keep) in &ticket_filters {
        let want = expected(&tickets, keep, |t| t.opened_at);
        let got = page_through(as_acme, &format!("/v1/views/tickets?{query}&limit=3")).await;
        assert_eq!(got, want, "{query}");
        assert!(
            query.contains("nobody") || !want.is_empty(),
            "{query} selects something"
        );
    }

    // One ticket, as every list shows it, with its notes and history.
    let (status, page) = get(&acme, "/v1/views/tickets?status=open&assignee=bo&limit=500").await;
    assert_eq!(status, 200);
    let listed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "T-010")
        .expect("T-010 is open and bo's")
        .clone();
    let (status, detail) = get(&acme, "/v1/views/tickets/T-010").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["ticket"], listed);
    let ticket = &detail["ticket"];
    assert_eq!(ticket["kind"], "affecting");
    assert_eq!(ticket["customer"], "northwind");
    assert_eq!(ticket["edge"], "E-000");
    assert_eq!(
        (ticket["note_count"].as_u64(), ticket["version"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(detail["notes"][0]["note"], "called the customer");
    assert_eq!(detail["notes"][0]["stream_version"], 3);
    let history: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "tickets.ticket_opened",
            "tickets.ticket_assigned",
            "tickets.note_appended"
        ]
    );
    assert_eq!(detail["history"][1]["summary"]["assignee"], "bo");
    let (status, closed) = get(&acme, "/v1/views/tickets/T-006").await;
    assert_eq!(status, 200);
    assert_eq!(closed["ticket"]["status"], "closed");
    assert!(closed["ticket"]["closed_at"].is_string());
    assert!(closed["ticket"]["resolved_at"].is_string());

    // Edges: both sorts, both orders, every edge once; never-reported edges
    // count as the earliest contact.
    let by_id = expected(&edges, |_| true, |_| ());
    let by_contact = expected(&edges, |_| true, |e| e.last_contact_at);
    for (query, want) in [
        ("limit=4", by_id.clone()),
        ("sort=id&order=desc&limit=5", reversed(by_id.clone())),
        ("sort=last_contact_at&limit=3", by_contact.clone()),
        (
            "sort=last_contact_at&order=desc&limit=2",
            reversed(by_contact),
        ),
    ] {
        let got = page_through(as_acme, &format!("/v1/views/edges?{query}")).await;
        assert_eq!(got, want, "{query}");
    }
    type EdgeFilter = Box<dyn Fn(&Edge) -> bool>;
    let edge_filters: Vec<(&str, EdgeFilter)> = vec![
        (
            "state=offline",
            Box::new(|e: &Edge| e.state_name == "offline"),
        ),
        (
            "state=degraded",
            Box::new(|e: &Edge| e.state_name == "degraded"),
        ),
        (
            "state=online",
            Box::new(|e: &Edge| e.state_name == "online"),
        ),
        (
            "customer=contoso",
            Box::new(|e: &Edge| e.customer == "contoso"),
        ),
        ("site=paris", Box::new(|e: &Edge| e.site == "paris")),
        ("has_open_incident=true", Box::new(Edge::has_open_incident)),
        (
            "has_open_incident=false",
            Box::new(|e: &Edge| !e.has_open_incident()),
        ),
        (
            "site=berlin&has_open_incident=true",
            Box::new(|e: &Edge| e.site == "berlin" && e.has_open_incident()),
        ),
    ];
    for (query, keep) in &edge_filters {
        let want = expected(&edges, keep, |_| ());
        assert!(!want.is_empty(), "{query} selects something");
        let got = page_through(as_acme, &format!("/v1/views/edges?{query}&limit=2")).await;
        assert_eq!(got, want, "{query}");
    }
    let (status, detail) = get(&acme, "/v1/views/edges/E-003").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["edge"]["state"], "offline");
    assert_eq!(detail["edge"]["site"], "berlin");
    assert_eq!(detail["edge"]["open_incidents"], 1);
    assert_eq!(detail["edge"]["last_contact_at"], "2026-05-04T09:01:00Z");
    assert_eq!(detail["open_incidents"][0]["kind"], "outage");
    assert_eq!(detail["open_incidents"][0]["ended_at"], Value::Null);
    assert_eq!(detail["recent_incidents"], Value::Array(vec![]));
    let (status, detail) = get(&acme, "/v1/views/edges/E-005").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        detail["edge"]["degraded_links"],
        serde_json::json!(["wan1"])
    );
    assert_eq!(detail["open_incidents"][0]["link"], "wan1");

    // Each tenant sees its own rows only.
    let globex_tickets = page_through(|uri| get(&globex, &uri), "/v1/views/tickets").await;
    assert_eq!(globex_tickets, ["T-001", "T-900"]);
    let (_, globex_t1) = get(&globex, "/v1/views/tickets/T-001").await;
    assert_eq!(globex_t1["ticket"]["customer"], "globex-retail");
    let globex_edges = page_through(|uri| get(&globex, &uri), "/v1/views/edges").await;
    assert_eq!(globex_edges, ["E-900"]);
    for uri in ["/v1/views/tickets/T-002", "/v1/views/edges/E-001"] {
        let (status, problem) = get(&globex, uri).await;
        assert_eq!(status, 404, "{uri}: {problem}");
        assert_eq!(problem["type"], "urn:herald:problem:not-found");
    }

    // A missing id.
    for uri in ["/v1/views/tickets/T-999", "/v1/views/edges/E-999"] {
        let (status, problem) = get(&acme, uri).await;
        assert_eq!(status, 404, "{uri}: {problem}");
        assert_eq!(problem["type"], "urn:herald:problem:not-found");
    }

    // No read on the domain.
    for (key, uri) in [
        (&edges_only, "/v1/views/tickets"),
        (&edges_only, "/v1/views/tickets/T-001"),
        (&tickets_only, "/v1/views/edges"),
        (&tickets_only, "/v1/views/edges/E-001"),
    ] {
        let (status, problem) = get(key, uri).await;
        assert_eq!(status, 403, "{uri}: {problem}");
        assert_eq!(problem["type"], "urn:herald:problem:forbidden");
    }
    let (status, _) = get(&tickets_only, "/v1/views/tickets?limit=1").await;
    assert_eq!(status, 200);

    // Bad parameters.
    let (_, first) = get(&acme, "/v1/views/tickets?limit=2").await;
    let opened_cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, first) = get(&acme, "/v1/views/edges?limit=2").await;
    let id_cursor = first["next_cursor"].as_str().unwrap().to_owned();
    for uri in [
        "/v1/views/tickets?status=pending".to_owned(),
        "/v1/views/tickets?kind=fire".to_owned(),
        "/v1/views/tickets?sort=priority".to_owned(),
        "/v1/views/tickets?order=up".to_owned(),
        "/v1/views/tickets?limit=0".to_owned(),
        "/v1/views/tickets?limit=501".to_owned(),
        "/v1/views/tickets?limit=ten".to_owned(),
        "/v1/views/tickets?cursor=garbage".to_owned(),
        "/v1/views/tickets?priority=high".to_owned(),
        "/v1/views/tickets?status=open&status=closed".to_owned(),
        format!("/v1/views/tickets?sort=updated_at&cursor={opened_cursor}"),
        "/v1/views/tickets/T-001?verbose=true".to_owned(),
        "/v1/views/edges?state=broken".to_owned(),
        "/v1/views/edges?has_open_incident=yes".to_owned(),
        "/v1/views/edges?sort=serial".to_owned(),
        "/v1/views/edges?order=sideways".to_owned(),
        format!("/v1/views/edges?sort=last_contact_at&cursor={id_cursor}"),
        "/v1/views/edges/E-001?x=1".to_owned(),
    ] {
        let (status, problem) = get(&acme, &uri).await;
        assert_eq!(status, 400, "{uri}: {problem}");
        assert_eq!(problem["type"], "urn:herald:problem:invalid-query", "{uri}");
    }
}
