//! Countdown images as mail clients fetch them: `herald serve` started as
//! users start it (embedded defaults: SQLite in the working directory; an
//! admin key for the commands, the images public; `HERALD_MAX_CONNECTIONS_PER_CLIENT=0` so the
//! bench's thousand connections from one address are not capped), 100
//! countdowns (deadline 2 days away, a 480×120 style with the four units and
//! their labels), an image URL issued for each, and their GIFs fetched over
//! keep-alive HTTP. Each fetch before the deadline is one durable append
//! (`timers.countdown_viewed`, through the countdown's actor) and the GIF of
//! a countdown is rendered once per second and shared by every request of
//! that second. Issue target: p99 < 50 ms at 500 images/s.
//!
//! Phases, each a warm-up then a measured window:
//! 1. closed loop: 1,000 concurrent fetchers, each fetching a random one of
//!    the 100 URLs again as soon as it has the answer: images/s, p50/p99,
//!    and the `herald` process's CPU per image (`/proc`, over the window);
//! 2. open loop: a fetch scheduled every 1/500 s (each spawned, at most
//!    1,000 in flight, so slow answers do not lower the offered rate):
//!    achieved images/s and p50/p99/max latency from each fetch's
//!    *scheduled* time, and whether the target is met;
//! 3. and 4. the same two loops on 100 countdowns whose deadline has passed
//!    (created with a deadline 3 s away): such a fetch records no view and
//!    its one-frame image never changes, so the difference to 1 and 2 is
//!    the cost of the append and of the per-second renders.
//!
//! Every answer must be 200 with a GIF body, and the views the countdowns
//! recorded (the sum of `state.views` over `GET /v1/timers/{id}`, before vs
//! after a phase) must equal the 200 answers of the running phases (each
//! fetch counted once) and stay unchanged on the expired ones.
//!
//! Beside it, in the same run: the render cost (`render_gif` of a 60-frame
//! GIF of the same style, in process, before `herald` starts: median and p99),
//! the cost of an image the cache already holds (`ImageCache::image` for a
//! rendered key and second), and the raw limit of one durable append per
//! image: single-row inserts into a copy of the embedded event table (WAL,
//! `synchronous=FULL`, as the store runs), one per transaction, from 1
//! connection and from one connection per countdown (the most appends the
//! store is asked for at once: one per countdown actor), measured while no
//! `herald` runs (before it starts and after it stops, averaged).
//! Images/s are printed as ratios of both.
//!
//! Run with `cargo bench --bench countdown`. `HERALD_BENCH_SECONDS` sets
//! each window (default 15), `HERALD_BENCH_RATE` the open loop's images/s
//! (default 500), `HERALD_BENCH_FETCHERS` the closed loop's fetchers and the
//! open loop's most in flight (default 1000), `HERALD_BENCH_COUNTDOWNS`
//! (default 100), `HERALD_BENCH_RENDERS` the timed renders (default 200),
//! `HERALD_BENCH_RAW_SECONDS` each raw window (default 5);
//! `HERALD_BENCH_BINARY` runs another `herald` build than the bench's own.
//! `cargo test --benches` runs a smoke pass in seconds (5 countdowns, 50
//! fetchers for 2 s, 100 images/s for 2 s, 20 renders) that checks every
//! answer and count but no performance figure; `-- --list` names the
//! phases without starting anything.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use herald_countdown::{render_gif, ImageCache, Style};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

// Shared with the other benches; this one uses part of them.
#[allow(dead_code)]
#[path = "support/raw_postgres.rs"]
mod raw_postgres;
#[allow(dead_code)]
#[path = "support/serve_process.rs"]
mod serve_process;

#[path = "support/raw_sqlite.rs"]
mod raw_sqlite;
use raw_sqlite::{copy_event_table, raw_sqlite_inserts};

use raw_postgres::{mode, Mode};
use serve_process::{cpu_ticks, create_key, free_port, herald_command, Herald, TICKS_PER_SECOND};

