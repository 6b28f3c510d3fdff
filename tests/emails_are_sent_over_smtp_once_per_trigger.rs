//! Email actions through `herald serve`, against a local SMTP server the
//! test runs: each opened ticket is mailed to its recipients with the
//! rendered subject and body and a Message-ID made of the delivery id; a
//! temporary refusal (451) is retried, and the delivery shows how many
//! attempts it took. Without an SMTP server configured the email is not
//! lost: it waits, visible as pending.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{free_port, get_json as get, post_json as post, Herald};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PATIENCE: Duration = Duration::from_secs(60);

/// A message the SMTP server accepted.
#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

#[derive(Default)]
struct Smtp {
    accepted: Vec<Mail>,
    /// Transactions refused with 451 so far (the first one is).
    refused: usize,
}

/// Serves SMTP on `port` until the test ends: enough of RFC 5321 for a
/// client sending plain messages.
async fn smtp_server(listener: tokio::net::TcpListener, state: Arc<Mutex<Smtp>>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            let _ = write.write_all(b"220 test.local ESMTP\r\n").await;
            let mut mail = Mail::default();
            while let Ok(Some(line)) = lines.next_line().await {
                let upper = line.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    b"250-test.local\r\n250 8BITMIME\r\n"
                } else if upper.starts_with("HELO")
                    || upper.starts_with("RSET")
                    || upper.starts_with("NOOP")
                {
                    b"250 OK\r\n"
                } else if upper.starts_with("MAIL FROM:") {
                    let mut s = state.lock().unwrap();
                    if s.refused == 0 {
                        s.refused += 1;
                        b"451 4.3.0 try again later\r\n"
                    } else {
                        mail = Mail {
                            from: line[10..].trim().to_owned(),
                            ..Mail::default()
                        };
                        b"250 OK\r\n"
                    }
                } else if upper.starts_with("RCPT TO:") {
                    mail.to.push(line[8..].trim().to_owned());
                    b"250 OK\r\n"
                } else if upper == "DATA" {
                    let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                    let mut data = String::new();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l == "." {
                            break;
                        }
                        data.push_str(&l);
                        data.push('\n');
                    }
                    mail.data = data;
                    state
                        .lock()
                        .unwrap()
                        .accepted
                        .push(std::mem::take(&mut mail));
                    b"250 2.0.0 queued\r\n"
                } else if upper.starts_with("QUIT") {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                } else {
                    b"502 not implemented\r\n"
                };
                if write.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn automation() -> Value {
    json!({
        "name": "mail-desk",
        "trigger": {"event": {"types": ["tickets.ticket_opened"]}},
        "actions": [{"email": {
            "to": ["ops@example.com", "Desk <desk@example.com>"],
            "subject": "Ticket {{ event.stream_id }} opened",
            "body": "Customer {{ event.payload.customer }}: {{ event.payload.description }}"
        }}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_reach_the_smtp_server_once_and_are_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let smtp = Arc::new(Mutex::new(Smtp::default()));
    tokio::spawn(smtp_server(listener, Arc::clone(&smtp)));

    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let mut herald = Herald::start(
        dir.path(),
        &["serve", "--listen", &listen],
        &[
            ("HERALD_SMTP_URL", &smtp_url),
            ("HERALD_SMTP_FROM", "Herald <herald@example.com>"),
        ],
    );
    herald.wait_healthy(PATIENCE).await;
    let base = herald.base.clone();
    let client = reqwest::Client::new();
    let (status, body) = post(&client, format!("{base}/v1/automations"), automation()).await;
    assert_eq!(status, 201, "{body}");
    for (id, customer) in [("T-1", "acme"), ("T-2", "globex")] {
        let (status, body) = post(&client, format!("{base}/v1/tickets/{id}/open"), json!({"kind": "other", "customer": customer, "description": "printer on fire", "opened_by": "me"})).await;
        assert_eq!(status, 201, "{body}");
    }
    let delivered = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let shown = get(
                &client,
                format!("{base}/v1/automations/mail-desk/deliveries"),
            )
            .await;
            let d = shown["deliveries"].as_array().cloned().unwrap_or_default();
            d.len() == 2 && d.iter().all(|d| d["status"] == "delivered")
        }
    })
    .await;
    assert!(delivered, "the emails were not delivered");
    let shown = get(
        &client,
        format!("{base}/v1/automations/mail-desk/deliveries"),
    )
    .await;
    let deliveries = shown["deliveries"].as_array().unwrap();
    // The first was refused once (451) and sent on its second attempt.
    assert_eq!(deliveries[0]["attempts"], 2, "{shown}");
    assert_eq!(deliveries[1]["attempts"], 1, "{shown}");
    assert!(
        deliveries.iter().all(|d| d["status_code"] == 250),
        "{shown}"
    );

    let accepted = smtp.lock().unwrap().accepted.clone();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    // The refused one (T-1's) came second.
    for (id, customer) in [("T-1", "acme"), ("T-2", "globex")] {
        let mail = accepted
            .iter()
            .find(|m| m.data.contains(&format!("Subject: Ticket {id} opened")))
            .unwrap_or_else(|| panic!("no mail about {id}: {accepted:?}"));

        let delivery = deliveries
            .iter()
            .find(|d| {
                mail.data
                    .contains(&format!("<{}@herald>", d["delivery_id"].as_str().unwrap()))
            })
            .unwrap_or_else(|| panic!("no Message-ID of a delivery in {mail:?}"));
        assert!(
            delivery["url"]
                .as_str()
                .unwrap()
                .starts_with("mailto:ops@example.com"),
            "{delivery}"
        );
        assert!(mail.from.contains("herald@example.com"), "{mail:?}");
        assert_eq!(
            mail.to,
            vec!["<ops@example.com>", "<desk@example.com>"],
            "{mail:?}"
        );
        assert!(
            mail.data.contains(&format!("Subject: Ticket {id} opened")),
            "{mail:?}"
        );
        assert!(
            mail.data
                .contains(&format!("Customer {customer}: printer on fire")),
            "{mail:?}"
        );
    }
    let status = herald.terminate(PATIENCE);
    assert!(status.success());

    // Without an SMTP server the email waits, shown as pending.
    let mut herald = Herald::start(dir.path(), &["serve", "--listen", &listen], &[]);
    herald.wait_healthy(PATIENCE).await;
    let (status, body) = post(
        &client,
        format!("{base}/v1/tickets/T-3/open"),
        json!({"kind": "other", "customer": "initech", "description": "d", "opened_by": "me"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let queued = eventually(PATIENCE, || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let shown = get(
                &client,
                format!("{base}/v1/automations/mail-desk/deliveries"),
            )
            .await;
            let d = shown["deliveries"].as_array().cloned().unwrap_or_default();
            d.len() == 3 && d[2]["status"] == "pending"
        }
    })
    .await;
    assert!(queued, "the third email was not queued");
    assert_eq!(smtp.lock().unwrap().accepted.len(), 2);
    let status = herald.terminate(PATIENCE);
    assert!(status.success());
}
