//! With no API key and no JWT configured, `herald serve` refuses to listen
//! on a non-loopback address (and says how to fix it); once a key exists it
//! serves there, and only to authenticated callers.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{free_port, Herald};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_listeners_need_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("0.0.0.0:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir.path())
        .env_remove("HERALD_STORE")
        .args(["serve", "--listen", &listen])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve") && stderr.contains("herald keys create"),
        "{stderr}"
    );

    let created = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir.path())
        .env_remove("HERALD_STORE")
        .args(["keys", "create", "--tenant", "acme", "--scopes", "read:*"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("hk_"));

    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.base = herald.base.replace("0.0.0.0", "127.0.0.1");
    herald.wait_healthy(Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    let anonymous = client
        .get(format!("{}/v1/events", herald.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let keyed = client
        .get(format!("{}/v1/events", herald.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
}