/// The target: p99 below this at [`TARGET_RATE`].
const TARGET_P99: Duration = Duration::from_millis(50);
const TARGET_RATE: f64 = 500.0;
/// Frames of a served GIF (`herald serve`'s default).
const FRAMES: u32 = 60;
/// Cached images fetched to time one shared hit.
const CACHE_HITS: u32 = 20_000;
const GIF_MAGIC: &[u8] = b"GIF89a";

#[derive(Debug, Clone, Copy)]
struct Settings {
    countdowns: usize,
    fetchers: usize,
    rate: f64,
    warmup: Duration,
    window: Duration,
    renders: usize,
    raw_warmup: Duration,
    raw_window: Duration,
}

impl Settings {
    fn for_mode(mode: Mode) -> Self {
        if mode != Mode::Full {
            return Settings {
                countdowns: 5,
                fetchers: 50,
                rate: 100.0,
                warmup: Duration::from_millis(200),
                window: Duration::from_secs(2),
                renders: 20,
                raw_warmup: Duration::from_millis(50),
                raw_window: Duration::from_millis(300),
            };
        }
        let seconds = |name: &str, default: f64| {
            Duration::from_secs_f64(
                env_number::<f64>(name)
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .unwrap_or(default),
            )
        };
        Settings {
            countdowns: env_number("HERALD_BENCH_COUNTDOWNS").unwrap_or(100).max(1),
            fetchers: env_number("HERALD_BENCH_FETCHERS").unwrap_or(1000).max(1),
            rate: env_number::<f64>("HERALD_BENCH_RATE")
                .filter(|r| r.is_finite() && *r > 0.0)
                .unwrap_or(TARGET_RATE),
            warmup: Duration::from_secs(2),
            window: seconds("HERALD_BENCH_SECONDS", 15.0),
            renders: env_number("HERALD_BENCH_RENDERS").unwrap_or(200).max(1),
            raw_warmup: Duration::from_secs(1),
            raw_window: seconds("HERALD_BENCH_RAW_SECONDS", 5.0),
        }
    }
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

const PHASES: [&str; 6] = [
    "render",
    "cache_hit",
    "closed_loop",
    "open_loop",
    "closed_loop_expired",
    "open_loop_expired",
];

/// The raw insert beside Herald's: a `countdown_viewed` as a fetch writes.
const COUNTDOWN_VIEWED: raw_sqlite::RawEvent = raw_sqlite::RawEvent {
    domain: "timers",
    event_type: "timers.countdown_viewed",
    producer: "http:countdown-image",
    payload: |n| {
        let at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        json!({"client": "gmail_proxy", "viewed_at": at, "views": n / 100 + 1}).to_string()
    },
};

fn main() {
    let mode = mode();
    if mode == Mode::List {
        for phase in PHASES {
            println!("countdown/{phase}: benchmark");
        }
        return;
    }
    let settings = Settings::for_mode(mode);
    // The fetchers get one thread: the machine's other cores are herald's,
    // as on a host that only serves.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the fetchers");
    let report = runtime.block_on(run(settings));
    report.print(settings);
    if mode != Mode::Full {
        println!(
            "smoke run: answers and counts checked; figures and the target are for full runs \
             (`cargo bench --bench countdown`)"
        );
    }
}

// ---------------------------------------------------------------------------
// The run.

#[derive(Debug)]
struct Report {
    render: RenderCost,
    cache_hit: Duration,
    /// Raw single-row commits/s by connections: (connections, before, after).
    raw: Vec<(usize, f64, f64)>,
    closed: Figures,
    open: Figures,
    closed_expired: Figures,
    open_expired: Figures,
}

#[derive(Debug)]
struct RenderCost {
    median: Duration,
    p99: Duration,
    bytes: usize,
}

/// What one phase measured over its window.
#[derive(Debug, Default)]
struct Figures {
    /// 200 answers completed in the window, per second.
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// `herald` CPU per image answered in the window.
    cpu_ms_per_image: f64,
    /// Mean GIF size.
    mean_bytes: f64,
    /// 200 answers over the whole phase (warm-up and tail included).
    answered: u64,
    /// Views the countdowns recorded over the phase.
    views: u64,
    /// Open loop: fetches offered in the window, those not sent because
    /// the most allowed were in flight, and the most in flight at once.
    offered: u64,
    skipped: u64,
    peak_in_flight: usize,
}

async fn run(settings: Settings) -> Report {
    // In process, before herald runs: nothing else on the cores.
    let render = tokio::task::spawn_blocking(move || render_cost(settings.renders))
        .await
        .expect("the render timings");
    let cache_hit = cache_hit_cost().await;

    let dir = tempfile::tempdir().expect("a working directory");
    // The store is made (by creating a key, which serve does not need) so
    // that the raw table can copy the event table before herald starts.
    // Once a key exists the API asks for one (the images stay public).
    let key = create_key(dir.path(), &[]);
    let store = dir.path().join("data").join("herald.db");
    let raw_file = dir.path().join("raw.db");
    copy_event_table(&store, &raw_file);
    let levels = raw_levels(settings);
    let before = raw_rates(&raw_file, &levels, settings).await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut herald = Herald {
        child: herald_command()
            .current_dir(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--log", "warn"])
            .env("HERALD_MAX_CONNECTIONS_PER_CLIENT", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn herald serve"),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.fetchers)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");
    herald.wait_ready(&http, &base).await;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        key,
    };
    let pid = herald.child.id();

    // The expired ones first, so their deadlines pass while the running
    // ones are made (and before anything is measured).
    let expired_ids: Vec<String> = (0..settings.countdowns)
        .map(|n| format!("bench-expired-{n}"))
        .collect();
    let expired = api
        .create_all(&expired_ids, || Utc::now() + TimeDelta::seconds(3))
        .await;
    let running_ids: Vec<String> = (0..settings.countdowns)
        .map(|n| format!("bench-running-{n}"))
        .collect();
    let far = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::days(2);
    let running = api.create_all(&running_ids, || far).await;
    let last_deadline = expired.deadline;
    let passed = herald_testkit::eventually(Duration::from_secs(30), || async {
        Utc::now() > last_deadline + TimeDelta::milliseconds(500)
    })
    .await;
    assert!(passed, "the expired countdowns' deadlines passed");

    let closed = api
        .phase(&running_ids, true, || {
            closed_loop(&http, &running.urls, settings, pid)
        })
        .await;
    let open = api
        .phase(&running_ids, true, || {
            open_loop(&http, &running.urls, settings, pid)
        })
        .await;
    let closed_expired = api
        .phase(&expired_ids, false, || {
            closed_loop(&http, &expired.urls, settings, pid)
        })
        .await;
    let open_expired = api
        .phase(&expired_ids, false, || {
            open_loop(&http, &expired.urls, settings, pid)
        })
        .await;
    herald.terminate();
    drop(herald);

    let after = raw_rates(&raw_file, &levels, settings).await;
    Report {
        render,
        cache_hit,
        raw: levels
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(&c, (&b, &a))| (c, b, a))
            .collect(),
        closed,
        open,
        closed_expired,
        open_expired,
    }
}

// ---------------------------------------------------------------------------
// The API.

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// Countdowns made: their image URLs and the latest deadline.
struct Made {
    urls: Arc<Vec<String>>,
    deadline: DateTime<Utc>,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Creates each countdown with the deadline `deadline()` gives at its
    /// creation, and issues its image URL.
    async fn create_all(&self, ids: &[String], deadline: impl Fn() -> DateTime<Utc>) -> Made {
        let mut urls = Vec::new();
        let mut latest = DateTime::<Utc>::MIN_UTC;
        for id in ids {
            let at = deadline();
            latest = latest.max(at);
            let (status, body) = self
                .post(
                    &format!("/v1/timers/{id}/create_countdown"),
                    json!({
                        "deadline": at,
                        "label": "Offer ends",
                        "style": {"width": 480, "height": 120},
                    }),
                )
                .await;
            assert_eq!(status, 201, "create_countdown {id}: {body}");
            let (status, body) = self
                .post(&format!("/v1/countdowns/{id}/image_url"), json!({}))
                .await;
            assert_eq!(status, 201, "image_url {id}: {body}");
            let path = body["image_path"].as_str().expect("an image_path");
            urls.push(format!("{}{path}", self.base));
        }
        Made {
            urls: Arc::new(urls),
            deadline: latest,
        }
    }

