//! A mixed, valid workload over every domain the read models read: tickets
//! (opened, noted, assigned, resolved, some reopened and resolved again),
//! edges (registered, reports, outages), drafts (created, patched, published),
//! timers (scheduled, fired), countdowns (created, viewed, expired) and
//! editor sessions (started, ended), spread over tenants, customers and
//! days. Deterministic for a seed, so a bench and a test see the same log.
//! Shared by `benches/rebuild.rs` and the rebuild tests (`#[path]`).
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_events::{EventType, NewEvent, SchemaVersion, StreamId, TenantId};
use herald_store::{EventStore, ExpectedVersion};
use serde_json::{json, Value};

/// One stream's events, appended together.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    pub tenant: TenantId,
    pub stream: StreamId,
    pub events: Vec<NewEvent>,
}

/// A small deterministic generator (xorshift64*), so the workload needs no
/// random-number crate and repeats exactly for a seed.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn event(event_type: &str, at: DateTime<Utc>, payload: Value) -> NewEvent {
    let event_type: EventType = event_type.parse().expect("a valid event type");
    NewEvent::new(event_type, SchemaVersion::V1, payload).occurred_at(at)
}

fn stream(domain: &str, id: String) -> StreamId {
    format!("{domain}/{id}").parse().expect("a valid stream id")
}

/// About `total` events (never fewer) over `tenants`, as per-stream batches.
pub fn mixed(total: usize, tenants: &[&str], seed: u64) -> Vec<StreamBatch> {
    let mut dice = Dice::new(seed);
    let epoch = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut batches = Vec::new();
    let mut count = 0;
    let mut unit = 0u64;
    while count < total {
        let tenant: TenantId = tenants[dice.below(tenants.len() as u64) as usize]
            .parse()
            .expect("a valid tenant");
        let customer = format!("customer-{}", dice.below(20));
        // Each unit starts at some minute of November and moves on by minutes.
        let start = epoch + Duration::minutes(dice.below(29 * 24 * 60) as i64);
        let minutes = |n: u64| start + Duration::minutes(n as i64);
        let (domain, events) = match unit % 6 {
            0 => {
                let kind = ["outage", "affecting", "other"][dice.below(3) as usize];
                let mut events = vec![
                    event(
                        "tickets.ticket_opened",
                        minutes(0),
                        json!({"kind": kind,
                               "customer": customer, "edge": format!("edge-{}", dice.below(50)),
                               "description": "a workload ticket"}),
                    ),
                    event(
                        "tickets.note_appended",
                        minutes(5),
                        json!({"note": "looking into it", "author": "ops"}),
                    ),
                    event(
                        "tickets.ticket_assigned",
                        minutes(7),
                        json!({"assignee": format!("agent-{}", dice.below(8))}),
                    ),
                    event(
                        "tickets.ticket_resolved",
                        minutes(10 + dice.below(600)),
                        json!({"resolution": "fixed"}),
                    ),
                ];
                if dice.below(4) == 0 {
                    events.push(event(
                        "tickets.ticket_reopened",
                        minutes(700),
                        json!({"reason": "again"}),
                    ));
                    events.push(event("tickets.ticket_resolved", minutes(760), json!({})));
                }
                ("tickets", events)
            }
            1 => {
                let down = dice.below(300) + 1;
                (
                    "edges",
                    vec![
                        event(
                            "edges.edge_registered",
                            minutes(0),
                            json!({"customer": customer, "serial": format!("SN{unit}"), "site": format!("site-{}", dice.below(10))}),
                        ),
                        event(
                            "edges.edge_status_reported",
                            minutes(1),
                            json!({"state": "online", "links": [{"name": "wan1", "latency_ms": 12.5, "jitter_ms": 1.0, "packet_loss_pct": 0.0}]}),
                        ),
                        event(
                            "edges.edge_went_offline",
                            minutes(10),
                            json!({"previous_state": "online", "reason": "no reports"}),
                        ),
                        event(
                            "edges.edge_came_online",
                            minutes(10 + down),
                            json!({"previous_state": "offline", "offline_since": minutes(10)}),
                        ),
                        event(
                            "edges.edge_status_reported",
                            minutes(11 + down),
                            json!({"state": "online", "links": []}),
                        ),
                    ],
                )
            }
            2 => {
                let mut events = vec![event(
                    "drafts.draft_created",
                    minutes(0),
                    json!({"title": format!("Draft {unit}"), "document": {"title": "t", "items": []}}),
                )];
                for v in 1..=4u64 {
                    events.push(event(
                        "drafts.draft_patched",
                        minutes(v),
                        json!({"patch": [{"op": "add", "path": "/items/-", "value": {"n": v, "text": "autosaved paragraph"}}],
                               "base_version": v, "version": v + 1, "author": "editor-1"}),
                    ));
                }
                events.push(event(
                    "drafts.draft_published",
                    minutes(6),
                    json!({"version": 5}),
                ));
                ("drafts", events)
            }
            3 => (
                "timers",
                vec![
                    event(
                        "timers.timer_scheduled",
                        minutes(0),
                        json!({"due_at": minutes(30), "label": "follow up",
                               "deliver": {"kind": "event", "domain": "tickets", "stream_id": format!("t{unit}"),
                                           "name": "note_appended", "body": {"note": "reminder"}}}),
                    ),
                    event(
                        "timers.timer_fired",
                        minutes(30),
                        json!({"occurrence": 1, "due_at": minutes(30), "fired_at": minutes(30), "late": false}),
                    ),
                ],
            ),
            4 => (
                "timers",
                vec![
                    event(
                        "timers.countdown_created",
                        minutes(0),
                        json!({"deadline": minutes(120), "label": "launch"}),
                    ),
                    event(
                        "timers.countdown_viewed",
                        minutes(3),
                        json!({"views": 1, "viewed_at": minutes(3)}),
                    ),
                    event(
                        "timers.countdown_viewed",
                        minutes(4),
                        json!({"views": 2, "viewed_at": minutes(4)}),
                    ),
                    event(
                        "timers.countdown_expired",
                        minutes(120),
                        json!({"deadline": minutes(120), "views": 2}),
                    ),
                ],
            ),
            _ => (
                "statistics",
                vec![
                    event(
                        "statistics.session_started",
                        minutes(0),
                        json!({"editor": format!("editor-{}", dice.below(12)), "customer": customer, "started_at": minutes(0)}),
                    ),
                    event(
                        "statistics.session_ended",
                        minutes(1 + dice.below(90)),
                        json!({"ended_at": minutes(1 + dice.below(90))}),
                    ),
                ],
            ),
        };
        count += events.len();
        batches.push(StreamBatch {
            tenant,
            stream: stream(domain, format!("w{seed}-{unit}")),
            events,
        });
        unit += 1;
    }
    batches
}

/// Appends `batches` with `concurrency` appenders; returns the events
/// appended.
pub async fn append_all(
    store: &Arc<dyn EventStore>,
    batches: Vec<StreamBatch>,
    concurrency: usize,
) -> usize {
    use futures::StreamExt;
    let total: usize = batches.iter().map(|b| b.events.len()).sum();
    futures::stream::iter(batches)
        .map(|b| {
            let store = Arc::clone(store);
            async move {
                store
                    .append(
                        &b.tenant,
                        &b.stream,
                        ExpectedVersion::Exact(herald_events::StreamVersion(0)),
                        b.events,
                    )
                    .await
                    .expect("append a workload stream")
            }
        })
        .buffer_unordered(concurrency.max(1))
        .for_each(|_| async {})
        .await;
    total
}
