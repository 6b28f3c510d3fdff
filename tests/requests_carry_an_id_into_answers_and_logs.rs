//! Every request has an id: the caller's `X-Request-Id` when it is sane,
//! else a UUID v7 Herald makes. The answer carries it (`X-Request-Id`, and
//! `request_id` in a problem body), and the log line of a refused request
//! names it with the method, the route, the status and the request's
//! `X-Correlation-Id` — read here from `herald serve`'s JSON log on stderr.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{free_port, herald_command, Herald, Output};

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every answer carries X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned()
}

fn is_uuid_v7(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_their_id_into_answers_and_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = herald_command()
        .current_dir(dir.path())
        .args(["serve", "--listen", &listen])
        .env("HERALD_LOG_FORMAT", "json")
        .env("HERALD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let mut output = Output::collect(&mut child);
    let mut herald = Herald {
        child,
        base: format!("http://{listen}"),
    };
    herald.wait_healthy(Duration::from_secs(10)).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();

    // A sane id comes back as sent.
    let ok = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "client-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(request_id(&ok), "client-7f3a");

    // None, or one too long or not visible ASCII: Herald makes a UUID v7.
    let mut made = Vec::new();
    for sent in [None, Some("x".repeat(129)), Some("two words".to_owned())] {
        let mut request = client.get(format!("{base}/healthz"));
        if let Some(sent) = &sent {
            request = request.header("x-request-id", sent.as_str());
        }
        let answer = request.send().await.unwrap();
        let id = request_id(&answer);
        assert!(is_uuid_v7(&id), "{sent:?} answered {id}");
        made.push(id);
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 3, "each request gets its own id");

    // A problem body carries the id, the caller's or a made one.
    let correlation = uuid::Uuid::now_v7().to_string();
    let missing = client
        .get(format!("{base}/v1/streams/tickets/T-404/events"))
        .header("x-request-id", "client-404")
        .header("x-correlation-id", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(request_id(&missing), "client-404");
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:stream-not-found");
    assert_eq!(problem["request_id"], "client-404", "{problem}");
    let refused = client
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let made = request_id(&refused);
    assert!(is_uuid_v7(&made), "{made}");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["request_id"], made.as_str(), "{problem}");

    // The log: one line for each refused request, at INFO, with the ids.
    let status = herald.terminate(Duration::from_secs(10));
    assert!(status.success(), "herald stopped cleanly: {status}");
    let (_, stderr) = output.finish();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let logged = of("client-404");
    let line = logged
        .iter()
        .find(|l| l["status"] == 404)
        .unwrap_or_else(|| panic!("no log line of the 404 in:\n{stderr}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["span"]["method"], "GET", "{line}");
    assert_eq!(
        line["span"]["route"], "/v1/streams/{domain}/{id}/events",
        "{line}"
    );
    assert_eq!(
        line["span"]["correlation_id"],
        correlation.as_str(),
        "{line}"
    );
    assert_eq!(line["problem"], "stream-not-found", "{line}");
    let line = of(&made)
        .into_iter()
        .find(|l| l["status"] == 400)
        .unwrap_or_else(|| panic!("no log line of the 400 in:\n{stderr}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["span"]["method"], "POST", "{line}");
    assert_eq!(line["span"]["route"], "/v1/events", "{line}");
    assert!(line["span"].get("correlation_id").is_none(), "{line}");
    // Answers that went well are not logged at INFO.
    assert!(of("client-7f3a").is_empty(), "{stderr}");
}