    async fn views(&self, ids: &[String]) -> u64 {
        let mut sum = 0;
        for id in ids {
            let r = self
                .http
                .get(format!("{}/v1/timers/{id}", self.base))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET /v1/timers/{id}: {e}"));
            assert_eq!(r.status(), 200, "GET /v1/timers/{id}");
            let state: Value = r.json().await.expect("a timer's state");
            sum += state["state"]["views"]
                .as_u64()
                .unwrap_or_else(|| panic!("{id} has no views: {state}"));
        }
        sum
    }

    /// Waits until every read model has applied every view of the phase
    /// before (tens of thousands after a closed loop): each phase is
    /// measured from a caught-up Herald, not while it works off a backlog.
    async fn settled(&self) {
        let url = format!("{}/v1/projections", self.base);
        let started = std::time::Instant::now();
        let caught_up = herald_testkit::eventually(Duration::from_secs(300), || async {
            let Ok(r) = self.http.get(&url).bearer_auth(&self.key).send().await else {
                return false;
            };
            let list: Value = r.json().await.unwrap_or(Value::Null);
            list["projections"]
                .as_array()
                .is_some_and(|all| !all.is_empty() && all.iter().all(|p| p["lag_events"] == 0))
        })
        .await;
        assert!(caught_up, "the read models caught up before the phase");
        eprintln!(
            "read models caught up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    /// Runs one loop over `ids`' URLs; checks that the views recorded meanwhile
    /// are the 200 answers (`counted`) or none.
    async fn phase<F: std::future::Future<Output = Figures>>(
        &self,
        ids: &[String],
        counted: bool,
        run: impl FnOnce() -> F,
    ) -> Figures {
        self.settled().await;
        let before = self.views(ids).await;
        let mut figures = run().await;
        let after = self.views(ids).await;
        figures.views = after - before;
        if counted {
            assert_eq!(
                figures.views, figures.answered,
                "each fetch of a running countdown is one view, counted once"
            );
        } else {
            assert_eq!(figures.views, 0, "an expired countdown counts no view");
        }
        figures
    }
}

/// Fetches an image: 200 and a GIF, or why not; the GIF's size.
async fn fetch(http: &reqwest::Client, url: &str) -> Result<usize, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: the body: {e}"))?;
    if status != reqwest::StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("GET {url} answered {status}: {text}"));
    }
    if !body.starts_with(GIF_MAGIC) {
        return Err(format!("GET {url}: not a GIF ({} bytes)", body.len()));
    }
    Ok(body.len())
}

