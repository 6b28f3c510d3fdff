//! The browser console, driven in Debian's headless Chromium through
//! chromedriver (WebDriver, the `fantoccini` crate) against `herald serve`
//! started as users start it, with a bootstrap admin key, on a store seeded
//! through the HTTP API. Each flow asserts what the page shows:
//!
//! 1. signing in with an admin key makes an HttpOnly cookie session (the
//!    page's `document.cookie` never shows `herald_session`);
//! 2. an event is found by a payload filter and opened;
//! 3. its causation is followed up to the command that made it (the root
//!    event, produced by `http:key:…`);
//! 4. a ticket is travelled back to an earlier version with the slider, and
//!    two versions are diffed;
//! 5. a parked event is retried on the projections page and leaves the list;
//! 6. a key is created on the Keys page, a second browser signs in with it,
//!    the admin revokes it, and the second browser's next action shows the
//!    sign-in form saying the key was revoked;
//! 7. verify on a tampered store names the break's position and kind;
//! 8. every page is visited and photographed into
//!    `target/console-screenshots/<page>.png` (and one at 360 px wide),
//!    the live tail showing an event arrive, pausing and resuming.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` on the `PATH` (Debian
//! packages `chromium` and `chromium-driver`), or others named by
//! `HERALD_TEST_CHROMIUM` and `HERALD_TEST_CHROMEDRIVER`. Set `HERALD_CONSOLE_DIR` to serve the
//! console's files from a directory instead of the embedded ones (to try
//! changes to them without rebuilding).

mod support;

use std::cell::RefCell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::{free_port, Herald};

