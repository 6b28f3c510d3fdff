//! A configuration Herald cannot use stops `herald serve` at once with a
//! non-zero exit and a message naming the problem, instead of starting on
//! something else.

use std::process::Command;

fn serve(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .current_dir(dir.path())
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run herald");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_store_kind_is_refused() {
    let (ok, stderr) = serve(&[], &[("HERALD_STORE", "mysql://root:hunter2@db/x")]);
    assert!(!ok);
    assert!(stderr.contains("postgres:// URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "a password reached the output: {stderr}"
    );
}

#[test]
fn an_unreachable_postgres_is_named() {
    let (ok, stderr) = serve(
        &[],
        &[("HERALD_STORE", "postgres://nobody:hunter2@127.0.0.1:1/none")],
    );
    assert!(!ok);
    assert!(stderr.contains("opening the event store"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "a password reached the output: {stderr}"
    );
}

#[test]
fn a_bad_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_port = 5\n").unwrap();
    let (ok, stderr) = serve(&["--config", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("listen_port"), "{stderr}");
    let (ok, stderr) = serve(&["--listen", "not-an-address"], &[]);
    assert!(!ok);
    assert!(stderr.contains("not-an-address"), "{stderr}");
}
