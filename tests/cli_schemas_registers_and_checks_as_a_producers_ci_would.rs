//! `herald schemas` against `herald serve` on its embedded defaults, as a
//! producer's deploy and CI use it: `check` of a first version says it
//! would be accepted (exit 0) and registers nothing; `register` registers
//! it; `check` of an incompatible next version exits 1 naming the path of
//! what breaks; `check` with an upcaster exits 0; `list`, `show` and
//! `compatibility` and `deprecate` answer; an unreachable server, a
//! missing file or an unknown rule exits 2.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, herald_command, Herald};

const TYPE: &str = "orders.order_placed";

/// `herald schemas <args> --url <base>`: (exit code, stdout, stderr).
fn schemas(base: &str, args: &[&str]) -> (i32, String, String) {
    let output = herald_command()
        .arg("schemas")
        .args(args)
        .args(["--url", base])
        .output()
        .expect("run herald schemas");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_schemas_registers_and_checks_as_a_producers_ci_would() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herald = Herald::start(data.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(Duration::from_secs(60)).await;
    let base = herald.base.clone();

    let v1 = write(
        files.path(),
        "v1.json",
        &json!({"type": "object", "required": ["order_id"],
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
            "additionalProperties": false}),
    );
    let v2_breaking = write(
        files.path(),
        "v2-breaking.json",
        &json!({"type": "object", "required": ["order_id", "total"],
            "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}},
            "additionalProperties": false}),
    );
    let upcaster = write(
        files.path(),
        "upcaster.json",
        &json!({"rename": {"amount": "total"}, "defaults": {"total": 0}}),
    );

    let (code, out, err) = schemas(&base, &["check", &v1, "--type", TYPE]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would be registered as v1"), "{out}");
    let (code, out, _) = schemas(&base, &["list", "--domain", "orders"]);
    assert_eq!((code, out.trim()), (0, ""), "a check registers nothing");

    let (code, out, err) = schemas(&base, &["register", &v1, "--type", TYPE]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("registered orders.order_placed v1"), "{out}");
    let (code, out, _) = schemas(&base, &["register", &v1, "--type", TYPE]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");

    // What a producer's CI sees for a breaking change.
    let (code, out, err) = schemas(&base, &["check", &v2_breaking, "--type", TYPE]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("incompatible-schema"), "{out}");
    assert!(
        out.contains("total"),
        "the reason names the property: {out}"
    );
    let (code, out, _) = schemas(&base, &["check", &v2_breaking, "--type", TYPE, "--json"]);
    assert_eq!(code, 1);
    let problem: Value = serde_json::from_str(out.trim()).expect("the problem as JSON");
    assert!(
        problem["incompatibilities"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{problem}"
    );
    // With an upcaster from v1 it would be accepted, as v2.
    let (code, out, err) = schemas(
        &base,
        &[
            "check",
            &v2_breaking,
            "--type",
            TYPE,
            "--upcaster",
            &upcaster,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("as v2"), "{out}");
    let (code, out, err) = schemas(
        &base,
        &[
            "register",
            &v2_breaking,
            "--type",
            TYPE,
            "--version",
            "2",
            "--upcaster",
            &upcaster,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, _) = schemas(&base, &["list", "--domain", "orders"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("orders.order_placed\tregistered, backward\tv1 v2"),
        "{out}"
    );
    let (code, out, _) = schemas(&base, &["show", TYPE, "2"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["upcaster"]["rename"]["amount"], "total", "{shown}");
    let (code, out, _) = schemas(&base, &["compatibility", TYPE, "full"]);
    assert_eq!(
        (code, out.trim()),
        (0, "orders.order_placed is now full compatible")
    );
    let (code, _, err) = schemas(&base, &["compatibility", TYPE, "sideways"]);
    assert_eq!(code, 2, "{err}");
    let (_, out, _) = schemas(&base, &["list", "--domain", "orders"]);
    assert!(out.contains("registered, full"), "{out}");
    let (code, out, _) = schemas(&base, &["deprecate", TYPE, "1", "--reason", "use v2"]);
    assert_eq!((code, out.trim()), (0, "deprecated orders.order_placed v1"));
    let (_, out, _) = schemas(&base, &["list", "--domain", "orders"]);
    assert!(out.contains("v1 (deprecated) v2"), "{out}");

    // Errors that are not the registry's answer exit 2.
    let (code, _, err) = schemas(&base, &["check", "/no/such/file.json", "--type", TYPE]);
    assert_eq!(code, 2, "{err}");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = schemas(&nobody, &["check", &v1, "--type", TYPE]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("could not reach"), "{err}");

    assert!(herald.terminate(Duration::from_secs(30)).success());
}
