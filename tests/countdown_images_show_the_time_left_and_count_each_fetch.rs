//! `herald serve` on its embedded defaults, as a user runs it: a countdown
//! created with a style, its image URL issued, and the image fetched as a
//! mail client would. The GIF is decoded: its size is the style's, it has
//! one frame per second for the next 60 seconds, each shown 1 s, and each
//! frame's pixels are exactly those of the reference drawing of the time
//! left at that second (and not those of the second before). Each fetch is
//! one `countdown_viewed` with the client's family and nothing else about
//! the reader, concurrent fetches included; a 304 revalidation counts too.
//! A revoked, wrong or unknown image name is 404 and counts nothing; after
//! the deadline the image is the expired text and no view is counted.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use herald_countdown::{display_at, draw, palette, Display, Font, Labels, Rgb, Style, Units};
use herald_testkit::eventually;
use serde_json::{json, Value};
use support::{get_json, start_serves};

const PATIENCE: Duration = Duration::from_secs(60);

/// A decoded GIF: its screen size, and each frame composited onto the
/// previous one (frames after the first cover only what changed).
struct Decoded {
    width: u32,
    height: u32,
    delays: Vec<u16>,
    frames: Vec<Vec<[u8; 3]>>,
    looping: bool,
}

fn decode(bytes: &[u8]) -> Decoded {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(bytes).expect("a GIF");
    let (width, height) = (decoder.width() as u32, decoder.height() as u32);
    let mut canvas = vec![[0u8; 3]; (width * height) as usize];
    let mut frames = Vec::new();
    let mut delays = Vec::new();
    while let Some(frame) = decoder.read_next_frame().expect("a frame") {
        delays.push(frame.delay);
        for y in 0..frame.height as u32 {
            for x in 0..frame.width as u32 {
                let i = ((y * frame.width as u32 + x) * 4) as usize;
                let px = &frame.buffer[i..i + 4];
                if px[3] == 0 {
                    continue;
                }
                let at = ((frame.top as u32 + y) * width + frame.left as u32 + x) as usize;
                canvas[at] = [px[0], px[1], px[2]];
            }
        }
        frames.push(canvas.clone());
    }
    Decoded {
        width,
        height,
        delays,
        frames,
        looping: bytes.windows(11).any(|w| w == b"NETSCAPE2.0"),
    }
}

/// The reference drawing of `display`, as colours.
fn reference(style: &Style, display: &Display) -> Vec<[u8; 3]> {
    let colours = palette(style);
    draw(style, display)
        .pixels
        .iter()
        .map(|&i| colours[i as usize])
        .collect()
}

fn test_style() -> Style {
    Style {
        width: 600,
        height: 150,
        background: Rgb([0x10, 0x20, 0x30]),
        foreground: Rgb([0xff, 0xee, 0x00]),
        label_colour: Rgb([0xaa, 0xbb, 0xcc]),
        font: Font::MonoBold,
        units: Units {
            days: true,
            hours: true,
            minutes: true,
            seconds: true,
        },
        labels: Some(Labels {
            days: "Tage".into(),
            hours: "Std".into(),
            minutes: "Min".into(),
            seconds: "Sek".into(),
        }),
        expired_text: "Vorbei".into(),
    }
}