/// The browser and its WebDriver: Debian's, unless the environment names
/// others.
fn chromium() -> String {
    std::env::var("HERALD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

fn chromedriver() -> String {
    std::env::var("HERALD_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned())
}
/// Longest wait for anything a page shows.
const PATIENCE: Duration = Duration::from_secs(20);
/// The bootstrap admin key of every Herald started here.
const ADMIN_KEY: &str = "hk_00112233445566aa_console-test-secret-0123456789abcdefghijkl";
const ADMIN_ID: &str = "00112233445566aa";

/// The browser tests share two CPUs with the build: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `probe` until it answers `Some`, or panics naming `what`.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let found = RefCell::new(None);
    let arrived = herald_testkit::eventually(PATIENCE, || {
        let next = probe();
        let found = &found;
        async move {
            let value = next.await;
            let arrived = value.is_some();
            *found.borrow_mut() = value;
            arrived
        }
    })
    .await;
    assert!(arrived, "gave up waiting for {what}");
    found.into_inner().expect("the value that arrived")
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let (browser, driver) = (chromium(), chromedriver());
        assert!(
            Path::new(&browser).exists(),
            "this test needs {browser} (apt install chromium chromium-driver, or set \
             HERALD_TEST_CHROMIUM)"
        );
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let status = format!("{url}/status");
        until("chromedriver to answer", || {
            let request = client.get(&status).send();
            async move {
                let body: Value = request.await.ok()?.json().await.ok()?;
                body["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        Self { child, url }
    }

    /// A new browser (its own profile, so its own cookies).
    async fn browser(&self) -> Browser {
        self.browser_with(json!({})).await
    }

    /// A new browser showing pages `width` CSS pixels wide, as a phone
    /// would (a desktop window cannot be made that narrow).
    async fn phone(&self, width: u32) -> Browser {
        self.browser_with(json!({"mobileEmulation": {
            "deviceMetrics": {"width": width, "height": 800, "pixelRatio": 1.0}}}))
            .await
    }

    async fn browser_with(&self, extra: Value) -> Browser {
        let mut options = json!({
            "binary": chromium(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        });
        for (k, v) in extra.as_object().expect("options").clone() {
            options[k] = v;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session");
        Browser { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window on the console.
struct Browser {
    client: Client,
}

impl Browser {
    async fn open(&self, base: &str, hash: &str) {
        self.client
            .goto(&format!("{base}/console{hash}"))
            .await
            .expect("open the console");
    }

    /// Sets the hash as a link would (the page is already loaded).
    async fn go(&self, hash: &str) {
        self.client
            .execute("location.hash = arguments[0];", vec![json!(hash)])
            .await
            .expect("navigate");
    }

    /// The text of the first element matching `css` once it contains
    /// `wanted`.
    async fn text_with(&self, css: &str, wanted: &str) -> String {
        let last = RefCell::new(String::new());
        let shown = herald_testkit::eventually(PATIENCE, || async {
            let Ok(el) = self.client.find(Locator::Css(css)).await else {
                return false;
            };
            let Ok(text) = el.text().await else {
                return false;
            };
            let shown = text.contains(wanted);
            *last.borrow_mut() = text;
            shown
        })
        .await;
        let last = last.into_inner();
        if !shown {
            self.shot("failure").await;
            panic!("{css} never showed {wanted:?}; it showed {last:?}")
        }
        last
    }

    /// The first element matching `css`, once there is one.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => {
                self.shot("failure").await;
                panic!("no {css}: {e}")
            }
        }
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// Runs `script` (a function body) and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("run script")
    }

    /// Waits until `script` returns true.
    async fn until_js(&self, what: &str, script: &str) {
        let held = herald_testkit::eventually(PATIENCE, || async {
            self.js(script).await == Value::Bool(true)
        })
        .await;
        if !held {
            self.shot("failure").await;
            panic!("gave up waiting for {what} ({script})");
        }
    }

    /// Scrolls the first element matching `css` to the top of the window,
    /// then takes a screenshot.
    async fn shot_at(&self, name: &str, css: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'start'});",
                vec![json!(css)],
            )
            .await
            .expect("scroll");
        self.shot(name).await;
    }

    /// Writes the window to `target/console-screenshots/<name>.png`.
    async fn shot(&self, name: &str) {
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(dir.join(format!("{name}.png")), png).expect("write a screenshot");
        }
    }

    /// Signs in with `key` and waits for the header to name the subject.
    async fn sign_in(&self, key: &str) {
        self.find("#sign-in:not([hidden])").await;
        self.fill("#credential", key).await;
        self.click("#sign-in-submit").await;
        self.until_js(
            "the signed-in header",
            "return document.body.dataset.signedIn === 'true';",
        )
        .await;
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

/// `herald serve` in a directory of its own, with the bootstrap admin key.
async fn serve(dir: &Path) -> Herald {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = vec![("HERALD_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)];
    let assets = std::env::var("HERALD_CONSOLE_DIR").unwrap_or_default();
    if !assets.is_empty() {
        env.push(("HERALD_CONSOLE_DIR", assets.as_str()));
    }
    let mut herald = Herald::start(dir, &["serve", "--listen", &listen], &env);
    herald.wait_healthy(PATIENCE).await;
    herald
}

/// The HTTP API as the admin key.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("herald answers");
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Polls `GET path` until `ready` holds for the answer.
    async fn until(&self, what: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        until(what, || async {
            let body = self.get(path).await;
            ready(&body).then_some(body)
        })
        .await
    }

    async fn publish(&self, stream: &str, event_type: &str, payload: Value) -> Value {
        self.post(
            "/v1/events",
            json!({"stream": stream, "type": event_type, "version": 1, "payload": payload}),
        )
        .await
    }
}

/// Tickets with notes (one urgent, which an automation answers by assigning
/// the ticket), a resolution, a draft with edits, a runtime type with
/// published events.
async fn seed(api: &Api) {
    api.post(
        "/v1/automations",
        json!({
            "name": "escalate-urgent",
            "description": "An urgent note on an open ticket assigns it to the note's author.",
            "trigger": {"event": {"types": ["tickets.note_appended"], "stream": "tickets/T-*"}},
            "with": {"ticket": {"domain": "tickets", "id": "{{ event.stream_id }}"}},
            "when": "event.payload.note.contains('urgent') && state.ticket.status == 'open'",
            "actions": [{"command": {"domain": "tickets", "id": "{{ event.stream_id }}", "name": "assign",
                          "body": {"assignee": "{{ event.payload.author }}", "assigned_by": "escalate-urgent"}}}],
        }),
    )
    .await;
    api.post(
        "/v1/tickets/T-1001/open",
        json!({"kind": "other", "customer": "acme", "description": "printer on fire", "opened_by": "desk"}),
    )
    .await;
    api.post(
        "/v1/tickets/T-1001/append_note",
        json!({"note": "toner checked", "author": "bob"}),
    )
    .await;
    api.post(
        "/v1/tickets/T-1001/append_note",
        json!({"note": "urgent: smoke", "author": "alice"}),
    )
    .await;
    api.until(
        "the automation to assign T-1001",
        "/v1/tickets/T-1001",
        |t| t["state"]["assignee"] == "alice",
    )
    .await;
    api.post(
        "/v1/tickets/T-1001/resolve",
        json!({"resolution": "extinguished", "resolved_by": "alice"}),
    )
    .await;
    api.post(
        "/v1/tickets/T-1002/open",
        json!({"kind": "other", "customer": "globex", "edge": "E-17", "description": "link flapping"}),
    )
    .await;
    api.post(
        "/v1/drafts/D-1/create",
        json!({"title": "Runbook", "document": {"title": "Runbook", "steps": ["look"]}, "created_by": "carol"}),
    )
    .await;
    api.post(
        "/v1/drafts/D-1/apply_patch",
        json!({"patch": [{"op": "add", "path": "/steps/-", "value": "listen"}], "base_version": 1, "author": "carol"}),
    )
    .await;
    api.post(
        "/v1/drafts/D-1/apply_patch",
        json!({"patch": [{"op": "replace", "path": "/title", "value": "Runbook v2"}], "base_version": 2}),
    )
    .await;
    api.post("/v1/drafts/D-1/publish", json!({"published_by": "carol"}))
        .await;
    api.post(
        "/v1/schemas",
        json!({"type": "orders.order_placed", "version": 1, "schema": {
            "type": "object", "required": ["order_id", "amount"],
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}}),
    )
    .await;
    for (id, amount) in [("O-1", 42), ("O-2", 7)] {
        api.publish(
            &format!("orders/{id}"),
            "orders.order_placed",
            json!({"order_id": id, "amount": amount}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_finds_follows_and_travels_through_events_on_every_page() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = serve(dir.path()).await;
    let api = Api::new(&herald.base);
    seed(&api).await;
    let driver = Driver::start().await;
    let b = driver.browser().await;

    // 1. Sign in: an HttpOnly cookie session.
    b.open(&herald.base, "").await;
    b.find("#sign-in-form").await;
    b.shot("sign-in").await;
    b.sign_in(ADMIN_KEY).await;
    b.text_with("#who-tenant", "default").await;
    b.text_with("#who-subject", &format!("key:{ADMIN_ID}"))
        .await;
    b.text_with("#who-role", "admin").await;
    let session = b
        .client
        .get_named_cookie("herald_session")
        .await
        .expect("a session cookie");
    assert_eq!(
        (session.http_only(), session.path()),
        (Some(true), Some("/")),
        "{session:?}"
    );
    let cookies = b.js("return document.cookie;").await;
    assert!(
        !cookies
            .as_str()
            .unwrap_or_default()
            .contains("herald_session"),
        "the session cookie is HttpOnly: {cookies}"
    );

    // Overview: numbers, and charts that move as events are appended.
    b.text_with("[data-testid=ready-state]", "Ready").await;
    b.until_js(
        "two samples on the rate chart",
        "const p = document.querySelector('[data-testid=chart-rates] polyline');\
         return !!p && p.getAttribute('points').split(' ').filter(Boolean).length >= 2;",
    )
    .await;
    let batch: Vec<Value> = (0..40)
        .map(|i| {
            json!({"stream": format!("orders/B-{i}"), "type": "orders.order_placed",
                        "version": 1, "payload": {"order_id": format!("B-{i}"), "amount": i}})
        })
        .collect();
    api.post("/v1/events", json!({"events": batch})).await;
    b.until_js(
        "a rate above 0 on the chart",
        "return Number(document.querySelector('[data-testid=chart-rates-0]').textContent) > 0;",
    )
    .await;
    b.until_js(
        "the sample after the burst",
        "const p = document.querySelector('[data-testid=chart-rates] polyline');\
         return p.getAttribute('points').split(' ').filter(Boolean).length >= 4;",
    )
    .await;
    b.shot("overview").await;

    // 2. Find an event by its payload and open it.
    b.go("#/events").await;
    b.fill(
        "[data-testid=search-payload]",
        "payload.assigned_by=escalate-urgent",
    )
    .await;
    b.click("[data-testid=search-submit]").await;
    b.text_with("[data-testid=search-table]", "tickets.ticket_assigned")
        .await;
    let rows = b
        .client
        .find_all(Locator::Css("[data-testid=search-table-row]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one event matches");
    b.shot("events").await;
    b.click("[data-testid=search-table-row] [data-testid=event-link]")
        .await;
    b.text_with("#page h1", "Event tickets.ticket_assigned")
        .await;
    b.text_with("[data-testid=event-payload]", "escalate-urgent")
        .await;
    b.text_with("[data-testid=event-producer]", "escalate-urgent")
        .await;

    // 3. Its causation, up to the command: the urgent note, appended with
    // the admin key.
    let producer = b
        .text_with("[data-testid=root-producer]", "http:key:")
        .await;
    assert_eq!(producer, format!("http:key:{ADMIN_ID}"));
    b.text_with("[data-testid=correlated-table]", "tickets.note_appended")
        .await;
    b.shot_at("event", "#cause-h").await;
    b.click("[data-testid=causation-root] [data-testid=event-link]")
        .await;
    b.text_with("#page h1", "Event tickets.note_appended").await;
    b.text_with("[data-testid=causation-self]", "is a root")
        .await;
    b.text_with("[data-testid=event-payload]", "urgent: smoke")
        .await;
    let root_url = b.client.current_url().await.unwrap();

    // 4. Time travel: T-1001 is resolved now (version 5), open at version 2.
    b.go("#/aggregates/tickets/T-1001").await;
    b.until_js(
        "the state at the latest version",
        "const s = document.querySelector('[data-testid=state-then]');\
         return !!s && s.dataset.version === '5';",
    )
    .await;
    b.text_with("[data-testid=state-then]", "\"status\": \"resolved\"")
        .await;
    let slider = b.find("[data-testid=version-slider]").await;
    for _ in 0..3 {
        slider.send_keys(&Key::Left).await.expect("move the slider");
    }
    b.text_with("[data-testid=version-label]", "version 2 of 5")
        .await;
    b.until_js(
        "the state at version 2",
        "return document.querySelector('[data-testid=state-then]').dataset.version === '2';",
    )
    .await;
    let then = b
        .text_with("[data-testid=state-then]", "\"status\": \"open\"")
        .await;
    assert!(
        !then.contains("alice"),
        "not yet assigned at version 2: {then}"
    );
    b.find("[data-testid=diff-from]")
        .await
        .select_by_value("2")
        .await
        .unwrap();
    b.find("[data-testid=diff-to]")
        .await
        .select_by_value("5")
        .await
        .unwrap();
    b.click("[data-testid=diff-submit]").await;
    b.until_js(
        "the diff of versions 2 and 5",
        "return document.querySelector('[data-testid=diff-result]').dataset.compared === '2-5';",
    )
    .await;
    let diff = b.text_with("[data-testid=diff-table]", "/status").await;
    assert!(
        diff.contains("~ changed") && diff.contains("\"open\" → \"resolved\""),
        "{diff}"
    );
    assert!(diff.contains("+ added") || diff.contains("alice"), "{diff}");
    b.shot_at("aggregates", "#travel-h").await;

    // A draft shows its document and the diff of its edits.
    b.go("#/aggregates/drafts/D-1").await;
    b.text_with("[data-testid=current-document]", "Runbook v2")
        .await;
    b.text_with("[data-testid=diff-table]", "/").await;
    b.shot_at("aggregates-draft", "#diff-h").await;

    // 8. Every page. The live tail: an event arrives, pause, resume.
    b.go("#/tail").await;
    b.text_with("[data-testid=tail-state]", "Live").await;
    api.publish(
        "orders/O-3",
        "orders.order_placed",
        json!({"order_id": "O-3", "amount": 3}),
    )
    .await;
    b.text_with("[data-testid=tail-rows]", "orders/O-3").await;
    b.click("[data-testid=tail-pause]").await;
    b.text_with("[data-testid=tail-state]", "Paused").await;
    api.publish(
        "orders/O-4",
        "orders.order_placed",
        json!({"order_id": "O-4", "amount": 4}),
    )
    .await;
    // Paused, the stream is closed on the server: nothing can arrive.
    api.until(
        "the paused tail's stream to close",
        "/v1/console/overview",
        |o| o["subscribers"] == 0,
    )
    .await;
    let paused = b
        .find("[data-testid=tail-rows]")
        .await
        .text()
        .await
        .unwrap();
    assert!(!paused.contains("orders/O-4"), "paused: {paused}");
    b.click("[data-testid=tail-resume]").await;
    b.text_with("[data-testid=tail-rows]", "orders/O-4").await;
    b.text_with("[data-testid=tail-count]", "2").await;
    b.shot("tail").await;

    b.go("#/projections").await;
    b.text_with("[data-testid=projection-list]", "tickets")
        .await;
    b.shot("projections").await;

    b.go("#/schemas").await;
    b.text_with("[data-testid=schema-list]", "orders.order_placed")
        .await;
    b.fill("[data-testid=check-type]", "orders.order_placed")
        .await;
    b.fill(
        "[data-testid=check-schema]",
        r#"{"type": "object", "required": ["order_id", "amount", "currency"],
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"},
                           "currency": {"type": "string"}}}"#,
    )
    .await;
    b.click("[data-testid=check-submit]").await;
    b.text_with("[data-testid=check-verdict]", "Refused").await;
    b.shot_at("schemas", "[data-testid=check-form]").await;

    b.go("#/automations").await;
    b.text_with("[data-testid=automation-list]", "escalate-urgent")
        .await;
    b.text_with("[data-testid=automation-state]", "enabled")
        .await;
    b.click("[data-testid=automation-link]").await;
    b.click("[data-testid=dry-run]").await;
    b.text_with("[data-testid=dry-run-summary]", "decision")
        .await;
    b.text_with("[data-testid=dry-run-table]", "assign").await;
    b.shot_at("automations", "#dry-h").await;

    b.go("#/audit").await;
    b.click("[data-testid=verify-run]").await;
    b.text_with("[data-testid=verify-verdict]", "intact").await;
    b.shot_at("audit", "[data-testid=verify-form]").await;

    b.go("#/keys").await;
    b.text_with("[data-testid=key-list]", ADMIN_ID).await;
    b.shot("keys").await;

    // At 360 px wide: nothing wider than the screen.
    let phone = driver.phone(360).await;
    phone.open(&herald.base, "#/overview").await;
    phone.sign_in(ADMIN_KEY).await;
    phone.text_with("[data-testid=ready-state]", "Ready").await;
    phone.shot("overview-360").await;
    phone.go("#/events").await;
    phone.find("[data-testid=search-table]").await;
    let widths = phone
        .js("return [document.documentElement.scrollWidth, window.innerWidth];")
        .await;
    assert_eq!(widths, json!([360, 360]), "no sideways scrolling at 360 px");
    phone.js("window.scrollTo(0, 900);").await;
    phone.shot("events-360").await;
    phone.close().await;

    // Back on the root event: the events it caused directly (search by
    // causation), the automation's assignment among them.
    b.client.goto(root_url.as_str()).await.unwrap();
    b.text_with("[data-testid=caused-table]", "tickets.ticket_assigned")
        .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_is_retried_and_a_revoked_key_ends_its_session() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = serve(dir.path()).await;
    let api = Api::new(&herald.base);
    // A rename of a draft never created: the drafts projection parks it.
    let rename = api
        .post(
            "/v1/streams/drafts/D-orphan/events",
            json!({"events": [{"type": "drafts.draft_renamed", "version": 1, "payload": {"title": "Orphan"}}]}),
        )
        .await;
    let position = rename["events"][0]["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("a position: {rename}"));
    api.until("the rename to be parked", "/v1/projections/drafts", |p| {
        p["parked_events"][0]["position"] == position
    })
    .await;
    let driver = Driver::start().await;
    let admin = driver.browser().await;
    admin.open(&herald.base, "#/projections/drafts").await;
    admin.sign_in(ADMIN_KEY).await;
    admin
        .text_with("[data-testid=parked-table]", "D-orphan")
        .await;
    let listed = admin
        .text_with("[data-testid=parked-position]", &position.to_string())
        .await;
    assert_eq!(listed, position.to_string());
    // A retry before the cause is fixed fails, and the event stays parked.
    admin.click("[data-testid=retry-parked]").await;
    admin
        .text_with("[data-testid=retry-result]", "Retry failed")
        .await;
    admin.find("[data-testid=retry-parked]").await;
    admin.shot("projection-parked").await;
    // The draft is created after all: now the rename applies.
    api.post(
        "/v1/streams/drafts/D-orphan/events",
        json!({"events": [{"type": "drafts.draft_created", "version": 1,
                           "payload": {"title": "Found", "document": {}}}]}),
    )
    .await;
    api.until(
        "the creation to be projected",
        "/v1/projections/drafts",
        |p| p["status"]["lag_events"] == 0,
    )
    .await;
    admin.click("[data-testid=retry-parked]").await;
    admin
        .text_with("[data-testid=retry-result]", "no longer parked")
        .await;
    admin
        .text_with("[data-testid=parked-table]", "No parked event")
        .await;
    admin.shot("projection-retried").await;

    // 6. A key made on the Keys page, used by a second browser, revoked.
    admin.go("#/keys").await;
    admin
        .fill("[data-testid=key-scopes]", "read:*, subscribe:*")
        .await;
    admin
        .fill("[data-testid=key-label]", "console test reader")
        .await;
    admin.click("[data-testid=key-create]").await;
    let new_key = admin.find("[data-testid=new-key]").await;
    let key = new_key.prop("value").await.unwrap().unwrap_or_default();
    assert!(key.starts_with("hk_"), "{key}");
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    admin
        .text_with("[data-testid=key-list]", "console test reader")
        .await;
    admin.shot("keys-created").await;

    let reader = driver.browser().await;
    reader.open(&herald.base, "#/events").await;
    reader.sign_in(&key).await;
    reader
        .text_with("#who-subject", &format!("key:{key_id}"))
        .await;
    reader.text_with("#who-role", "read:*").await;
    reader
        .text_with("[data-testid=search-table]", "drafts.draft_renamed")
        .await;

    admin
        .click(&format!("[data-testid=key-revoke][data-key-id='{key_id}']"))
        .await;
    admin
        .text_with("[data-testid=revoke-result]", "revoked")
        .await;
    admin.shot("keys-revoked").await;

    // The reader's next action ends its session.
    reader.click("#nav a[data-route=overview]").await;
    reader.find("#sign-in:not([hidden])").await;
    reader.text_with("#sign-in-message", "revoked").await;
    reader.shot("signed-out-revoked").await;

    admin.close().await;
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_position_and_kind_of_a_break() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = serve(dir.path()).await;
    let api = Api::new(&herald.base);
    for i in 1..=6 {
        api.post(
            "/v1/streams/tickets/T-9/events",
            json!({"events": [{"type": "tickets.note_appended", "version": 1,
                               "payload": {"note": format!("note {i}")}}]}),
        )
        .await;
    }
    // Someone with access to the database edits the payload at position 4.
    let db = rusqlite::Connection::open(dir.path().join("data/herald.db")).expect("open the store");
    db.busy_timeout(PATIENCE).unwrap();
    let changed = db
        .execute(
            r#"UPDATE herald_events SET payload = '{"note": "changed"}' WHERE position = 4"#,
            [],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(db);

    let driver = Driver::start().await;
    let b = driver.browser().await;
    b.open(&herald.base, "#/audit").await;
    b.sign_in(ADMIN_KEY).await;
    b.click("[data-testid=verify-run]").await;
    let verdict = b.text_with("[data-testid=verify-verdict]", "BROKEN").await;
    assert_eq!(verdict, "BROKEN at position 4 (edited)");
    b.text_with("[data-testid=verify-detail]", "changed").await;
    b.text_with("[data-testid=verify-progress]", "done").await;
    b.shot_at("audit-broken", "[data-testid=verify-form]").await;
    b.close().await;
}
