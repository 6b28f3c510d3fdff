//! What the benches that run `herald serve` as a separate process share:
//! starting and stopping it (killed if the bench panics), the bench's key,
//! the support-desk workload's commands, and CPU time from `/proc`.
//!
//! Included with `#[path = "support/serve_process.rs"] mod serve_process;`
//! next to `raw_postgres` (for the note's text).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::raw_postgres::{note_text, NOTE_AUTHOR};

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
