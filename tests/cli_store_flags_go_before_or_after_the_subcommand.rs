//! The offline tools (`herald keys`, `audit`, `replay`) take the store flags
//! before or after their subcommand (`herald keys --data-dir D create` and
//! `herald keys create --data-dir D`), and `HERALD_DATA_DIR` alike, for every
//! subcommand; and `herald keys` answers bad input with exit code 2, as the
//! other tools do.

mod support;

use std::path::Path;
use std::process::Output;

use support::herald_command;

/// Runs `herald <args>` in `cwd` with `env`.
fn herald(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    herald_command()
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run herald")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `args` with the store flag placed right after the first `at` words.
fn placed(args: &[&str], at: usize, dir: &str) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    out.splice(at..at, ["--data-dir".to_owned(), dir.to_owned()]);
    out
}

#[test]
fn store_flags_reach_every_subcommand_from_either_place() {
    // The store lives in `store`; every command runs in `elsewhere`, which
    // has no ./data, so a command that ignored the flag would say so (or
    // make ./data there).
    let store = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = store.path().to_str().unwrap();
    let cwd = elsewhere.path();

    // keys: the key made with the flag after `create` is listed with the
    // flag before `list`, and after it, and through HERALD_DATA_DIR.
    let created = herald(
        cwd,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "admin",
            "--data-dir",
            dir,
        ],
        &[],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key = text(&created.stdout).trim().to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();
    for (args, env) in [
        (vec!["keys", "--data-dir", dir, "list"], vec![]),
        (vec!["keys", "list", "--data-dir", dir], vec![]),
        (vec!["keys", "list"], vec![("HERALD_DATA_DIR", dir)]),
        (vec!["keys", "list", "--json", "--data-dir", dir], vec![]),
    ] {
        let listed = herald(cwd, &args, &env);
        assert!(
            listed.status.success(),
            "{args:?}: {}",
            text(&listed.stderr)
        );
        assert!(
            text(&listed.stdout).contains(&id),
            "{args:?}: {}",
            text(&listed.stdout)
        );
    }

    // audit and replay, each subcommand with the flag before and after it:
    // each reads the (empty) log of `store`.
    let cases: [(&[&str], usize); 6] = [
        (&["audit", "verify"], 2),
        (&["audit", "anchor", "--json"], 2),
        (&["audit", "export", "--output", "-"], 2),
        (&["replay", "state", "tickets", "T-1", "--at", "1"], 2),
        (&["replay", "projection", "tickets", "--json"], 2),
        (
            &[
                "replay", "publish", "--from", "1", "--to", "1", "--topic", "x.replay",
            ],
            2,
        ),
    ];
    for (command, subcommand_end) in cases {
        for at in [1, subcommand_end] {
            let args = placed(command, at, dir);
            let out = herald(
                cwd,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
                &[],
            );
            let stderr = text(&out.stderr);
            assert!(
                !stderr.contains("unexpected argument") && !stderr.contains("no embedded store"),
                "{args:?}: {stderr}"
            );
            match command[..2].join(" ").as_str() {
                "audit verify" | "audit anchor" | "audit export" | "replay projection" => {
                    assert!(out.status.success(), "{args:?}: {stderr}")
                }
                // An empty log: no state at that moment (1), nothing to
                // republish (2) — said about the named store's log.
                "replay state" => {
                    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
                    assert!(stderr.contains("has no events"), "{stderr}");
                }
                _ => {
                    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
                    assert!(
                        stderr.contains("past the end of the log (position 0)"),
                        "{stderr}"
                    );
                }
            }
        }
    }
    assert!(
        !cwd.join("data").exists(),
        "a command opened ./data instead of the store it was given"
    );
    let anchor = herald(cwd, &["audit", "anchor", "--json", "--data-dir", dir], &[]);
    assert!(
        text(&anchor.stdout).contains("\"position\":0"),
        "{}",
        text(&anchor.stdout)
    );
}

#[test]
fn keys_answer_bad_input_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let made = herald(
        cwd,
        &["keys", "create", "--tenant", "acme", "--scopes", "read:*"],
        &[],
    );
    assert!(made.status.success(), "{}", text(&made.stderr));

    for (args, says) in [
        (
            vec!["keys", "create", "--tenant", "a b", "--scopes", "read:*"],
            "--tenant",
        ),
        (
            vec!["keys", "create", "--tenant", "acme", "--scopes", "fly:*"],
            "--scopes",
        ),
        (
            vec!["keys", "create", "--tenant", "acme", "--scopes", ","],
            "at least one scope",
        ),
        (
            vec![
                "keys", "create", "--tenant", "acme", "--scopes", "read:*", "--rate", "0",
            ],
            "--rate",
        ),
        (vec!["keys", "revoke", "0123456789abcdef"], "no key"),
        (
            vec!["keys", "create", "--tenant", "acme", "--note", "x"],
            "--note",
        ),
        (
            vec!["keys", "list", "--data-dir", "no-such-dir"],
            "no embedded store",
        ),
        (
            vec![
                "keys",
                "revoke",
                "0123456789abcdef",
                "--data-dir",
                "no-such-dir",
            ],
            "no embedded store",
        ),
    ] {
        let out = herald(cwd, &args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} says {says:?}: {stderr}");
    }
    assert!(
        !cwd.join("no-such-dir").exists(),
        "list and revoke made a store where none was"
    );
    // Nothing was made by the refused commands.
    let listed = herald(cwd, &["keys", "list"], &[]);
    assert_eq!(
        text(&listed.stdout).lines().count(),
        1,
        "{}",
        text(&listed.stdout)
    );
}
