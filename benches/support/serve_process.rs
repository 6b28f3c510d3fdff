//! What the benches that run `herald serve` as a separate process share:
//! starting and stopping it (killed if the bench panics), the bench's key,
//! the support-desk workload's commands, and CPU time from `/proc`.
//!
//! Included with `#[path = "support/serve_process.rs"] mod serve_process;`
//! next to `raw_postgres` (for the note's text).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::raw_postgres::{note_text, Load, NOTE_AUTHOR};

/// The setups of `all` that `HERALD_BENCH_SETUPS` (comma-separated names)
/// picks, in `all`'s order; every one when it is not set.
pub fn selected_setups<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<T> {
    let Ok(names) = std::env::var("HERALD_BENCH_SETUPS") else {
        return all.to_vec();
    };
    let chosen: Vec<T> = all
        .iter()
        .copied()
        .filter(|&s| names.split(',').any(|n| n.trim() == name(s)))
        .collect();
    let known: Vec<&str> = all.iter().map(|&s| name(s)).collect();
    assert!(
        !chosen.is_empty(),
        "HERALD_BENCH_SETUPS={names:?} names none of {}",
        known.join(", ")
    );
    chosen
}

/// Of every client: when each command finished and how long it took.
pub type Latencies = Arc<Mutex<Vec<(Instant, Duration)>>>;

/// Starts `clients` clients, each working through tickets of its own
/// (`{prefix}-{client}-{n}`) and sending each command to the next of
/// `bases` in turn (from its own index on: one base is one process, several
/// are a round-robin load balancer), until `load` stops; every command must
/// be answered 201.
pub fn ticket_clients(
    http: &reqwest::Client,
    bases: &Arc<Vec<String>>,
    key: &str,
    prefix: &str,
    clients: usize,
    load: &Arc<Load>,
    latencies: &Latencies,
) -> Vec<JoinHandle<()>> {
    (0..clients)
        .map(|client| {
            let (http, load, latencies) = (http.clone(), load.clone(), latencies.clone());
            let (bases, key, prefix) = (bases.clone(), key.to_owned(), prefix.to_owned());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut sent = client;
                let mut ticket = 0usize;
                'tickets: while !load.stopped() {
                    let id = format!("{prefix}-{client}-{ticket}");
                    ticket += 1;
                    for (command, body) in ticket_commands() {
                        let base = &bases[sent % bases.len()];
                        sent += 1;
                        let started = Instant::now();
                        let response = http
                            .post(format!("{base}/v1/tickets/{id}/{command}"))
                            .bearer_auth(&key)
                            .json(&body)
                            .send()
                            .await
                            .expect("a command's answer");
                        let status = response.status();
                        if status != reqwest::StatusCode::CREATED {
                            let text = response.text().await.unwrap_or_default();
                            panic!("{command} on {id} through {base} answered {status}: {text}");
                        }
                        // Read the answer whole, as a client that uses it would.
                        response.bytes().await.expect("a command's body");
                        let done = Instant::now();
                        mine.push((done, done - started));
                        load.add(1);
                        if load.stopped() {
                            break 'tickets;
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect()
}

/// p50 and p99 of the commands that finished between `start` and `end`.
pub fn percentiles(latencies: &Latencies, start: Instant, end: Instant) -> (Duration, Duration) {
    let mut window: Vec<Duration> = latencies
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= start && *at <= end)
        .map(|(_, took)| *took)
        .collect();
    assert!(!window.is_empty(), "no command completed in the window");
    window.sort_unstable();
    let at = |q: f64| window[((window.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// CPU ticks of each Postgres backend connected to `database`, but the
/// asking one.
pub async fn backend_ticks(admin: &Client, database: &str) -> HashMap<i32, u64> {
    let rows = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .expect("list the database's backends");
    rows.iter()
        .filter_map(|row| {
            let pid: i32 = row.get(0);
            // A backend that just exited has no /proc entry: it counts as 0.
            cpu_ticks(pid as u32).map(|ticks| (pid, ticks))
        })
        .collect()
}

/// Ticks the backends used between two [`backend_ticks`] samples.
pub fn backend_ticks_between(start: &HashMap<i32, u64>, end: &HashMap<i32, u64>) -> u64 {
    end.iter()
        .map(|(pid, t)| t - start.get(pid).copied().unwrap_or(0).min(*t))
        .sum()
}

/// Commands per ticket: open, the notes, resolve.
pub const NOTES_PER_TICKET: usize = 8;
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// One ticket's commands, in order.
pub fn ticket_commands() -> Vec<(&'static str, Value)> {
    let mut commands = vec![(
        "open",
        json!({
            "kind": "other",
            "customer": "acme-networks",
            "description": "Exports time out after the latest upgrade.",
            "opened_by": NOTE_AUTHOR,
        }),
    )];
    for _ in 0..NOTES_PER_TICKET {
        commands.push((
            "append_note",
            json!({"note": note_text(), "author": NOTE_AUTHOR}),
        ));
    }
    commands.push((
        "resolve",
        json!({"resolution": "fixed in 4.2.1", "resolved_by": NOTE_AUTHOR}),
    ));
    commands
}

/// User plus system clock ticks a process has used, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `herald keys create` of an admin key without a rate limit worth the name:
/// a bench measures the command path, not the limiter.
pub fn create_key(cwd: &Path, store_args: &[String]) -> String {
    let output = herald_command()
        .current_dir(cwd)
        .args(["keys", "create", "--tenant", "default", "--scopes", "admin"])
        .args(["--rate", "1000000", "--label", "serve bench"])
        .args(store_args)
        .output()
        .expect("run herald keys create");
    assert!(
        output.status.success(),
        "herald keys create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a key in UTF-8")
        .trim()
        .to_owned()
}

/// The `herald` built with this bench, or `HERALD_BENCH_BINARY` (to compare
/// builds on the same machine in one sitting).
pub fn herald_command() -> Command {
    let binary = std::env::var_os("HERALD_BENCH_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_herald").into());
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            command.env_remove(key);
        }
    }
    command
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `herald serve` child, killed if the bench panics.
pub struct Herald {
    pub child: Child,
}

impl Herald {
    pub fn start(cwd: &Path, args: &[String]) -> Self {
        let child = herald_command()
            .current_dir(cwd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn herald serve");
        Self { child }
    }

    pub async fn wait_ready(&mut self, http: &reqwest::Client, base: &str) {
        let ready = herald_testkit::eventually(Duration::from_secs(30), || {
            let request = http.get(format!("{base}/readyz")).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("herald serve exited early with {status}");
        }
        assert!(ready, "herald serve was not ready within 30 s");
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
        panic!("herald serve did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
