//! Rotating the master key, as the README tells an operator to: the
//! subjects' keys are re-wrapped under the new key (`herald personal
//! rewrap` with the old key in HERALD_PREVIOUS_MASTER_KEYS), after which
//! Herald runs on the new key alone and reads every personal value, while
//! not one stored event changed (the export is byte for byte the same and
//! the chain verifies). A master key that wraps nothing of the store's is
//! refused at start instead of serving values nobody can read.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, Herald};

const DESCRIPTION: &str = "Rotation-test-router-on-fire";

fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = support::herald_command()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run herald");
    assert!(
        out.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn serve(dir: &Path, env: &[(&str, &str)]) -> Herald {
    Herald::start(
        dir,
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        env,
    )
}

fn export(dir: &Path) -> String {
    let file = dir.join("export.jsonl");
    cli(
        dir,
        &["audit", "export", "--output", file.to_str().unwrap()],
        &[],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    text
}

async fn description(base: &str) -> Value {
    let state: Value = reqwest::get(format!("{base}/v1/streams/tickets/T-1/events"))
        .await
        .expect("herald answers")
        .json()
        .await
        .expect("JSON");
    state["events"][0]["payload"]["description"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rewrapped_and_the_events_stay_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let old = cli(dir.path(), &["personal", "new-master-key"], &[]);
    let new = cli(dir.path(), &["personal", "new-master-key"], &[]);
    assert_ne!(old, new);

    let mut herald = serve(dir.path(), &[("HERALD_MASTER_KEY", &old)]);
    herald.wait_healthy(Duration::from_secs(30)).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/tickets/T-1/open", herald.base))
        .json(&json!({"kind": "other", "customer": "cust-1", "description": DESCRIPTION, "opened_by": "desk-7"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(description(&herald.base).await, DESCRIPTION);
    assert!(herald.terminate(Duration::from_secs(30)).success());
    let before = export(dir.path());
    assert!(!before.contains(DESCRIPTION));

    // The new key alone cannot read what the old one wrapped: refused.
    let mut refused = serve(dir.path(), &[("HERALD_MASTER_KEY", &new)]);
    let status = refused.wait_exit(Duration::from_secs(30));
    assert!(
        !status.success(),
        "serve started on a master key that wraps nothing"
    );

    // The rotation: both keys, once.
    let said = cli(
        dir.path(),
        &["personal", "rewrap"],
        &[
            ("HERALD_MASTER_KEY", &new),
            ("HERALD_PREVIOUS_MASTER_KEYS", &old),
        ],
    );
    // The customer's key and the opener's.
    assert!(said.starts_with("re-wrapped 2 subject keys"), "{said}");
    let again = cli(
        dir.path(),
        &["personal", "rewrap"],
        &[
            ("HERALD_MASTER_KEY", &new),
            ("HERALD_PREVIOUS_MASTER_KEYS", &old),
        ],
    );
    assert!(again.starts_with("re-wrapped 0 subject keys"), "{again}");

    // The new key alone from now on.
    let mut herald = serve(dir.path(), &[("HERALD_MASTER_KEY", &new)]);
    herald.wait_healthy(Duration::from_secs(30)).await;
    assert_eq!(description(&herald.base).await, DESCRIPTION);
    assert!(herald.terminate(Duration::from_secs(30)).success());
    assert_eq!(export(dir.path()), before, "an event changed");
    let verified = cli(dir.path(), &["audit", "verify"], &[]);
    assert!(verified.starts_with("intact"), "{verified}");

    // The old key no longer opens anything.
    let mut refused = serve(dir.path(), &[("HERALD_MASTER_KEY", &old)]);
    let status = refused.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "serve started on the retired key");
}
