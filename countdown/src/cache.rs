//! Rendered images shared between requests: concurrent requests for the
//! same countdown in the same second await one render, and memory stays
//! bounded to about two seconds of images per countdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::encode::encode;
use crate::style::Style;
use crate::time::{display_at, Display};

/// One rendered image.
#[derive(Debug)]
pub struct Image {
    pub gif: Arc<[u8]>,
    /// A quoted strong ETag: the first 16 hex digits of the GIF's SHA-256.
    pub etag: String,
    /// The whole second frame 0 shows (for an expired countdown's image,
    /// which is reused until unused for 10 minutes: the second it was
    /// rendered).
    pub start: DateTime<Utc>,
    /// Frame 0 is Expired (so the GIF is that one frame and never changes).
    pub expired: bool,
    pub frames: u32,
}

/// Renders so far, and requests answered from the cache or by joining a
/// render in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub renders: u64,
    pub shared: u64,
}

/// How long an expired countdown's image outlives its last request.
const EXPIRED_IDLE_SECONDS: i64 = 600;

type Cell = Arc<OnceCell<Arc<Image>>>;

#[derive(Debug)]
struct Slot {
    second: i64,
    deadline: DateTime<Utc>,
    cell: Cell,
}

#[derive(Debug, Default)]
struct KeyEntries {
    running: Vec<Slot>,
    /// An expired image never changes, so it outlives its second; the
    /// deadline guards against a key reused for a moved deadline.
    expired: Option<(DateTime<Utc>, Arc<Image>)>,
    last_used: i64,
}

#[derive(Debug, Default)]
struct Entries {
    keys: HashMap<String, KeyEntries>,
    last_sweep: i64,
}

impl Entries {
    /// Drops what no request can use any more; at most once a second, so
    /// its cost is one pass over the countdowns per second.
    fn sweep(&mut self, second: i64) {
        if second <= self.last_sweep {
            return;
        }
        self.last_sweep = second;
        self.keys.retain(|_, entries| {
            entries.running.retain(|slot| slot.second >= second - 1);
            if entries.last_used < second - EXPIRED_IDLE_SECONDS {
                entries.expired = None;
            }
            !entries.running.is_empty() || entries.expired.is_some()
        });
    }
}

/// Rendered countdown images, one render per countdown per second.
#[derive(Debug)]
pub struct ImageCache {
    frames: u32,
    entries: Mutex<Entries>,
    renders: AtomicU64,
    shared: AtomicU64,
}

impl ImageCache {
    /// A cache rendering GIFs of `frames` frames (clamped to 1..=600).
    pub fn new(frames: u32) -> Self {
        ImageCache {
            frames: frames.clamp(1, 600),
            entries: Mutex::new(Entries::default()),
            renders: AtomicU64::new(0),
            shared: AtomicU64::new(0),
        }
    }

