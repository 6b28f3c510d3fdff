//! `herald serve` on the embedded store refuses to start on a data directory
//! it cannot write — a store another user made, a fresh directory it may not
//! create files in, read models it may not write — with a non-zero exit and
//! a message naming the path and the reason, and never answers a request.
//! (SQLite alone would open such a file read-only, and every append would
//! be a 503 while `/readyz` said 200.)
//!
//! Root ignores file modes, so when the test runs as root Herald runs as
//! `nobody` (setpriv) against files root owns; otherwise the files are made
//! read-only.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, herald_command, Herald, Output};

const NOBODY: u32 = 65534;

/// True when this test runs as root.
fn root(dir: &Path) -> bool {
    std::fs::metadata(dir).unwrap().uid() == 0
}

/// A child process, killed when dropped, so that a failed assertion
/// leaves none behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `herald serve` on `data` as the unprivileged user (or as ourselves, when
/// not root), with stdout and stderr collected.
fn serve(cwd: &Path, data: &Path, as_nobody: bool) -> (Running, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    let mut cmd = if as_nobody {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &NOBODY.to_string(),
            "--regid",
            &NOBODY.to_string(),
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_herald"));
        for (key, _) in std::env::vars() {
            if key.starts_with("HERALD_") {
                cmd.env_remove(key);
            }
        }
        cmd
    } else {
        herald_command()
    };
    let child = cmd
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herald");
    (Running(child), format!("http://{listen}"))
}

/// Runs `herald serve` on `data`, which it must refuse: it exits non-zero
/// within the deadline without `/healthz` ever answering; returns what it
/// printed.
async fn refused(cwd: &Path, data: &Path, as_nobody: bool) -> String {
    let (mut child, base) = serve(cwd, data, as_nobody);
    let mut output = Output::collect(&mut child.0);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        let health = client.get(format!("{base}/healthz")).send().await;
        assert!(
            health.is_err(),
            "herald served {} although it cannot write {}",
            base,
            data.display()
        );
        assert!(
            Instant::now() < deadline,
            "herald neither served nor exited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (stdout, stderr) = output.finish();
    let printed = format!("{}\n{stderr}", stdout.join("\n"));
    assert!(!status.success(), "herald exited with {status}: {printed}");
    assert!(
        !printed.contains("Herald is serving"),
        "herald said it serves: {printed}"
    );
    printed
}

/// Copies the files of `from` into `to` (a directory that exists).
fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(uid)).unwrap();
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_data_dir_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path();
    let as_nobody = root(top);
    // The unprivileged user must reach what the test makes.
    chmod(top, 0o755);

    // A store made by a normal run: herald.db and read-models.db.
    let made = top.join("made");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(
        top,
        &[
            "serve",
            "--data-dir",
            made.to_str().unwrap(),
            "--listen",
            &listen,
        ],
        &[],
    );
    herald.wait_healthy(Duration::from_secs(30)).await;
    assert!(
        herald_testkit::eventually(Duration::from_secs(30), || {
            let ready = made.join("read-models.db").is_file();
            async move { ready }
        })
        .await,
        "the read models' file never appeared"
    );
    assert!(herald.terminate(Duration::from_secs(30)).success());
    drop(herald);
    assert!(made.join("herald.db").is_file());

    // 1. Another user's store (or, not as root, a read-only one).
    let theirs = top.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    copy_files(&made, &theirs);
    if !as_nobody {
        for entry in std::fs::read_dir(&theirs).unwrap() {
            chmod(&entry.unwrap().path(), 0o444);
        }
        chmod(&theirs, 0o555);
    }
    let printed = refused(top, &theirs, as_nobody).await;
    let file = theirs.join("herald.db");
    assert!(
        printed.contains(&format!(
            "cannot write to {}: permission denied",
            file.display()
        )),
        "the message names neither the file nor the reason: {printed}"
    );
    assert!(
        printed.contains("--data-dir"),
        "no way out offered: {printed}"
    );
    assert_eq!(
        std::fs::read_dir(&theirs).unwrap().count(),
        std::fs::read_dir(&made).unwrap().count(),
        "the refused directory was changed"
    );

    // 1b. Another user's files in a directory it may write: SQLite opens
    // them read-only, and without the check Herald served, `/readyz` 200
    // and every append 503.
    let shared = top.join("shared");
    std::fs::create_dir(&shared).unwrap();
    copy_files(&made, &shared);
    if as_nobody {
        std::os::unix::fs::chown(&shared, Some(NOBODY), Some(NOBODY)).unwrap();
    } else {
        for entry in std::fs::read_dir(&shared).unwrap() {
            chmod(&entry.unwrap().path(), 0o444);
        }
    }
    let printed = refused(top, &shared, as_nobody).await;
    assert!(
        printed.contains(&format!(
            "cannot write to {}: permission denied",
            shared.join("herald.db").display()
        )),
        "the message names neither the file nor the reason: {printed}"
    );

    // 2. A fresh, empty directory it may not create files in.
    let empty = top.join("empty");
    std::fs::create_dir(&empty).unwrap();
    if !as_nobody {
        chmod(&empty, 0o555);
    }
    let printed = refused(top, &empty, as_nobody).await;
    assert!(
        printed.contains(&format!("cannot create files in {} (", empty.display()))
            && printed.contains("permission denied"),
        "the message names neither the directory nor the reason: {printed}"
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // 2b. A data directory that is missing, in a directory it may not write.
    let missing = empty.join("data");
    let printed = refused(top, &missing, as_nobody).await;
    assert!(
        printed.contains(&format!(
            "cannot create {}: permission denied",
            missing.display()
        )),
        "the message names neither the directory nor the reason: {printed}"
    );

    // 3. Its own store, but read models it may not write.
    let mine = top.join("mine");
    std::fs::create_dir(&mine).unwrap();
    copy_files(&made, &mine);
    let read_models = mine.join("read-models.db");
    if as_nobody {
        chown_tree(&mine, NOBODY);
        std::os::unix::fs::chown(&read_models, Some(0), Some(0)).unwrap();
    } else {
        chmod(&read_models, 0o444);
    }
    let printed = refused(top, &mine, as_nobody).await;
    assert!(
        printed.contains(&format!(
            "cannot write to {}: permission denied",
            read_models.display()
        )),
        "the message does not name the read models' file: {printed}"
    );

    // The control: the same user on a directory it may write serves.
    if as_nobody {
        std::os::unix::fs::chown(&read_models, Some(NOBODY), Some(NOBODY)).unwrap();
    } else {
        chmod(&read_models, 0o644);
    }
    let (mut child, base) = serve(top, &mine, as_nobody);
    let mut output = Output::collect(&mut child.0);
    let served = herald_testkit::eventually(Duration::from_secs(30), || {
        let request = reqwest::get(format!("{base}/healthz"));
        async move { request.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    drop(child);
    let (_, stderr) = output.finish();
    assert!(
        served,
        "herald did not serve a directory it may write: {stderr}"
    );
}
