//! Herald's countdown images: the time left to a deadline drawn as an
//! animated GIF, one frame per second, in a countdown's style with an
//! embedded DejaVu font (see `fonts/LICENSE`), and a cache that renders each
//! countdown once per second however many requests ask for it.

mod cache;
mod encode;
mod fonts;
mod frame;
mod layout;
mod lzw;
mod style;
mod time;

pub use cache::{CacheStats, Image, ImageCache};
pub use encode::render_gif;
pub use frame::{draw, palette, Frame};
pub use style::{Font, Labels, Rgb, Style, StyleError, Units};
pub use time::{display_at, Display};