// ---------------------------------------------------------------------------
// The loops.

/// One answered fetch: when it was scheduled (closed loop: sent), when it
/// was answered, the GIF's size.
type Answer = (Instant, Instant, usize);

/// The first failure of a loop, if any, fails the bench.
fn check(failures: &[String], failed: u64) {
    assert!(
        failures.is_empty(),
        "{failed} fetches failed; first: {}",
        failures[0]
    );
}

async fn closed_loop(
    http: &reqwest::Client,
    urls: &Arc<Vec<String>>,
    settings: Settings,
    pid: u32,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let fetchers: Vec<JoinHandle<(Vec<Answer>, Option<String>)>> = (0..settings.fetchers)
        .map(|_| {
            let (http, urls, stop, failed) =
                (http.clone(), urls.clone(), stop.clone(), failed.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[rand::random_range(0..urls.len())];
                    let sent = Instant::now();
                    match fetch(&http, url).await {
                        Ok(bytes) => mine.push((sent, Instant::now(), bytes)),
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            stop.store(true, Ordering::Relaxed);
                            return (mine, Some(e));
                        }
                    }
                }
                (mine, None)
            })
        })
        .collect();
    tokio::time::sleep(settings.warmup).await;
    let (t0, cpu0) = (
        Instant::now(),
        cpu_ticks(pid).expect("herald's /proc entry"),
    );
    tokio::time::sleep(settings.window).await;
    let (t1, cpu1) = (
        Instant::now(),
        cpu_ticks(pid).expect("herald's /proc entry"),
    );
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    for fetcher in fetchers {
        let (mine, failure) = fetcher.await.expect("a fetcher");
        answers.extend(mine);
        failures.extend(failure);
    }
    check(&failures, failed.load(Ordering::Relaxed));
    let in_window: Vec<&Answer> = answers
        .iter()
        .filter(|(_, done, _)| *done >= t0 && *done <= t1)
        .collect();
    figures(&answers, &in_window, t1 - t0, cpu1 - cpu0)
}

