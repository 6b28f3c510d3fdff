//! `HERALD_BOOTSTRAP_ADMIN_KEY` lets a fresh installation (a container)
//! start authenticated on a public address: `herald serve` stores the key,
//! an admin of the tenant `default`, when the store holds no key, and
//! changes nothing once any key exists — a changed value is not stored, a
//! revoked bootstrap key stays revoked. A value that is not a strong key
//! stops the start without being repeated.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{free_port, herald_command, Herald};

const PATIENCE: Duration = Duration::from_secs(20);

/// A key of the documented form, from two fixed halves.
fn key(id: &str, secret: &str) -> String {
    format!("hk_{id}_{secret}")
}

async fn serve(dir: &Path, listen: &str, bootstrap: &str) -> Herald {
    let mut herald = Herald::start(
        dir,
        &["serve", "--listen", listen],
        &[("HERALD_BOOTSTRAP_ADMIN_KEY", bootstrap)],
    );
    herald.base = herald.base.replace("0.0.0.0", "127.0.0.1");
    herald.wait_healthy(PATIENCE).await;
    herald
}

/// The status of `GET /v1/events` with `key` (none when empty).
async fn status(base: &str, key: &str) -> u16 {
    let mut request = reqwest::Client::new().get(format!("{base}/v1/events"));
    if !key.is_empty() {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap().status().as_u16()
}

fn stop(mut herald: Herald) {
    assert!(herald.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_key_is_stored_only_while_no_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("0.0.0.0:{}", free_port());
    let first = key("00112233445566aa", &"s".repeat(43));
    let second = key("00112233445566bb", &"t".repeat(43));

    // A first start on a public address: the key is stored, and is the only
    // way in.
    let herald = serve(dir.path(), &listen, &first).await;
    assert_eq!(status(&herald.base, &first).await, 200);
    assert_eq!(status(&herald.base, "").await, 401);
    let admin = reqwest::Client::new()
        .get(format!("{}/v1/projections", herald.base))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "the bootstrap key is an admin key");
    let base = herald.base.clone();
    tokio::task::spawn_blocking(move || stop(herald))
        .await
        .unwrap();

    let listed = herald_command()
        .current_dir(dir.path())
        .args(["keys", "list", "--json"])
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["id"], "00112233445566aa");
    assert_eq!(keys[0]["tenant"], "default");
    assert_eq!(keys[0]["scopes"], serde_json::json!(["admin:*"]));
    assert_eq!(
        keys[0]["label"],
        "bootstrap admin key (HERALD_BOOTSTRAP_ADMIN_KEY)"
    );

    // Keys exist: another value is not stored, the first key still works.
    let herald = serve(dir.path(), &listen, &second).await;
    assert_eq!(status(&base, &first).await, 200);
    assert_eq!(status(&base, &second).await, 401);
    tokio::task::spawn_blocking(move || stop(herald))
        .await
        .unwrap();

    // A revoked bootstrap key stays revoked, though the setting names it.
    let revoked = herald_command()
        .current_dir(dir.path())
        .args(["keys", "revoke", "00112233445566aa"])
        .output()
        .unwrap();
    assert!(revoked.status.success());
    let listen_loopback = format!("127.0.0.1:{}", free_port());
    let herald = serve(dir.path(), &listen_loopback, &first).await;
    assert_eq!(status(&herald.base, &first).await, 401);
    assert_eq!(
        status(&herald.base, "").await,
        401,
        "keys exist: no anonymous access"
    );
    tokio::task::spawn_blocking(move || stop(herald))
        .await
        .unwrap();
}

#[test]
fn a_value_that_is_not_a_strong_key_stops_the_start_unrepeated() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("0.0.0.0:{}", free_port());
    for bad in [
        "letmein-letmein-letmein-letmein-letmein",
        "hk_00112233445566aa_short",
        "hk_nothex_ssssssssssssssssssssssssssssssssssssssssssss",
    ] {
        let out = herald_command()
            .current_dir(dir.path())
            .args(["serve", "--listen", &listen])
            .env("HERALD_BOOTSTRAP_ADMIN_KEY", bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains("HERALD_BOOTSTRAP_ADMIN_KEY") && stderr.contains("hk_<16 hex digits>"),
            "{stderr}"
        );
        assert!(!stderr.contains(bad), "the value was repeated: {stderr}");
    }
    // Without the setting, a public address is still refused, and the
    // refusal names the setting.
    let out = herald_command()
        .current_dir(dir.path())
        .args(["serve", "--listen", &listen])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refusing to serve") && stderr.contains("HERALD_BOOTSTRAP_ADMIN_KEY"),
        "{stderr}"
    );
}