/// The same style as the command body sets it.
fn style_body() -> Value {
    json!({
        "width": 600, "height": 150,
        "background": "#102030", "foreground": "#FFEE00", "label_colour": "#aabbcc",
        "font": "mono_bold", "units": ["seconds", "minutes", "hours", "days"],
        "labels": {"days": "Tage", "hours": "Std", "minutes": "Min", "seconds": "Sek"},
        "expired_text": "Vorbei",
    })
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, id: &str, deadline: DateTime<Utc>, style: Value) -> String {
        let (status, body) = self
            .post(
                &format!("/v1/timers/{id}/create_countdown"),
                json!({"deadline": deadline, "label": "Offer ends", "style": style}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.issue(id).await
    }

    /// Issues an image URL; returns its path.
    async fn issue(&self, id: &str) -> String {
        let (status, body) = self
            .post(&format!("/v1/countdowns/{id}/image_url"), json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
        let path = body["image_path"].as_str().unwrap().to_owned();
        assert_eq!(body["image_url"], format!("{}{path}", self.base));
        assert!(
            path.starts_with(&format!("/v1/countdowns/default.{id}.")) && path.ends_with(".gif")
        );
        path
    }

    async fn fetch(&self, path: &str, agent: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap()
    }

    async fn views(&self, id: &str) -> u64 {
        let state = get_json(&self.http, format!("{}/v1/timers/{id}", self.base)).await;
        state["state"]["views"].as_u64().unwrap()
    }

    /// `herald_countdown_renders_total` now.
    async fn renders(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("herald_countdown_renders_total "))
            .expect("the renders counter")
            .trim()
            .parse()
            .unwrap()
    }

    /// The payloads of the stream's `countdown_viewed` events.
    async fn viewed_events(&self, id: &str) -> Vec<Value> {
        let url = format!("{}/v1/streams/timers/{id}/events?limit=1000", self.base);
        let page = get_json(&self.http, url).await;
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "timers.countdown_viewed")
            .map(|e| {
                assert_eq!(e["version"], 2, "{e}");
                e["payload"].clone()
            })
            .collect()
    }
}

