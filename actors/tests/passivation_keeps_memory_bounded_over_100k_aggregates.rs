//! Passivation bounds memory: 100,000 distinct tickets, each opened once by
//! 64 concurrent senders, through a group capped at 1,000 live actors. The
//! group never holds more than its cap, every command succeeds (100,000
//! `tickets.ticket_opened` events, one per ticket, in the store), and the
//! process's peak resident memory grows by a bounded amount, far below what
//! 100,000 live aggregates would take.
//!
//! The figures (time, cap, live actors, VmRSS/VmHWM from /proc/self/status)
//! are printed: `cargo test -p herald-actors --test
//! passivation_keeps_memory_bounded_over_100k_aggregates -- --nocapture`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_actors::tickets::{Ticket, TicketCommand};
use herald_actors::{ActorRuntime, AggregateGroup, CommandMeta, GroupConfig};
use herald_events::tickets::TicketKind;
use herald_events::{EventRegistry, TenantId};
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;

const TICKETS: usize = 100_000;
const SENDERS: usize = 64;
const CAP: usize = 1_000;
/// The most the peak resident set may grow over the run.
///
/// Measured on the debug build (glibc malloc, 2 cores, 64 senders):
/// - as here, cap 1,000: the peak grows by ~23 MiB;
/// - the same 100,000 events appended straight to the store, no actors:
///   ~19 MiB, growing with the number of streams (the Postgres writer
///   remembers each stream's version, up to 100,000 streams). So the actor
///   runtime's share is a few MiB, the 1,000 live actors included;
/// - the same run with the cap raised to 100,000 (every aggregate stays
///   live, as if passivation released nothing): the peak grows by ~182 MiB,
///   ~1.6 KiB per live ticket actor.
///
/// 100 MiB is four times what the capped run takes, room for allocator and
/// scheduling noise, and a little over half of what keeping the aggregates
/// live takes, so the test fails when passivation stops releasing actors
/// (a bound of 300 MiB would not: 100,000 live tickets fit in it).
const MAX_GROWTH_MIB: f64 = 100.0;
/// Commands done at which the resident set is sampled for the printout.
const MARKS: [usize; 5] = [CAP, 10_000, 25_000, 50_000, 75_000];

/// VmRSS and VmHWM of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| -> f64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"));
        let kib: f64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        kib / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open() -> TicketCommand {
    TicketCommand::Open {
        kind: TicketKind::Other,
        customer: "acme".into(),
        edge: None,
        description: "link flapping on the uplink".into(),
        opened_by: None,
    }
}

#[actix_rt::test]
async fn passivation_keeps_memory_bounded_over_100k_aggregates() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::open(PostgresConfig::new(db.url()))
        .await
        .expect("open the Postgres store");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = ActorRuntime::start(threads);
    let group = AggregateGroup::<Ticket>::new(
        Arc::new(store.clone()) as Arc<dyn EventStore>,
        EventRegistry::builtin().expect("the built-in schemas"),
        Arc::clone(&runtime),
        GroupConfig {
            max_actors: CAP,
            ..GroupConfig::default()
        },
    );
    let tenant = TenantId::default_tenant();
    let (rss_before, hwm_before) = memory();

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let most_live = Arc::new(AtomicUsize::new(0));
    let marks = Arc::new(Mutex::new(Vec::new()));

    // Samples the live actors and the resident set while the senders run.
    let sampler = {
        let (group, done, finished) = (group.clone(), done.clone(), finished.clone());
        let (most_live, marks) = (most_live.clone(), marks.clone());
        actix_rt::spawn(async move {
            let mut samples = 0u64;
            let mut mark = 0;
            // A sample every 5 ms (the senders also check after each command).
            let mut every = actix_rt::time::interval(Duration::from_millis(5));
            while !finished.load(Ordering::Acquire) {
                every.tick().await;
                let live = group.live();
                most_live.fetch_max(live, Ordering::Relaxed);
                assert!(live <= CAP, "{live} live actors past the cap of {CAP}");
                let completed = done.load(Ordering::Relaxed);
                if mark < MARKS.len() && completed >= MARKS[mark] {
                    let (rss, hwm) = memory();
                    marks.lock().unwrap().push((completed, live, rss, hwm));
                    mark += 1;
                }
                samples += 1;
            }
            samples
        })
    };

    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (group, tenant) = (group.clone(), tenant.clone());
            let (next, done, most_live) = (next.clone(), done.clone(), most_live.clone());
            actix_rt::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= TICKETS {
                        return;
                    }
                    let executed = group
                        .execute(&tenant, &format!("T-{n}"), open(), CommandMeta::default())
                        .await
                        .unwrap_or_else(|e| panic!("open T-{n}: {e}"));
                    assert_eq!(executed.stream_version, 1, "T-{n} opened once");
                    done.fetch_add(1, Ordering::Relaxed);
                    let live = group.live();
                    most_live.fetch_max(live, Ordering::Relaxed);
                    assert!(live <= CAP, "{live} live actors past the cap of {CAP}");
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("a sender");
    }
    let elapsed = started.elapsed();
    let (rss_end, hwm_end) = memory();
    finished.store(true, Ordering::Release);
    let samples = sampler.await.expect("the sampler");

    // Every command took effect: one ticket_opened per ticket, nothing else.
    assert_eq!(done.load(Ordering::Relaxed), TICKETS);
    let head = store.head().await.expect("read the log head");
    assert_eq!(head.position.get(), TICKETS as u64, "events in the log");
    let admin = db.connect().await;
    let row = admin
        .query_one(
            "SELECT count(*), count(DISTINCT stream_id) FROM herald_events \
             WHERE event_type = 'tickets.ticket_opened'",
            &[],
        )
        .await
        .expect("count the opened tickets");
    let (opened, tickets): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        (opened, tickets),
        (TICKETS as i64, TICKETS as i64),
        "one ticket_opened per ticket"
    );
    let live_end = group.live();
    assert!(live_end <= CAP);

    let most_live = most_live.load(Ordering::Relaxed);
    println!(
        "{TICKETS} tickets opened by {SENDERS} senders in {:.1} s ({:.0} commands/s), \
         {threads} actor threads, cap {CAP} live actors",
        elapsed.as_secs_f64(),
        TICKETS as f64 / elapsed.as_secs_f64(),
    );
    println!(
        "live actors: at most {most_live} seen ({samples} samples plus one after each command), \
         {live_end} at the end"
    );
    println!("before: VmRSS {rss_before:.1} MiB, VmHWM {hwm_before:.1} MiB");
    for (completed, live, rss, hwm) in marks.lock().unwrap().iter() {
        println!(
            "after {completed:>6} commands: {live:>4} live, VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB"
        );
    }
    println!("after:  VmRSS {rss_end:.1} MiB, VmHWM {hwm_end:.1} MiB");
    let growth = hwm_end - rss_before;
    println!(
        "peak growth {growth:.1} MiB (VmHWM after - VmRSS before), bound {MAX_GROWTH_MIB:.0} MiB"
    );

    assert!(
        most_live <= CAP,
        "{most_live} live actors past the cap of {CAP}"
    );
    assert!(
        growth < MAX_GROWTH_MIB,
        "the peak resident set grew by {growth:.1} MiB over {TICKETS} aggregates \
         (bound {MAX_GROWTH_MIB} MiB): passivation does not release memory"
    );
    runtime.stop();
    store.close().await;
}