async fn open_loop(
    http: &reqwest::Client,
    urls: &Arc<Vec<String>>,
    settings: Settings,
    pid: u32,
) -> Figures {
    let period = Duration::from_secs_f64(1.0 / settings.rate);
    let warmup_fetches = (settings.warmup.as_secs_f64() * settings.rate).round() as u64;
    let window_fetches = (settings.window.as_secs_f64() * settings.rate).round() as u64;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let mut skipped = 0;
    let mut fetches = Vec::new();
    let begin = Instant::now() + Duration::from_millis(10);
    let t0 = begin + period.mul_f64(warmup_fetches as f64);
    let t1 = t0 + period.mul_f64(window_fetches as f64);
    let mut cpu0 = None;
    for n in 0..warmup_fetches + window_fetches {
        // The schedule is absolute: a late tick sends at once, so a slow
        // answer never lowers the offered rate.
        let scheduled = begin + period.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        if n == warmup_fetches {
            cpu0 = cpu_ticks(pid);
        }
        if failed.load(Ordering::Relaxed) > 0 {
            break;
        }
        if in_flight.load(Ordering::Relaxed) >= settings.fetchers {
            if n >= warmup_fetches {
                skipped += 1;
            }
            continue;
        }
        let now_in_flight = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        peak.fetch_max(now_in_flight, Ordering::Relaxed);
        let url = urls[rand::random_range(0..urls.len())].clone();
        let (http, in_flight, answers, failures, failed) = (
            http.clone(),
            in_flight.clone(),
            answers.clone(),
            failures.clone(),
            failed.clone(),
        );
        fetches.push(tokio::spawn(async move {
            let result = fetch(&http, &url).await;
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(bytes) => answers.lock().unwrap().push((scheduled, done, bytes)),
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.lock().unwrap().push(e);
                }
            }
        }));
    }
    // The window's CPU ends with its last scheduled fetch.
    tokio::time::sleep_until(t1.into()).await;
    let cpu1 = cpu_ticks(pid).expect("herald's /proc entry");
    for fetch in fetches {
        fetch.await.expect("a fetch");
    }
    check(&failures.lock().unwrap(), failed.load(Ordering::Relaxed));
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    // Latency over the fetches scheduled in the window (those answered late
    // included); the rate over the answers that arrived in it.
    let scheduled_in_window: Vec<&Answer> = answers
        .iter()
        .filter(|(scheduled, _, _)| *scheduled >= t0 && *scheduled < t1)
        .collect();
    let mut figures = figures(
        &answers,
        &scheduled_in_window,
        t1 - t0,
        cpu1 - cpu0.expect("herald's /proc entry"),
    );
    figures.per_second = answers
        .iter()
        .filter(|(_, done, _)| *done >= t0 && *done <= t1)
        .count() as f64
        / (t1 - t0).as_secs_f64();
    figures.offered = window_fetches;
    figures.skipped = skipped;
    figures.peak_in_flight = peak.load(Ordering::Relaxed);
    figures
}

