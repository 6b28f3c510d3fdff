//! `herald serve` with no configuration and no servers answers `/healthz`
//! within 5 s of starting, on 127.0.0.1:8080 with its store in `./data`; and
//! the README's curl walkthrough, run verbatim against it, gets exactly the
//! answers the README shows.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::Herald;

/// One `$ command` of the README and the answer printed under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: String,
}

/// The steps of every ```console block in the README's Walkthrough section.
fn walkthrough() -> Vec<Step> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Walkthrough")
        .nth(1)
        .expect("the README has a Walkthrough section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut steps = Vec::new();
    for block in section.split("```console\n").skip(1) {
        let block = block.split("\n```").next().unwrap();
        for line in block.lines() {
            if let Some(command) = line.strip_prefix("$ ") {
                steps.push(Step {
                    command: command.to_owned(),
                    expected: String::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push_str(line);
                step.expected.push('\n');
            }
        }
    }
    steps
}

/// `expected` matches `actual` when both have the same shape and values,
/// objects the same keys, and the string "…" in `expected` matches anything.
fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(s), _) if s == "…" => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            let (mut ek, mut ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
            ek.sort();
            ak.sort();
            if ek != ak {
                return Err(format!("{path}: keys {ak:?}, the README shows {ek:?}"));
            }
            e.iter()
                .try_for_each(|(k, v)| matches(v, &a[k], &format!("{path}/{k}")))
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (e, a))| matches(e, a, &format!("{path}/{i}"))),
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{path}: got {a}, the README shows {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_defaults_and_the_walkthrough() {
    let steps = walkthrough();
    assert!(
        steps.len() >= 8,
        "the walkthrough lost its steps: {steps:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(dir.path(), &["serve"], &[]);
    let took = herald.wait_healthy(Duration::from_secs(5)).await;
    assert_eq!(herald.base, "http://127.0.0.1:8080");
    assert!(
        dir.path().join("data/herald.db").exists(),
        "the embedded store is not in ./data"
    );
    eprintln!("herald answered /healthz {took:?} after start");

    for step in &steps {
        let out = Command::new("bash")
            .args(["-c", &step.command])
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "`{}` failed: {}",
            step.command,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let actual: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("`{}` printed {stdout:?}, not JSON: {e}", step.command));
        let expected: Value = serde_json::from_str(&step.expected).unwrap_or_else(|e| {
            panic!("the README's answer to `{}` is not JSON: {e}", step.command)
        });
        if let Err(diff) = matches(&expected, &actual, "") {
            panic!("`{}`\n{diff}\nfull answer: {actual}", step.command);
        }
    }

    let status = tokio::task::spawn_blocking(move || herald.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_matcher_can_fail() {
    let e: Value = serde_json::json!({"a": "…", "b": [1, 2]});
    assert!(matches(&e, &serde_json::json!({"a": 5, "b": [1, 2]}), "").is_ok());
    assert!(matches(&e, &serde_json::json!({"a": 5, "b": [1, 3]}), "").is_err());
    assert!(matches(&e, &serde_json::json!({"a": 5, "b": [1, 2], "c": 0}), "").is_err());
    assert!(matches(&e, &serde_json::json!({"b": [1, 2]}), "").is_err());
}