    /// The image of countdown `key` (the caller's unique name for the
    /// countdown and its style revision, e.g. "tenant/id@3") whose deadline
    /// is `deadline`, as of `now` truncated to the whole second.
    ///
    /// Concurrent callers for the same key in the same second await one
    /// render, run on the blocking pool; later callers in that second get
    /// the cached image. If the render panics, the panic resumes in the
    /// caller that started it and a waiting caller renders again, so nobody
    /// waits forever.
    pub async fn image(
        &self,
        key: &str,
        style: &Arc<Style>,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Arc<Image> {
        let start = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let frames = self.frames;
        self.render_next_second_ahead(key, style, deadline, start);
        let style = Arc::clone(style);
        self.get_or_render(key, deadline, start, move || {
            render(&style, deadline, start, frames)
        })
        .await
    }

    /// A countdown asked for in this second and the one before is being
    /// watched: its next second is rendered now, in the background, so the
    /// requests of that second find it ready instead of all waiting at the
    /// turn of the second for a hundred renders at once. A countdown asked
    /// for now and then is not rendered ahead (that would only double its
    /// renders).
    fn render_next_second_ahead(
        &self,
        key: &str,
        style: &Arc<Style>,
        deadline: DateTime<Utc>,
        start: DateTime<Utc>,
    ) {
        let second = start.timestamp();
        let Some(next) = start.checked_add_signed(chrono::TimeDelta::seconds(1)) else {
            return;
        };
        if next >= deadline || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let cell = {
            let mut entries = self.lock();
            let Some(this) = entries.keys.get_mut(key) else {
                return;
            };
            let watched = this
                .running
                .iter()
                .any(|slot| slot.second == second - 1 && slot.deadline == deadline);
            let ahead = this
                .running
                .iter()
                .any(|slot| slot.second == second + 1 && slot.deadline == deadline);
            if !watched || ahead {
                return;
            }
            let cell = Cell::default();
            this.running.push(Slot {
                second: second + 1,
                deadline,
                cell: Arc::clone(&cell),
            });
            cell
        };
        self.renders.fetch_add(1, Ordering::Relaxed);
        let style = Arc::clone(style);
        let frames = self.frames;
        tokio::spawn(async move {
            cell.get_or_init(|| async move {
                let rendered =
                    tokio::task::spawn_blocking(move || render(&style, deadline, next, frames));
                match rendered.await {
                    Ok(image) => Arc::new(image),
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    Err(error) => panic!("countdown render cancelled: {error}"),
                }
            })
            .await;
        });
    }

    /// [`ImageCache::image`] with the render given, so tests can make it
    /// fail.
    async fn get_or_render(
        &self,
        key: &str,
        deadline: DateTime<Utc>,
        start: DateTime<Utc>,
        render: impl FnOnce() -> Image + Send + 'static,
    ) -> Arc<Image> {
        let second = start.timestamp();
        let cell = match self.cached_or_cell(key, deadline, second, start) {
            Ok(image) => {
                self.shared.fetch_add(1, Ordering::Relaxed);
                return image;
            }
            Err(cell) => cell,
        };

        let mut started = false;
        let image = cell
            .get_or_init(|| {
                started = true;
                async move {
                    match tokio::task::spawn_blocking(render).await {
                        Ok(image) => Arc::new(image),
                        // The waiting callers are not left hanging: the cell
                        // stays empty and the next of them renders again.
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        // Only a runtime shutting down cancels blocking
                        // tasks; there is no one left to answer.
                        Err(error) => panic!("countdown render cancelled: {error}"),
                    }
                }
            })
            .await;
        let image = Arc::clone(image);
        if started {
            self.renders.fetch_add(1, Ordering::Relaxed);
            if image.expired {
                if let Some(entries) = self.lock().keys.get_mut(key) {
                    entries.expired = Some((deadline, Arc::clone(&image)));
                }
            }
        } else {
            self.shared.fetch_add(1, Ordering::Relaxed);
        }
        image
    }

    /// The finished image of an expired countdown, or the cell the image of
    /// this second is (or will be) rendered into.
    fn cached_or_cell(
        &self,
        key: &str,
        deadline: DateTime<Utc>,
        second: i64,
        start: DateTime<Utc>,
    ) -> Result<Arc<Image>, Cell> {
        let mut entries = self.lock();
        let entries = &mut *entries;
        let this = match entries.keys.get_mut(key) {
            Some(this) => this,
            None => entries.keys.entry(key.to_owned()).or_default(),
        };
        this.last_used = this.last_used.max(second);
        if let Some((expired_at, image)) = &this.expired {
            if *expired_at == deadline && start >= deadline {
                return Ok(Arc::clone(image));
            }
        }
        // A clock stepping back must not keep images from the future.
        this.running
            .retain(|slot| (second - 1..=second + 1).contains(&slot.second));
        if let Some(slot) = this
            .running
            .iter()
            .find(|slot| slot.second == second && slot.deadline == deadline)
        {
            return Err(Arc::clone(&slot.cell));
        }
        let cell = Cell::default();
        this.running.push(Slot {
            second,
            deadline,
            cell: Arc::clone(&cell),
        });
        entries.sweep(second);
        Err(cell)
    }

    /// Renders so far, and requests answered from the cache or by joining a
    /// render in flight.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            renders: self.renders.load(Ordering::Relaxed),
            shared: self.shared.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Entries are only replaced whole under the lock, never left half
        // updated, so a poisoned lock's contents are still sound.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn render(style: &Style, deadline: DateTime<Utc>, start: DateTime<Utc>, frames: u32) -> Image {
    let (gif, frames) = encode(style, deadline, start, frames);
    let digest = Sha256::digest(&gif);
    let etag = format!("\"{}\"", &hex::encode(digest)[..16]);
    Image {
        gif: gif.into(),
        etag,
        start,
        expired: display_at(style.units, deadline, start) == Display::Expired,
        frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILURE: &str = "countdown render failed on purpose";

    fn image(start: DateTime<Utc>) -> Image {
        Image {
            gif: Arc::from(&b"GIF89a"[..]),
            etag: "\"0\"".to_owned(),
            start,
            expired: false,
            frames: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_render_fails_its_callers_instead_of_hanging_them() {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Keep the intended panics quiet, but not anyone else's.
            if info.payload().downcast_ref::<&str>() != Some(&FAILURE) {
                default_hook(info);
            }
        }));
        let cache = Arc::new(ImageCache::new(60));
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let deadline = start + chrono::TimeDelta::hours(1);
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move {
                    cache
                        .get_or_render("acme/launch@1", deadline, start, || {
                            std::panic::panic_any(FAILURE)
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            let error = caller.await.expect_err("the render panicked");
            assert!(error.is_panic());
        }
        // The same second renders again once the render works.
        let fine = cache
            .get_or_render("acme/launch@1", deadline, start, move || image(start))
            .await;
        assert_eq!(fine.start, start);
    }
}