/// The figures of the answers `measured` (in a window of `window`, in which
/// herald used `ticks`), of all the phase's `answers`.
fn figures(answers: &[Answer], measured: &[&Answer], window: Duration, ticks: u64) -> Figures {
    assert!(!measured.is_empty(), "no image was answered in the window");
    let mut took: Vec<Duration> = measured
        .iter()
        .map(|(from, done, _)| *done - *from)
        .collect();
    took.sort_unstable();
    let images = measured.len() as f64;
    Figures {
        per_second: images / window.as_secs_f64(),
        p50: quantile(&took, 0.50),
        p99: quantile(&took, 0.99),
        max: *took.last().unwrap(),
        cpu_ms_per_image: ticks as f64 / TICKS_PER_SECOND * 1e3 / images,
        mean_bytes: measured.iter().map(|(_, _, b)| *b as f64).sum::<f64>() / images,
        answered: answers.len() as u64,
        ..Figures::default()
    }
}

/// `q` of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

// ---------------------------------------------------------------------------
// Render and cache costs, in process.

/// The served countdowns' look: the default style at 480×120 (the four
/// units with their labels).
fn bench_style() -> Style {
    Style {
        width: 480,
        height: 120,
        ..Style::default()
    }
}

fn render_cost(renders: usize) -> RenderCost {
    let style = bench_style();
    let start = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap();
    let deadline = start + TimeDelta::days(2) + TimeDelta::seconds(4 * 3600 + 13 * 60 + 59);
    // One untimed, as the first request pays for the font.
    let first = render_gif(&style, deadline, start, FRAMES);
    assert!(first.starts_with(GIF_MAGIC), "render_gif makes a GIF");
    let mut took: Vec<Duration> = (0..renders)
        .map(|n| {
            // A second later each time, as the server renders them.
            let at = start + TimeDelta::seconds(n as i64 + 1);
            let started = Instant::now();
            let gif = std::hint::black_box(render_gif(&style, deadline, at, FRAMES));
            let took = started.elapsed();
            assert!(gif.starts_with(GIF_MAGIC), "render_gif makes a GIF");
            took
        })
        .collect();
    took.sort_unstable();
    RenderCost {
        median: quantile(&took, 0.50),
        p99: quantile(&took, 0.99),
        bytes: first.len(),
    }
}

/// One `ImageCache::image` of a key and second already rendered.
async fn cache_hit_cost() -> Duration {
    let cache = ImageCache::new(FRAMES);
    let style = Arc::new(bench_style());
    let now = Utc::now();
    let deadline = now + TimeDelta::days(2);
    let key = "default/bench-running-0@1";
    let first = cache.image(key, &style, deadline, now).await;
    assert!(first.gif.starts_with(GIF_MAGIC));
    let started = Instant::now();
    for _ in 0..CACHE_HITS {
        std::hint::black_box(cache.image(key, &style, deadline, now).await);
    }
    let took = started.elapsed() / CACHE_HITS;
    let stats = cache.stats();
    assert_eq!(
        (stats.renders, stats.shared),
        (1, u64::from(CACHE_HITS)),
        "one render, every later call a shared hit"
    );
    took
}

// ---------------------------------------------------------------------------
// The raw limit: single-row SQLite commits.

/// 1 connection, and one per countdown (the most appends the store is
/// asked for at once).
fn raw_levels(settings: Settings) -> Vec<usize> {
    let mut levels = vec![1, settings.countdowns];
    levels.dedup();
    levels
}

