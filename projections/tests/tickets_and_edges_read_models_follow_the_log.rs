//! The tickets and edges read models follow the log: tickets of two tenants
//! (one id in both) through their whole life, and edges through reports,
//! outages, degraded links and a decommissioning, show up in the tables and
//! queries as their events say, each tenant apart; an event on a ticket
//! never opened is left out, a malformed payload is parked; and a rebuild
//! from the start of the log in big batches yields exactly the rows built
//! live in small ones.

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
use herald_events::{NewEvent, SchemaVersion, StreamId, TenantId, TypedEvent};
use herald_projections::read_models::edges::{self, EdgeQuery, EdgesProjection, IncidentKind};
use herald_projections::read_models::tickets::{
    self, TicketQuery, TicketStatus, TicketsProjection,
};
use herald_projections::{Projection, ProjectionRunner, ReadModels, RunnerConfig};
use herald_store::{EventStore, ExpectedVersion, PostgresConfig, PostgresStore};
use herald_testkit::{eventually, TestDatabase};
use serde_json::json;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(60);

fn at(minute: i64) -> DateTime<Utc> {
    "2026-03-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minute)
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// Appends `events`, each occurring at its minute, to `tenant`'s `stream`.
async fn append(
    store: &Arc<dyn EventStore>,
    tenant_name: &str,
    stream: &str,
    events: Vec<(i64, NewEvent)>,
) {
    let stream: StreamId = stream.parse().unwrap();
    let events = events
        .into_iter()
        .map(|(minute, e)| e.occurred_at(at(minute)))
        .collect();
    store
        .append(&tenant(tenant_name), &stream, ExpectedVersion::Any, events)
        .await
        .expect("append");
}

fn ev(minute: i64, event: impl TypedEvent) -> (i64, NewEvent) {
    (minute, event.to_new_event())
}

fn opened(kind: TicketKind, customer: &str, edge: Option<&str>) -> TicketOpened {
    TicketOpened {
        kind,
        customer: customer.into(),
        edge: edge.map(Into::into),
        description: format!("{customer} is down"),
        opened_by: Some("outage-monitor".into()),
    }
}

fn note(text: &str) -> NoteAppended {
    NoteAppended {
        note: text.into(),
        author: Some("ana".into()),
    }
}

fn report(state: EdgeState, minute: i64, latency_ms: f64) -> EdgeStatusReported {
    EdgeStatusReported {
        state,
        links: vec![LinkReport {
            name: "wan1".into(),
            latency_ms,
            jitter_ms: 1.0,
            packet_loss_pct: 0.0,
        }],
        reported_at: Some(at(minute)),
    }
}

fn registered(customer: &str, site: &str) -> EdgeRegistered {
    EdgeRegistered {
        customer: customer.into(),
        serial: format!("SN-{customer}"),
        site: site.into(),
    }
}

async fn write_the_log(store: &Arc<dyn EventStore>) {
    append(
        store,
        "acme",
        "tickets/T-1",
        vec![
            ev(0, opened(TicketKind::Outage, "northwind", Some("E-1"))),
            ev(1, note("looking")),
            ev(
                2,
                TicketAssigned {
                    assignee: "ana".into(),
                    assigned_by: None,
                },
            ),
            ev(
                3,
                TicketResolved {
                    resolution: Some("rebooted".into()),
                    resolved_by: None,
                },
            ),
            ev(
                4,
                TicketReopened {
                    reason: Some("down again".into()),
                    reopened_by: None,
                },
            ),
            ev(5, note("replaced the router")),
            ev(
                6,
                TicketResolved {
                    resolution: None,
                    resolved_by: None,
                },
            ),
            ev(
                7,
                TicketClosed {
                    reason: None,
                    closed_by: Some("ana".into()),
                },
            ),
        ],
    )
    .await;
    append(
        store,
        "acme",
        "tickets/T-2",
        vec![
            ev(10, opened(TicketKind::Other, "contoso", None)),
            ev(
                11,
                TicketAssigned {
                    assignee: "bo".into(),
                    assigned_by: Some("ana".into()),
                },
            ),
        ],
    )
    .await;
    // Only publishing around the aggregate can do this: left out.
    append(store, "acme", "tickets/T-3", vec![ev(12, note("orphan"))]).await;
    // The same id in another tenant is another ticket.
    append(
        store,
        "globex",
        "tickets/T-1",
        vec![
            ev(
                20,
                opened(TicketKind::Affecting, "globex-retail", Some("G-1")),
            ),
            ev(21, note("slow")),
        ],
    )
    .await;
    // A payload outside the schema: parked, the rest goes on.
    append(
        store,
        "acme",
        "tickets/T-4",
        vec![(
            22,
            NewEvent::new(
                TicketOpened::event_type(),
                SchemaVersion::V1,
                json!({"kind": "meltdown"}),
            ),
        )],
    )
    .await;

    let thresholds = Thresholds {
        latency_ms: 100.0,
        jitter_ms: 20.0,
        packet_loss_pct: 1.0,
    };
    append(
        store,
        "acme",
        "edges/E-1",
        vec![
            ev(0, registered("northwind", "berlin")),
            ev(1, report(EdgeState::Degraded, 1, 400.0)),
            ev(
                1,
                LinkDegraded {
                    link: "wan1".into(),
                    latency_ms: 400.0,
                    jitter_ms: 1.0,
                    packet_loss_pct: 0.0,
                    thresholds,
                },
            ),
            ev(2, report(EdgeState::Offline, 2, 0.0)),
            ev(
                2,
                EdgeWentOffline {
                    previous_state: EdgeState::Degraded,
                    reason: None,
                },
            ),
            ev(
                4,
                OutageConfirmed {
                    offline_since_version: 5,
                    offline_since: Some(at(2)),
                },
            ),
            ev(6, report(EdgeState::Online, 6, 10.0)),
            ev(
                6,
                EdgeCameOnline {
                    previous_state: EdgeState::Offline,
                    offline_since: Some(at(2)),
                },
            ),
            ev(
                6,
                LinkRecovered {
                    link: "wan1".into(),
                },
            ),
            ev(7, EdgeThresholdsSet::from(thresholds)),
        ],
    )
    .await;
    // Reports before the registration: kept, unregistered.
    append(
        store,
        "acme",
        "edges/E-2",
        vec![
            ev(3, report(EdgeState::Offline, 3, 0.0)),
            ev(
                3,
                EdgeWentOffline {
                    previous_state: EdgeState::Online,
                    reason: Some("no report".into()),
                },
            ),
        ],
    )
    .await;
    append(
        store,
        "acme",
        "edges/E-3",
        vec![
            ev(0, registered("contoso", "oslo")),
            ev(
                1,
                LinkDegraded {
                    link: "lte".into(),
                    latency_ms: 1.0,
                    jitter_ms: 1.0,
                    packet_loss_pct: 50.0,
                    thresholds,
                },
            ),
            ev(
                8,
                EdgeDecommissioned {
                    reason: Some("site closed".into()),
                },
            ),
        ],
    )
    .await;
    append(
        store,
        "globex",
        "edges/E-1",
        vec![ev(0, registered("globex-retail", "madrid"))],
    )
    .await;
}

/// Every row of every table of `projection`'s serving generation, as
/// sorted JSON text.
async fn snapshot(read_models: &ReadModels, projection: &dyn Projection) -> Vec<String> {
    let (client, schema) = read_models.serving(projection.name()).await.unwrap();
    let mut rows = Vec::new();
    for table in projection.tables() {
        let all = client
            .query(
                &format!("SELECT to_jsonb(t)::text FROM {schema}.{table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        rows.extend(
            all.iter()
                .map(|r| format!("{table} {}", r.get::<_, String>(0))),
        );
    }
    rows
}

async fn rebuild_and_wait(runner: &ProjectionRunner, name: &str) {
    let before = runner.status(name).await.unwrap().generation;
    let building = runner.rebuild(name).await.unwrap();
    assert_ne!(Some(building), before);
    let switched = eventually(WAIT, || async {
        let status = runner.status(name).await.unwrap();
        status.rebuild.is_none() && status.generation == Some(building)
    })
    .await;
    assert!(switched, "the rebuild of {name} takes over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tickets_and_edges_read_models_follow_the_log() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::open(PostgresConfig::new(db.url()))
        .await
        .unwrap();
    let pool = store.pool().clone();
    let store: Arc<dyn EventStore> = Arc::new(store);
    let tickets_projection = Arc::new(TicketsProjection);
    let edges_projection = Arc::new(EdgesProjection);
    // Small live batches and one big rebuild batch: the folds over stored
    // rows and over a whole log must agree.
    let runner = ProjectionRunner::new(
        pool,
        Arc::clone(&store),
        vec![tickets_projection.clone(), edges_projection.clone()],
    )
    .with_config(RunnerConfig {
        batch_size: 3,
        rebuild_batch_size: 2_000,
        poll_interval: Duration::from_millis(20),
        ..RunnerConfig::default()
    });
    write_the_log(&store).await;
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(stop).await }
    });
    let caught_up = eventually(WAIT, || async {
        let all = runner.statuses().await.unwrap();
        all.len() == 2 && all.iter().all(|s| s.lag_events == 0)
    })
    .await;
    assert!(caught_up, "{:?}", runner.statuses().await);
    let read_models = runner.read_models();
    let (acme, globex) = (tenant("acme"), tenant("globex"));

    // Tickets.
    let parked = runner.parked("tickets").await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].error.contains("ticket_opened"),
        "{}",
        parked[0].error
    );
    let t1 = tickets::get(&read_models, &acme, "T-1")
        .await
        .unwrap()
        .expect("acme's T-1");
    let ticket = &t1.ticket;
    assert_eq!(ticket.kind, "outage");
    assert_eq!(ticket.status, TicketStatus::Closed);
    assert_eq!(ticket.customer, "northwind");
    assert_eq!(ticket.edge.as_deref(), Some("E-1"));
    assert_eq!(ticket.assignee.as_deref(), Some("ana"));
    assert_eq!(ticket.opened_by.as_deref(), Some("outage-monitor"));
    assert_eq!((ticket.opened_at, ticket.updated_at), (at(0), at(7)));
    assert_eq!(
        ticket.resolved_at,
        Some(at(6)),
        "the resolution after the reopening"
    );
    assert_eq!(ticket.closed_at, Some(at(7)));
    assert_eq!(
        (ticket.reopen_count, ticket.note_count, ticket.version),
        (1, 2, 8)
    );
    let notes: Vec<(u64, &str)> = t1
        .notes
        .iter()
        .map(|n| (n.stream_version, n.note.as_str()))
        .collect();
    assert_eq!(notes, [(2, "looking"), (6, "replaced the router")]);
    assert_eq!(t1.notes[0].author.as_deref(), Some("ana"));
    let history: Vec<&str> = t1.history.iter().map(|h| h.event_type.as_str()).collect();
    assert_eq!(
        history,
        [
            "tickets.ticket_opened",
            "tickets.note_appended",
            "tickets.ticket_assigned",
            "tickets.ticket_resolved",
            "tickets.ticket_reopened",
            "tickets.note_appended",
            "tickets.ticket_resolved",
            "tickets.ticket_closed",
        ]
    );
    assert_eq!(
        t1.history[0].summary,
        json!({"kind": "outage", "customer": "northwind", "edge": "E-1", "opened_by": "outage-monitor"}),
        "the summary leaves the description out"
    );
    assert_eq!(t1.history[3].summary, json!({"resolution": "rebooted"}));
    assert!(t1.history.windows(2).all(|w| w[0].position < w[1].position));
    assert!(tickets::get(&read_models, &acme, "T-3")
        .await
        .unwrap()
        .is_none());
    assert!(tickets::get(&read_models, &acme, "T-4")
        .await
        .unwrap()
        .is_none());

    let acme_tickets = tickets::list(&read_models, &acme, &TicketQuery::default())
        .await
        .unwrap();
    let ids: Vec<&str> = acme_tickets.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["T-1", "T-2"]);
    assert_eq!(acme_tickets.next_cursor, None);
    let t2 = &acme_tickets.items[1];
    assert_eq!(
        (t2.status, t2.assignee.as_deref(), t2.edge.as_deref()),
        (TicketStatus::Open, Some("bo"), None)
    );
    let globex_t1 = tickets::get(&read_models, &globex, "T-1")
        .await
        .unwrap()
        .expect("globex's T-1");
    assert_eq!(
        (
            globex_t1.ticket.kind.as_str(),
            globex_t1.ticket.customer.as_str(),
            globex_t1.ticket.note_count
        ),
        ("affecting", "globex-retail", 1)
    );
    assert_eq!(globex_t1.notes.len(), 1);
    let open_acme = tickets::list(
        &read_models,
        &acme,
        &TicketQuery {
            status: Some(TicketStatus::Open),
            ..TicketQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(open_acme.items.len(), 1);
    assert_eq!(open_acme.items[0].id, "T-2");

    // Edges.
    assert!(runner.parked("edges").await.unwrap().is_empty());
    let e1 = edges::get(&read_models, &acme, "E-1")
        .await
        .unwrap()
        .expect("acme's E-1");
    let edge = &e1.edge;
    assert!(edge.registered);
    assert_eq!(
        (
            edge.customer.as_deref(),
            edge.site.as_deref(),
            edge.state.as_str()
        ),
        (Some("northwind"), Some("berlin"), "online")
    );
    assert_eq!(edge.last_contact_at, Some(at(6)));
    assert_eq!(edge.offline_since, None);
    assert!(edge.degraded_links.is_empty());
    assert_eq!(edge.thresholds.map(|t| t.latency_ms), Some(100.0));
    assert_eq!((edge.open_incidents, edge.version), (0, 10));
    assert!(e1.open_incidents.is_empty());
    let recent: Vec<_> = e1
        .recent_incidents
        .iter()
        .map(|i| (i.kind, i.link.as_deref(), i.started_at, i.ended_at))
        .collect();
    assert_eq!(
        recent,
        [
            (IncidentKind::Outage, None, at(2), Some(at(6))),
            (IncidentKind::LinkDegraded, Some("wan1"), at(1), Some(at(6))),
        ]
    );
    let outage = &e1.recent_incidents[0];
    assert_eq!((outage.seq, outage.confirmed_at), (5, Some(at(4))));

    let e2 = edges::get(&read_models, &acme, "E-2")
        .await
        .unwrap()
        .expect("acme's unregistered E-2");
    assert!(!e2.edge.registered);
    assert_eq!(e2.edge.customer, None);
    assert_eq!(e2.edge.state, "offline");
    assert_eq!(e2.edge.offline_since, Some(at(3)));
    assert_eq!(e2.edge.open_incidents, 1);
    assert_eq!(e2.open_incidents.len(), 1);
    assert_eq!(e2.open_incidents[0].kind, IncidentKind::Outage);
    assert_eq!(e2.open_incidents[0].ended_at, None);

    let e3 = edges::get(&read_models, &acme, "E-3")
        .await
        .unwrap()
        .unwrap();
    assert!(e3.edge.decommissioned);
    assert_eq!(e3.edge.decommissioned_at, Some(at(8)));
    assert_eq!(e3.edge.degraded_links, ["lte"]);
    assert_eq!(e3.edge.last_contact_at, None, "it never reported");
    assert!(e3.open_incidents.is_empty(), "decommissioning ends them");
    assert_eq!(e3.recent_incidents[0].ended_at, Some(at(8)));

    let with_incident = edges::list(
        &read_models,
        &acme,
        &EdgeQuery {
            has_open_incident: Some(true),
            ..EdgeQuery::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = with_incident.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["E-2"]);
    let globex_edges = edges::list(&read_models, &globex, &EdgeQuery::default())
        .await
        .unwrap();
    assert_eq!(globex_edges.items.len(), 1);
    assert_eq!(
        globex_edges.items[0].customer.as_deref(),
        Some("globex-retail")
    );

    // A rebuild yields the same rows.
    let live_tickets = snapshot(&read_models, tickets_projection.as_ref()).await;
    let live_edges = snapshot(&read_models, edges_projection.as_ref()).await;
    assert_eq!(
        live_tickets.len(),
        3 + 3 + 12,
        "tickets, notes, history rows"
    );
    assert_eq!(live_edges.len(), 4 + 4, "edges and incidents rows");
    rebuild_and_wait(&runner, "tickets").await;
    rebuild_and_wait(&runner, "edges").await;
    assert_eq!(
        snapshot(&read_models, tickets_projection.as_ref()).await,
        live_tickets
    );
    assert_eq!(
        snapshot(&read_models, edges_projection.as_ref()).await,
        live_edges
    );

    stop_tx.send(true).unwrap();
    task.await.unwrap().expect("the runner stops cleanly");
}