const GMAIL: &str =
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
const APPLE_MAIL: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_countdown_is_drawn_second_by_second_and_each_fetch_is_one_view() {
    let (_dirs, processes) = start_serves(1, &[], &[], PATIENCE).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: processes[0].base.clone(),
    };
    let style = test_style();
    // 2 days 04:13:59 (and a bit) from a whole second: every frame's time
    // left is known once the frame's second is.
    let deadline = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
        + TimeDelta::seconds(2 * 86_400 + 4 * 3600 + 13 * 60 + 59 + 30);
    let path = api.create("offer-1", deadline, style_body()).await;

    let asked = Utc::now();
    let response = api.fetch(&path, GMAIL).await;
    let answered = Utc::now();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/gif");
    assert_eq!(
        headers["cache-control"],
        "no-cache, max-age=0, must-revalidate"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let gif = decode(&response.bytes().await.unwrap());
    assert_eq!((gif.width, gif.height), (600, 150));
    assert_eq!(gif.frames.len(), 60);
    assert!(gif.delays.iter().all(|&d| d == 100), "{:?}", gif.delays);
    assert!(!gif.looping, "a countdown must not loop back in time");

    // Frame 0 is the time left at one of the seconds the request spanned;
    // find which, then every frame i is that second + i, exactly.
    let first = asked.duration_trunc(TimeDelta::seconds(1)).unwrap();
    let start = (0..=(answered - first).num_seconds())
        .map(|s| first + TimeDelta::seconds(s))
        .find(|at| gif.frames[0] == reference(&style, &display_at(style.units, deadline, *at)))
        .expect("frame 0 shows the time left at the second it was fetched");
    for (i, frame) in gif.frames.iter().enumerate() {
        let at = start + TimeDelta::seconds(i as i64);
        let shown = display_at(style.units, deadline, at);
        assert_eq!(
            *frame,
            reference(&style, &shown),
            "frame {i} shows {shown:?}"
        );
        // The comparison tells digits apart: the second before differs.
        let before = display_at(style.units, deadline, at - TimeDelta::seconds(1));
        assert_ne!(*frame, reference(&style, &before), "frame {i}");
    }
    let Display::Running { days, hours, .. } = display_at(style.units, deadline, start) else {
        panic!("running")
    };
    assert_eq!((days, hours), (2, 4));

    // One view, from Gmail's proxy, and nothing about the reader.
    assert_eq!(api.views("offer-1").await, 1);
    let viewed = api.viewed_events("offer-1").await;
    assert_eq!(viewed.len(), 1);
    let keys: Vec<&String> = viewed[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["client", "viewed_at", "views"]);
    assert_eq!(viewed[0]["client"], "gmail_proxy");

    // Forty concurrent fetches: forty views, each counted once, and the
    // renders shared (at most a couple of seconds' worth were drawn).
    let renders_before = api.renders().await;
    let began = std::time::Instant::now();
    let fetches: Vec<_> = (0..40).map(|_| api.fetch(&path, APPLE_MAIL)).collect();
    for r in futures::future::join_all(fetches).await {
        assert_eq!(r.status(), 200);
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    // One render per second the fetches spanned (and the one after, drawn
    // ahead for a watched countdown), not one per fetch.
    let renders = api.renders().await - renders_before;
    let seconds = began.elapsed().as_secs() + 3;
    assert!(
        renders <= seconds,
        "{renders} renders in {seconds} seconds' span"
    );
    assert_eq!(api.views("offer-1").await, 41);
    let viewed = api.viewed_events("offer-1").await;
    assert_eq!(viewed.len(), 41);
    let counts: Vec<u64> = viewed
        .iter()
        .map(|p| p["views"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, (1..=41).collect::<Vec<_>>());
    assert!(viewed[1..].iter().all(|p| p["client"] == "apple_mail"));

    // A revalidation within the same second is 304, and still a view.
    let revalidated = AtomicU64::new(0);
    let not_modified = eventually(PATIENCE, || {
        let api = &api;
        let path = &path;
        let revalidated = &revalidated;
        async move {
            let fresh = api.fetch(path, GMAIL).await;
            let etag = fresh.headers()["etag"].to_str().unwrap().to_owned();
            let again = api
                .http
                .get(format!("{}{path}", api.base))
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            revalidated.fetch_add(2, Ordering::Relaxed);
            again.status() == 304 && again.bytes().await.unwrap().is_empty()
        }
    })
    .await;
    assert!(
        not_modified,
        "a revalidation in the same second answers 304"
    );
    assert_eq!(
        api.views("offer-1").await,
        41 + revalidated.load(Ordering::Relaxed)
    );

    // Restyled: another size, another rendering.
    let (status, body) = api
        .post(
            "/v1/timers/offer-1/restyle_countdown",
            json!({"style": {"width": 320, "height": 80, "labels": null}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let restyled = api.fetch(&path, GMAIL).await;
    assert_ne!(restyled.headers()["etag"].to_str().unwrap(), etag);
    let gif = decode(&restyled.bytes().await.unwrap());
    assert_eq!((gif.width, gif.height), (320, 80));
    let views = api.views("offer-1").await;

    // Wrong secret, unknown countdown, malformed name, revoked URL: the
    // same 404, and no view.
    let (_, secret) = path.trim_end_matches(".gif").rsplit_once('.').unwrap();
    let mut wrong = secret.to_owned();
    wrong.replace_range(0..1, if secret.starts_with('A') { "B" } else { "A" });
    for bad in [
        format!("/v1/countdowns/default.offer-1.{wrong}.gif"),
        format!("/v1/countdowns/default.no-such.{secret}.gif"),
        format!("/v1/countdowns/other.offer-1.{secret}.gif"),
        "/v1/countdowns/default.offer-1.gif".to_owned(),
        "/v1/countdowns/nothing.gif".to_owned(),
    ] {
        let r = api.fetch(&bad, GMAIL).await;
        assert_eq!(r.status(), 404, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(
            problem["detail"], "no countdown image at this name",
            "{bad}"
        );
    }
    let replaced = api.issue("offer-1").await;
    assert_ne!(replaced, path);
    assert_eq!(api.fetch(&path, GMAIL).await.status(), 404);
    assert_eq!(api.fetch(&replaced, GMAIL).await.status(), 200);
    let r = api
        .http
        .delete(format!("{}/v1/countdowns/offer-1/image_url", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["revoked"], true);
    assert_eq!(api.fetch(&replaced, GMAIL).await.status(), 404);
    assert_eq!(api.views("offer-1").await, views + 1);

    // The read models follow every one of these events: the countdown view
    // counts the views, and nothing was parked.
    let url = format!("{}/v1/projections/timers", api.base);
    let followed = eventually(PATIENCE, || async {
        let detail = get_json(&api.http, url.clone()).await;
        detail["status"]["lag_events"] == 0
    })
    .await;
    assert!(followed, "the timers read model catches up");
    let detail = get_json(&api.http, url).await;
    assert_eq!(detail["parked_events"], json!([]), "{detail}");
    assert_eq!(detail["status"]["parked"], 0, "{detail}");
    let view = get_json(
        &api.http,
        format!("{}/v1/views/countdowns/offer-1", api.base),
    )
    .await;
    assert_eq!(view["views"], views + 1, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_deadline_the_image_shows_the_expired_text_and_counts_nothing() {
    let (dirs, mut processes) = start_serves(1, &[], &[], PATIENCE).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: processes[0].base.clone(),
    };
    let style = test_style();

    // A view answered is a view kept: killed with SIGKILL and started again
    // on the same directory, the URL still works and the count goes on.
    let far = Utc::now() + TimeDelta::days(3);
    let kept = api.create("kept", far, style_body()).await;
    assert_eq!(api.fetch(&kept, GMAIL).await.status(), 200);
    processes[0].kill9();
    let listen = api.base.trim_start_matches("http://").to_owned();
    let mut restarted =
        support::Herald::start(dirs[0].path(), &["serve", "--listen", &listen], &[]);
    restarted.wait_healthy(PATIENCE).await;
    assert_eq!(api.fetch(&kept, GMAIL).await.status(), 200);
    assert_eq!(api.views("kept").await, 2);
    assert_eq!(api.viewed_events("kept").await.len(), 2);

    // A deadline a few seconds away: the GIF ends on the expired frame.
    let deadline =
        Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let path = api.create("flash-sale", deadline, style_body()).await;
    let response = api.fetch(&path, APPLE_MAIL).await;
    assert_eq!(response.status(), 200);
    let gif = decode(&response.bytes().await.unwrap());
    assert!((1..=5).contains(&gif.frames.len()), "{}", gif.frames.len());
    assert_eq!(
        *gif.frames.last().unwrap(),
        reference(&style, &Display::Expired),
        "the last frame is the expired text"
    );

    // Past the deadline: the expired image, one frame, cacheable, and the
    // aggregate records no view.
    let passed = eventually(PATIENCE, || async {
        Utc::now() > deadline + TimeDelta::milliseconds(100)
    })
    .await;
    assert!(passed);
    let views = api.views("flash-sale").await;
    let viewed = api.viewed_events("flash-sale").await.len();
    for _ in 0..3 {
        let r = api.fetch(&path, GMAIL).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "public, max-age=300");
        let gif = decode(&r.bytes().await.unwrap());
        assert_eq!(gif.frames.len(), 1);
        assert_eq!(gif.frames[0], reference(&style, &Display::Expired));
        assert_ne!(
            gif.frames[0],
            reference(
                &style,
                &display_at(style.units, deadline, deadline - TimeDelta::seconds(1))
            )
        );
    }
    assert_eq!(api.views("flash-sale").await, views);
    assert_eq!(api.viewed_events("flash-sale").await.len(), viewed);

    // A timer is not a countdown: no image URL.
    let (status, _) = api
        .post(
            "/v1/timers/t-1/schedule",
            json!({"after_secs": 3600, "deliver": {"kind": "command", "domain": "tickets",
                   "stream_id": "T-1", "name": "close", "body": {}}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = api.post("/v1/countdowns/t-1/image_url", json!({})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api.post("/v1/countdowns/nope/image_url", json!({})).await;
    assert_eq!(status, 404, "{body}");
    // A bad style is refused and changes nothing.
    let (status, body) = api
        .post(
            "/v1/timers/bad/create_countdown",
            json!({"deadline": deadline, "label": "x", "style": {"width": 5000}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        api.http
            .get(format!("{}/v1/timers/bad", api.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
