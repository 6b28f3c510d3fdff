//! The animated GIF of a countdown: one frame per second, each after the
//! first reduced to the rectangle that changed.

use std::borrow::Cow;

use chrono::{DateTime, TimeDelta, Utc};
use gif::{DisposalMethod, Encoder};

use crate::frame::palette;
use crate::layout::{Layout, Rect};
use crate::lzw;
use crate::style::Style;
use crate::time::{display_at, Display};

/// The palette has 31 colours (see `palette`), so pixels take 5 bits.
const MIN_CODE_SIZE: u8 = 5;

/// Centiseconds each frame stays up.
const DELAY: u16 = 100;

/// The animated GIF: frame `i` shows `display_at(units, deadline, start + i s)`
/// for `i` in `0..frames` (at least one), stopping after the first Expired
/// frame (an expired countdown at `start` is a one-frame GIF).
///
/// There is no looping extension: the GIF plays once and stays on its last
/// frame, because a loop would jump back in time. Frames after the first
/// encode only the bounding rectangle of the pixels that changed, kept over
/// the previous frame.
pub fn render_gif(
    style: &Style,
    deadline: DateTime<Utc>,
    start: DateTime<Utc>,
    frames: u32,
) -> Vec<u8> {
    encode(style, deadline, start, frames).0
}

/// [`render_gif`] and the number of frames it holds.
pub(crate) fn encode(
    style: &Style,
    deadline: DateTime<Utc>,
    start: DateTime<Utc>,
    frames: u32,
) -> (Vec<u8>, u32) {
    let layout = Layout::new(style);
    let (width, height) = style.size();
    let colours: Vec<u8> = palette(style).concat();
    let mut encoder = Encoder::new(
        Vec::with_capacity(layout.width * layout.height / 2),
        width,
        height,
        &colours,
    )
    .expect("writing to a Vec cannot fail");

    let mut canvas = vec![0u8; layout.width * layout.height];
    let mut before = Vec::new();
    let mut shown = display_at(style.units, deadline, start);
    layout.paint(style, &shown, &mut canvas);
    let mut scratch = Vec::new();
    write(
        &mut encoder,
        gif::Frame {
            width,
            height,
            buffer: Cow::Borrowed(&canvas),
            ..gif::Frame::default()
        },
        &mut scratch,
    );
    let mut written = 1;
    for i in 1..frames {
        if shown == Display::Expired {
            break;
        }
        // Past the end of chrono's calendar every countdown has expired.
        let at = start
            .checked_add_signed(TimeDelta::seconds(i64::from(i)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let display = display_at(style.units, deadline, at);
        let changed = layout.changed(&shown, &display).and_then(|rect| {
            // Repaint only where the display can differ, then shrink that
            // to the pixels that really did (59 to 58 leaves the 5 alone).
            copy_rect(&canvas, layout.width, rect, &mut before);
            layout.paint_within(style, &display, &mut canvas, rect);
            tighten(&before, &canvas, layout.width, rect)
        });
        write(
            &mut encoder,
            sub_frame(&canvas, layout.width, changed),
            &mut scratch,
        );
        written += 1;
        shown = display;
    }
    let gif = encoder.into_inner().expect("writing to a Vec cannot fail");
    (gif, written)
}

fn write(encoder: &mut Encoder<Vec<u8>>, frame: gif::Frame<'_>, scratch: &mut Vec<u8>) {
    scratch.clear();
    lzw::compress(&frame.buffer, MIN_CODE_SIZE, scratch);
    encoder
        .write_lzw_pre_encoded_frame(&gif::Frame {
            delay: DELAY,
            dispose: DisposalMethod::Keep,
            buffer: Cow::Borrowed(scratch),
            ..frame
        })
        .expect("a frame within the screen, on the global palette, into a Vec");
}

fn copy_rect(pixels: &[u8], width: usize, rect: Rect, out: &mut Vec<u8>) {
    out.clear();
    for row in pixels.chunks_exact(width).take(rect.y1).skip(rect.y0) {
        out.extend_from_slice(&row[rect.x0..rect.x1]);
    }
}

/// The bounding rectangle of the pixels inside `rect` that differ from
/// `before` (a copy of `rect` taken before repainting).
fn tighten(before: &[u8], pixels: &[u8], width: usize, rect: Rect) -> Option<Rect> {
    let span = rect.x1 - rect.x0;
    let mut tight: Option<Rect> = None;
    let rows = before.chunks_exact(span);
    for (y, old) in (rect.y0..rect.y1).zip(rows) {
        let new = &pixels[y * width + rect.x0..y * width + rect.x1];
        if old == new {
            continue;
        }
        let first = old.iter().zip(new).position(|(a, b)| a != b).unwrap_or(0);
        let last = old.iter().zip(new).rposition(|(a, b)| a != b).unwrap_or(0);
        let row = Rect {
            x0: rect.x0 + first,
            y0: y,
            x1: rect.x0 + last + 1,
            y1: y + 1,
        };
        tight = Some(tight.map_or(row, |t| t.union(row)));
    }
    tight
}

/// The frame holding `changed` of `pixels`; a single unchanged pixel when
/// nothing changed (hidden seconds), because the frame must still be there
/// to hold its second.
fn sub_frame(pixels: &[u8], width: usize, changed: Option<Rect>) -> gif::Frame<'_> {
    let Some(rect) = changed else {
        return gif::Frame {
            width: 1,
            height: 1,
            buffer: Cow::Borrowed(&pixels[..1]),
            ..gif::Frame::default()
        };
    };
    let mut buffer = Vec::with_capacity((rect.x1 - rect.x0) * (rect.y1 - rect.y0));
    copy_rect(pixels, width, rect, &mut buffer);
    // Screen sizes fit u16 (Style::size), so every coordinate inside does.
    let to_u16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    gif::Frame {
        left: to_u16(rect.x0),
        top: to_u16(rect.y0),
        width: to_u16(rect.x1 - rect.x0),
        height: to_u16(rect.y1 - rect.y0),
        buffer: Cow::Owned(buffer),
        ..gif::Frame::default()
    }
}