async fn raw_rates(raw: &Path, levels: &[usize], settings: Settings) -> Vec<f64> {
    let (raw, levels) = (raw.to_owned(), levels.to_vec());
    tokio::task::spawn_blocking(move || {
        levels
            .iter()
            .map(|&c| {
                raw_sqlite_inserts(
                    &raw,
                    c,
                    COUNTDOWN_VIEWED,
                    settings.raw_warmup,
                    settings.raw_window,
                )
            })
            .collect()
    })
    .await
    .expect("the raw rates")
}

// ---------------------------------------------------------------------------
// The report.

impl Report {
    fn raw_mean(&self, connections: usize) -> f64 {
        let (_, before, after) = self
            .raw
            .iter()
            .find(|(c, _, _)| *c == connections)
            .expect("a raw rate");
        (before + after) / 2.0
    }

    fn print(&self, settings: Settings) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!();
        println!(
            "countdown bench: {} countdowns (480×120, 4 units + labels, {FRAMES} frames), \
             {} s windows after {} s warm-up; closed loop {} fetchers; open loop {} images/s \
             (at most {} in flight)",
            settings.countdowns,
            settings.window.as_secs_f64(),
            settings.warmup.as_secs_f64(),
            settings.fetchers,
            settings.rate,
            settings.fetchers,
        );
        println!(
            "render_gif ({FRAMES} frames, {} bytes), {} renders: median {:.2} ms, p99 {:.2} ms",
            self.render.bytes,
            settings.renders,
            ms(self.render.median),
            ms(self.render.p99)
        );
        println!(
            "ImageCache::image, shared hit of a rendered second: {:.2} µs",
            self.cache_hit.as_secs_f64() * 1e6
        );
        for (connections, before, after) in &self.raw {
            println!(
                "raw SQLite single-row insert/txn, {connections:>3} conn: {:>7.0} rows/s  \
                 (mean of {before:.0} before and {after:.0} after)",
                (before + after) / 2.0
            );
        }
        let one = self.raw_mean(1);
        let same = self.raw_mean(settings.countdowns);
        println!(
            "{:<22} | {:>8} | {:>7} | {:>7} | {:>8} | {:>9} | {:>11} | {:>10} | {:>8}",
            "phase",
            "images/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "× raw 1c",
            format!("× raw {}c", settings.countdowns),
            "cpu ms/img",
            "GIF B"
        );
        for (name, f) in [
            ("closed loop", &self.closed),
            ("open loop", &self.open),
            ("closed loop, expired", &self.closed_expired),
            ("open loop, expired", &self.open_expired),
        ] {
            println!(
                "{name:<22} | {:>8.0} | {:>7.2} | {:>7.2} | {:>8.2} | {:>9.2} | {:>11.2} | {:>10.3} | {:>8.0}",
                f.per_second,
                ms(f.p50),
                ms(f.p99),
                ms(f.max),
                f.per_second / one,
                f.per_second / same,
                f.cpu_ms_per_image,
                f.mean_bytes,
            );
        }
        println!("(open loop: latency from each fetch's scheduled time; expired: no view recorded, one-frame GIF)");
        for (name, f) in [
            ("open loop", &self.open),
            ("open loop, expired", &self.open_expired),
        ] {
            println!(
                "{name}: offered {} in the window, {} not sent (the most in flight), peak {} in flight",
                f.offered, f.skipped, f.peak_in_flight
            );
        }
        println!(
            "views: closed loop {} views = {} images answered; open loop {} = {}; expired {} and {}",
            self.closed.views,
            self.closed.answered,
            self.open.views,
            self.open.answered,
            self.closed_expired.views,
            self.open_expired.views
        );
        let met = self.open.p99 < TARGET_P99
            && self.open.skipped == 0
            && settings.rate >= TARGET_RATE
            && self.open.per_second >= 0.95 * TARGET_RATE;
        println!(
            "target p99 < {} ms at {TARGET_RATE:.0} images/s: {} (p99 {:.2} ms at {:.0} images/s achieved, {:.0} offered)",
            TARGET_P99.as_millis(),
            if met { "met" } else { "NOT met" },
            ms(self.open.p99),
            self.open.per_second,
            settings.rate,
        );
    }
}
