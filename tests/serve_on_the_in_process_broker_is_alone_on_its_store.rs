//! The in-process broker delivers events only inside its own process, so a
//! `herald serve` on it must be alone on its store: a second process on the
//! same store (Postgres or the same data directory) refuses to start and
//! says what to configure, whatever its own broker; processes that share a
//! real broker share the store; and a process killed with SIGKILL frees the
//! store for its successor at once.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use herald_testkit::{TestDatabase, TestVhost};
use support::{free_port, herald_command, Herald};

const PATIENCE: Duration = Duration::from_secs(30);

fn listen() -> String {
    format!("127.0.0.1:{}", free_port())
}

async fn serve(dir: &Path, env: &[(&str, &str)]) -> Herald {
    let mut herald = Herald::start(dir, &["serve", "--listen", &listen()], env);
    herald.wait_healthy(PATIENCE).await;
    herald
}

/// Runs `herald serve` expecting it to refuse; returns its stderr.
fn refused(dir: &Path, env: &[(&str, &str)]) -> String {
    let output = herald_command()
        .current_dir(dir)
        .args(["serve", "--listen", &listen()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .output()
        .expect("run herald serve");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "a second process started on the store: {stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = TestDatabase::create().await;
    let vhost = TestVhost::create().await;
    let memory = [("HERALD_STORE", db.url())];
    let shared = [("HERALD_STORE", db.url()), ("HERALD_BROKER", vhost.url())];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let mut first = serve(a.path(), &memory).await;
    let why = refused(b.path(), &memory);
    assert!(
        why.contains("another Herald process uses this store")
            && why.contains(&format!("pid {}", first.child.id()))
            && why.contains("HERALD_BROKER=amqp://")
            && why.contains("kafka://"),
        "the refusal does not say who holds the store and what to configure: {why}"
    );
    let why = refused(b.path(), &shared);
    assert!(
        why.contains("in-process broker") && why.contains(&format!("pid {}", first.child.id())),
        "{why}"
    );

    // Killed: the store is free for the next process at once.
    first.kill9();
    let mut one = serve(a.path(), &shared).await;
    let mut two = serve(b.path(), &shared).await;
    let why = refused(b.path(), &memory);
    assert!(
        why.contains("another Herald process uses this store"),
        "{why}"
    );
    one.terminate(PATIENCE);
    two.terminate(PATIENCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path(), &[]).await;
    let why = refused(dir.path(), &[]);
    assert!(
        why.contains("another Herald process uses this store")
            && why.contains(&format!("pid {}", first.child.id())),
        "{why}"
    );
    first.kill9();
    let mut again = serve(dir.path(), &[]).await;
    again.terminate(PATIENCE);
}
