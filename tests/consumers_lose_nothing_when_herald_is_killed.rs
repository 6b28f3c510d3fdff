//! Every consumer resumes from the log after a crash, on every broker and
//! every store: `herald serve` runs the outage monitor's workload (edges
//! registered, reported offline, the monitor's recheck timers firing, one
//! outage ticket opened per edge, then a third of the edges back online and
//! their tickets resolved) and is SIGKILLed three times at random points of
//! the log while commands, reactions and timers are under way, then started
//! again on the same store and broker. In the end: exactly one outage ticket
//! per edge that went offline, each transition once; every recheck timer
//! fired exactly once and confirmed its outage once; and every read model
//! equals a fresh rebuild from the log (`herald replay projection --diff`).
//!
//! Run on the in-process broker (the default; what it held is gone with the
//! process, so the relay must publish again what a group had not settled),
//! RabbitMQ (a virtual host per test) and Kafka (librdkafka's mock cluster,
//! which outlives the killed processes as a real cluster would), each on the
//! embedded store and on Postgres. The kill points are log positions drawn
//! from a seed printed at the start (`HERALD_TEST_SEED` replays one).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_testkit::{eventually, TestDatabase, TestVhost};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{free_port, herald_command, Herald};

/// Edges in the workload; every one goes offline and gets a ticket.
const EDGES: usize = 120;
/// Edges (every third) that come back online, resolving their ticket.
const RESOLVED: usize = EDGES.div_ceil(3);
/// Commands in flight at once, as several producers would send them.
const CONCURRENCY: usize = 8;
/// How long one condition may take; generous for a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(90);
const READ_MODELS: [&str; 6] = [
    "tickets",
    "edges",
    "timers",
    "drafts",
    "statistics",
    "streams",
];

