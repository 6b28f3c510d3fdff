//! The image cache: concurrent requests for one countdown in one second
//! share one render; a new second or another countdown renders anew; an
//! expired countdown's image is kept.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use herald_countdown::{CacheStats, Display, ImageCache, Style};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T10:00:00.250Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn whole_second() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_share_one_render() {
    let cache = ImageCache::new(60);
    let style = Arc::new(Style::default());
    let deadline = now() + TimeDelta::hours(3);
    let images = join_all((0..50).map(|i| {
        let (cache, style) = (&cache, &style);
        // Spread over the second: all of it is one image.
        let at = now() + TimeDelta::milliseconds(i * 10);
        async move { cache.image("acme/launch@1", style, deadline, at).await }
    }))
    .await;
    assert_eq!(
        cache.stats(),
        CacheStats {
            renders: 1,
            shared: 49
        }
    );
    assert!(images.iter().all(|image| Arc::ptr_eq(image, &images[0])));
    let image = &images[0];
    assert_eq!(image.start, whole_second());
    assert_eq!(image.frames, 60);
    assert!(!image.expired);
    assert!(image.gif.starts_with(b"GIF89a"));
    assert_eq!(image.etag.len(), 18);
    assert!(image.etag.starts_with('"') && image.etag.ends_with('"'));

    // A later request in the same second is answered from the cache.
    let again = cache
        .image(
            "acme/launch@1",
            &style,
            deadline,
            now() + TimeDelta::milliseconds(700),
        )
        .await;
    assert!(Arc::ptr_eq(&again, image));
    assert_eq!(cache.stats().renders, 1);
}

#[tokio::test]
async fn a_new_second_renders_a_new_image() {
    let cache = ImageCache::new(60);
    let style = Arc::new(Style::default());
    let deadline = now() + TimeDelta::hours(3);
    let first = cache.image("acme/launch@1", &style, deadline, now()).await;
    let next = now() + TimeDelta::seconds(1);
    let second = cache.image("acme/launch@1", &style, deadline, next).await;
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.start, whole_second() + TimeDelta::seconds(1));
    assert_ne!(first.etag, second.etag);
    // Asked for two seconds running, the countdown is watched: the second
    // after is rendered ahead, and its request takes that render.
    assert_eq!(cache.stats().renders, 3);
    let after = now() + TimeDelta::seconds(2);
    let third = cache.image("acme/launch@1", &style, deadline, after).await;
    assert_eq!(third.start, whole_second() + TimeDelta::seconds(2));
    let stats = cache.stats();
    assert_eq!((stats.renders, stats.shared), (4, 1), "{stats:?}");
}

#[tokio::test]
async fn different_countdowns_render_separately() {
    let cache = ImageCache::new(10);
    let style = Arc::new(Style::default());
    let deadline = now() + TimeDelta::hours(3);
    let (a, b, c) = tokio::join!(
        cache.image("acme/launch@1", &style, deadline, now()),
        cache.image("acme/launch@2", &style, deadline, now()),
        cache.image("acme/sale@1", &style, deadline, now()),
    );
    assert!(!Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&b, &c) && !Arc::ptr_eq(&a, &c));
    assert_eq!(
        cache.stats(),
        CacheStats {
            renders: 3,
            shared: 0
        }
    );
    assert_eq!(a.frames, 10);
}

#[tokio::test]
async fn an_expired_countdown_keeps_its_single_frame_image() {
    let cache = ImageCache::new(60);
    let style = Arc::new(Style::default());
    let deadline = now() - TimeDelta::minutes(1);
    let first = cache.image("acme/launch@1", &style, deadline, now()).await;
    assert!(first.expired);
    assert_eq!(first.frames, 1);
    let decoded = {
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::Indexed);
        let mut decoder = options.read_info(&first.gif[..]).unwrap();
        decoder.read_next_frame().unwrap().unwrap().buffer.to_vec()
    };
    assert!(decoded == herald_countdown::draw(&style, &Display::Expired).pixels);

    let later = now() + TimeDelta::minutes(5);
    let again = cache.image("acme/launch@1", &style, deadline, later).await;
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(cache.stats().renders, 1);

    // A moved deadline under the same key is not answered with it.
    let moved = now() + TimeDelta::hours(1);
    let running = cache.image("acme/launch@1", &style, moved, later).await;
    assert!(!running.expired);
    assert_eq!(cache.stats().renders, 2);
}

#[tokio::test]
async fn a_countdown_reaching_its_deadline_shortens_its_gif() {
    let cache = ImageCache::new(60);
    let style = Arc::new(Style::default());
    let deadline = whole_second() + TimeDelta::seconds(5);
    let image = cache.image("acme/launch@1", &style, deadline, now()).await;
    assert_eq!(image.frames, 6);
    assert!(!image.expired);
}