/// One store-and-broker combination and what keeps its servers alive.
struct Setup {
    env: Vec<(&'static str, String)>,
    _database: Option<TestDatabase>,
    _vhost: Option<TestVhost>,
    _kafka: Option<herald_testkit::kafka::MockCluster>,
}

#[derive(Clone, Copy)]
enum Store {
    Embedded,
    Postgres,
}

#[derive(Clone, Copy)]
enum Broker {
    Memory,
    RabbitMq,
    Kafka,
}

impl Setup {
    async fn new(store: Store, broker: Broker) -> Self {
        let mut env = vec![("HERALD_LOG", "warn".to_owned())];
        let mut setup = Setup {
            env: Vec::new(),
            _database: None,
            _vhost: None,
            _kafka: None,
        };
        if let Store::Postgres = store {
            let db = TestDatabase::create().await;
            env.push(("HERALD_STORE", db.url().to_owned()));
            setup._database = Some(db);
        }
        match broker {
            Broker::Memory => {}
            Broker::RabbitMq => {
                let vhost = TestVhost::create().await;
                env.push(("HERALD_BROKER", vhost.url().to_owned()));
                setup._vhost = Some(vhost);
            }
            Broker::Kafka => {
                let cluster = support::kafka::cluster();
                let needed = support::kafka::needed(&cluster.bootstrap_servers());
                support::kafka::create_topics(&cluster, &needed, |_| 4);
                // Short sessions, as the mock allows: a killed member's
                // partitions move to its successor about 2 s after it died.
                env.push((
                    "HERALD_BROKER",
                    format!(
                        "kafka://{}?session.timeout.ms=2000&heartbeat.interval.ms=500",
                        cluster.bootstrap_servers()
                    ),
                ));
                setup._kafka = Some(cluster);
            }
        }
        setup.env = env;
        setup
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// What the log held, read through `GET /v1/events` as it grows.
#[derive(Default)]
struct Log {
    next: u64,
    events: Vec<Value>,
}

impl Log {
    fn head(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    fn count(&self, event_type: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e["type"] == event_type)
            .count()
    }

    /// Reads what was appended since the last read; false when Herald did
    /// not answer.
    async fn follow(&mut self, client: &reqwest::Client, base: &str) -> bool {
        loop {
            let url = format!("{base}/v1/events?from={}&limit=1000", self.next);
            let Ok(resp) = client.get(&url).send().await else {
                return false;
            };
            if !resp.status().is_success() {
                return false;
            }
            let Ok(page) = resp.json::<Value>().await else {
                return false;
            };
            let events = page["events"].as_array().cloned().unwrap_or_default();
            let more = !events.is_empty();
            self.events.extend(events);
            self.next = page["next"].as_u64().unwrap_or(self.next);
            if !more {
                return true;
            }
        }
    }
}

/// Sends commands the way a producer that retries would: each until Herald
/// answers it with success, or with 409 when a retry finds it already done
/// (a second `register`); connection errors and 5xx (Herald killed or
/// starting) are retried.
async fn send_all(base: String, commands: Vec<(String, Value)>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let commands = Arc::new(Mutex::new(commands.into_iter()));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, base, commands) = (client.clone(), base.clone(), Arc::clone(&commands));
            tokio::spawn(async move {
                loop {
                    let next = commands.lock().unwrap().next();
                    let Some((path, body)) = next else { return };
                    let url = format!("{base}{path}");
                    let through = eventually(PATIENCE, || {
                        let answer = client.post(&url).json(&body).send();
                        async {
                            match answer.await.map(|r| r.status().as_u16()) {
                                Ok(200..=299 | 409) => true,
                                Ok(status) if status < 500 && status != 429 => {
                                    panic!("{path} answered {status}")
                                }
                                // Herald is down or starting: try again.
                                _ => false,
                            }
                        }
                    })
                    .await;
                    assert!(through, "{path} never went through");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a command worker failed");
    }
}

fn edge(i: usize) -> String {
    format!("E-{i:03}")
}

fn report(state: &str) -> Value {
    json!({"state": state, "links": [{"name": "wan0", "latency_ms": 12.0, "jitter_ms": 1.0, "packet_loss_pct": 0.0}]})
}

/// The running process and what the test has seen of its log.
struct Run<'a> {
    dir: &'a Path,
    args: Vec<String>,
    setup: &'a Setup,
    herald: Herald,
    client: reqwest::Client,
    log: Log,
    kills: Vec<u64>,
}

impl<'a> Run<'a> {
    async fn start(dir: &'a Path, setup: &'a Setup) -> Run<'a> {
        let listen = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = ["serve", "--listen", &listen, "--outage-recheck", "1s"]
            .map(str::to_owned)
            .to_vec();
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut herald = Herald::start(dir, &arg_refs, &setup.env());
        herald.wait_healthy(PATIENCE).await;
        Run {
            dir,
            args,
            setup,
            herald,
            client: reqwest::Client::new(),
            log: Log::default(),
            kills: Vec::new(),
        }
    }

    fn base(&self) -> String {
        self.herald.base.clone()
    }

    /// Follows the log until `done` holds of it.
    async fn until(&mut self, what: &str, done: impl Fn(&Log) -> bool) {
        let log = Arc::new(tokio::sync::Mutex::new(std::mem::take(&mut self.log)));
        let reached = eventually(PATIENCE, || {
            let (log, client, base) = (Arc::clone(&log), self.client.clone(), self.base());
            let done = &done;
            async move {
                let mut log = log.lock().await;
                log.follow(&client, &base).await;
                done(&log)
            }
        })
        .await;
        self.log = std::mem::take(&mut *log.lock().await);
        assert!(
            reached,
            "{what}: not reached within {PATIENCE:?} (head {}, {} tickets opened, {} resolved, {} timers fired)",
            self.log.head(),
            self.log.count("tickets.ticket_opened"),
            self.log.count("tickets.ticket_resolved"),
            self.log.count("timers.timer_fired"),
        );
    }

    /// SIGKILLs Herald once the log reaches `position` (or `done` holds, if
    /// the work ends first), then starts it again on the same store.
    async fn kill_at(&mut self, position: u64, done: impl Fn(&Log) -> bool) {
        self.until("a kill point", |log| log.head() >= position || done(log))
            .await;
        self.herald.kill9();
        self.kills.push(self.log.head());
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.herald = Herald::start(self.dir, &args, &self.setup.env());
        self.herald.wait_healthy(PATIENCE).await;
    }
}

async fn scenario(store: Store, broker: Broker) {
    let seed: u64 = std::env::var("HERALD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill points drawn from HERALD_TEST_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let setup = Setup::new(store, broker).await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::start(dir.path(), &setup).await;

    // Edges registered and online, then every one reported offline while
    // Herald is killed (kill 1) and again while the monitor's recheck
    // timers fire and its tickets open (kill 2).
    let mut commands = Vec::new();
    for i in 0..EDGES {
        let e = edge(i);
        commands.push((
            format!("/v1/edges/{e}/register"),
            json!({"customer": format!("c-{}", i % 7), "serial": format!("SN-{i}"), "site": "Lyon"}),
        ));
    }
    send_all(run.base(), commands).await;
    let online = (0..EDGES)
        .map(|i| {
            (
                format!("/v1/edges/{}/report_status", edge(i)),
                report("online"),
            )
        })
        .collect();
    send_all(run.base(), online).await;
    run.until("registered", |_| true).await;
    let offline: Vec<(String, Value)> = (0..EDGES)
        .map(|i| {
            (
                format!("/v1/edges/{}/report_status", edge(i)),
                report("offline"),
            )
        })
        .collect();
    let sender = tokio::spawn(send_all(run.base(), offline));
    let all_opened = |log: &Log| log.count("tickets.ticket_opened") >= EDGES;
    let first = run.log.head() + rng.random_range(EDGES as u64 / 4..EDGES as u64);
    run.kill_at(first, all_opened).await;
    let second = run.log.head() + rng.random_range(EDGES as u64 / 2..3 * EDGES as u64);
    run.kill_at(second, all_opened).await;
    sender.await.expect("the offline reports went through");
    run.until("every edge's outage ticket opened", all_opened)
        .await;

    // A third of the edges back online; Herald killed while their tickets
    // are being resolved (kill 3).
    let back: Vec<(String, Value)> = (0..EDGES)
        .step_by(3)
        .map(|i| {
            (
                format!("/v1/edges/{}/report_status", edge(i)),
                report("online"),
            )
        })
        .collect();
    let sender = tokio::spawn(send_all(run.base(), back));
    let all_resolved = |log: &Log| log.count("tickets.ticket_resolved") >= RESOLVED;
    let third = run.log.head() + rng.random_range(RESOLVED as u64 / 2..2 * RESOLVED as u64);
    run.kill_at(third, all_resolved).await;
    sender.await.expect("the online reports went through");
    run.until("every resolved edge's ticket resolved", all_resolved)
        .await;
    run.until("every recheck timer fired", |log| {
        log.count("timers.timer_fired") >= log.count("timers.timer_scheduled")
    })
    .await;
    eprintln!(
        "killed at log positions {:?}; the log ends at {}",
        run.kills,
        run.log.head()
    );
    assert_eq!(run.kills.len(), 3);

    // Every read model caught up with the head, then an orderly stop.
    let head = run.log.head();
    let base = run.base();
    let caught_up = eventually(PATIENCE, || {
        let (client, base) = (run.client.clone(), base.clone());
        async move {
            let Ok(resp) = client.get(format!("{base}/v1/projections")).send().await else {
                return false;
            };
            let Ok(body) = resp.json::<Value>().await else {
                return false;
            };
            let projections = body["projections"].as_array().cloned().unwrap_or_default();
            projections.len() == READ_MODELS.len()
                && projections
                    .iter()
                    .all(|p| p["position"].as_u64().is_some_and(|pos| pos >= head))
        }
    })
    .await;
    assert!(caught_up, "the read models did not catch up with {head}");
    run.log.follow(&run.client, &base).await;
    let status = run.herald.terminate(Duration::from_secs(30));
    assert!(status.success(), "herald exited with {status}");

    check_effects(&run.log);
    for name in READ_MODELS {
        let output = herald_command()
            .current_dir(dir.path())
            .envs(setup.env())
            .args(["replay", "projection", name, "--diff", "--json"])
            .output()
            .expect("run herald replay");
        assert!(
            output.status.success(),
            "the {name} read model differs from a rebuild ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Exactly one effect per cause, read from the whole log.
fn check_effects(log: &Log) {
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    for e in &log.events {
        let stream = e["stream"].as_str().unwrap().to_owned();
        let event_type = e["type"].as_str().unwrap().to_owned();
        streams.entry(stream).or_default().push(event_type);
        *ids.entry(e["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "an event id appears twice");

    for i in 0..EDGES {
        let e = edge(i);
        let ticket = streams
            .get(&format!("tickets/outage.{e}"))
            .unwrap_or_else(|| panic!("{e} has no outage ticket"));
        let expected: &[&str] = if i % 3 == 0 {
            &["tickets.ticket_opened", "tickets.ticket_resolved"]
        } else {
            &["tickets.ticket_opened"]
        };
        assert_eq!(ticket, expected, "the outage ticket of {e}");
        let edge_events = &streams[&format!("edges/{e}")];
        let count = |t: &str| edge_events.iter().filter(|x| *x == t).count();
        assert_eq!(count("edges.edge_went_offline"), 1, "{e}: {edge_events:?}");
        assert_eq!(count("edges.outage_confirmed"), 1, "{e}: {edge_events:?}");
    }
    let tickets = streams.keys().filter(|s| s.starts_with("tickets/")).count();
    assert_eq!(tickets, EDGES, "a ticket other than the outage tickets");

    let timers: Vec<(&String, &Vec<String>)> = streams
        .iter()
        .filter(|(s, _)| s.starts_with("timers/"))
        .collect();
    assert_eq!(timers.len(), EDGES, "one recheck timer per outage");
    for (stream, events) in timers {
        let count = |t: &str| events.iter().filter(|x| *x == t).count();
        assert_eq!(count("timers.timer_scheduled"), 1, "{stream}: {events:?}");
        assert_eq!(count("timers.timer_fired"), 1, "{stream}: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_broker_on_the_embedded_store() {
    scenario(Store::Embedded, Broker::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_broker_on_postgres() {
    scenario(Store::Postgres, Broker::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_on_the_embedded_store() {
    scenario(Store::Embedded, Broker::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_on_postgres() {
    scenario(Store::Postgres, Broker::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_on_the_embedded_store() {
    scenario(Store::Embedded, Broker::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_on_postgres() {
    scenario(Store::Postgres, Broker::Kafka).await;
}
