//! Where things go in a frame: font sizes chosen to fit the style's box, one
//! column per shown unit, and the painting of a display into palette indices.
//!
//! A layout is computed once per render and reused for every frame, so the
//! frames of a GIF differ only in the digits.

use std::sync::Arc;

use crate::fonts::{self, face, Bitmap, LEVELS};
use crate::style::{Font, Style};
use crate::time::Display;

/// Palette index of the background; then `LEVELS` steps towards the
/// foreground, then `LEVELS` towards the label colour.
pub(crate) const BACKGROUND: u8 = 0;
pub(crate) const FOREGROUND_RAMP: u8 = 1;
pub(crate) const LABEL_RAMP: u8 = 1 + LEVELS;

/// Share of a column a two-digit number may fill; the rest is the gap that
/// holds the separator.
const NUMBER_SHARE: f32 = 0.74;
/// Share of a column a label may fill.
const LABEL_SHARE: f32 = 0.82;
/// Labels smaller than this are unreadable noise, so they are left out.
const MIN_LABEL_PX: f32 = 6.0;

#[derive(Debug)]
struct Placed {
    x: i32,
    y: i32,
    glyph: Arc<Bitmap>,
    ramp: u8,
}

#[derive(Debug)]
struct Column {
    /// Index into days, hours, minutes, seconds.
    unit: usize,
    centre: f32,
}

#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) width: usize,
    pub(crate) height: usize,
    font: Font,
    columns: Vec<Column>,
    /// Scale of a two-digit number.
    number_px: u32,
    /// Vertical middle of the digits' ink, so that longer numbers drawn
    /// smaller stay centred on the same line.
    number_middle: f32,
    /// Width a number may take.
    number_budget: f32,
    /// The base-size digits, fetched once rather than once per frame.
    digits: Vec<Arc<Bitmap>>,
    /// Labels and separators: the same in every running frame.
    fixed: Vec<Placed>,
}

impl Layout {
    pub(crate) fn new(style: &Style) -> Layout {
        let (w, h) = style.size();
        let (width, height) = (f32::from(w), f32::from(h));
        let face = face(style.font);
        let shown = [
            style.units.days,
            style.units.hours,
            style.units.minutes,
            style.units.seconds,
        ];
        let units: Vec<usize> = (0..4).filter(|&u| shown[u]).collect();
        let column_width = width / units.len().max(1) as f32;
        let columns: Vec<Column> = units
            .iter()
            .enumerate()
            .map(|(i, &unit)| Column {
                unit,
                centre: column_width * (i as f32 + 0.5),
            })
            .collect();

        let labels: Vec<&str> = match &style.labels {
            Some(l) => {
                let all = [&l.days, &l.hours, &l.minutes, &l.seconds];
                units.iter().map(|&u| all[u].as_str()).collect()
            }
            None => Vec::new(),
        };
        let widest_label = labels
            .iter()
            .map(|l| face.text_width(l))
            .fold(0.0f32, f32::max);

        let margin = (height * 0.08).max(1.0);
        let available = height - 2.0 * margin;
        let digit_height = face.digit_top + face.digit_bottom;
        let number_budget = column_width * NUMBER_SHARE;
        let fit_width = number_budget / (2.0 * face.digit_advance);
        let has_labels = labels.iter().any(|l| !l.is_empty());

        let (number_px, label_px, gap) = if has_labels {
            let number_px = (available * 0.68 / digit_height).min(fit_width);
            let mut label_px = (available * 0.26).min(number_px * 0.45);
            if widest_label > 0.0 {
                label_px = label_px.min(column_width * LABEL_SHARE / widest_label);
            }
            if label_px >= MIN_LABEL_PX {
                (number_px, label_px.floor(), available * 0.05)
            } else {
                ((available / digit_height).min(fit_width), 0.0, 0.0)
            }
        } else {
            ((available / digit_height).min(fit_width), 0.0, 0.0)
        };
        let number_px = number_px.floor().max(1.0);

        let block = digit_height * number_px + gap + label_px;
        let top = (height - block) / 2.0;
        let number_baseline = (top + face.digit_top * number_px).round();
        let number_middle =
            number_baseline - (face.digit_top - face.digit_bottom) * number_px / 2.0;
        let label_baseline = (number_baseline
            + face.digit_bottom * number_px
            + gap
            + face.ascent * label_px)
            .round() as i32;

        let number_px = number_px as u32;
        let mut fixed = Vec::new();
        if label_px > 0.0 {
            for (column, text) in columns.iter().zip(&labels) {
                place_text(
                    &mut fixed,
                    style.font,
                    text,
                    label_px as u32,
                    column.centre,
                    label_baseline,
                    LABEL_RAMP,
                );
            }
        }
        // Separators sit on the column boundaries, their ink centred on the
        // digits' middle.
        let colon = fonts::glyph(style.font, number_px, ':');
        for i in 1..columns.len() {
            let x = column_width * i as f32 - colon.width as f32 / 2.0;
            let y = number_middle - colon.height as f32 / 2.0;
            fixed.push(Placed {
                x: x.round() as i32 - colon.left,
                y: y.round() as i32 - colon.top,
                glyph: Arc::clone(&colon),
                ramp: FOREGROUND_RAMP,
            });
        }

        Layout {
            width: usize::from(w),
            height: usize::from(h),
            font: style.font,
            columns,
            number_px,
            number_middle,
            number_budget,
            digits: ('0'..='9')
                .map(|d| fonts::glyph(style.font, number_px, d))
                .collect(),
            fixed,
        }
    }

    /// The whole frame.
    pub(crate) fn full(&self) -> Rect {
        Rect {
            x0: 0,
            y0: 0,
            x1: self.width,
            y1: self.height,
        }
    }

    /// Paints `display` into `pixels` (width*height palette indices).
    pub(crate) fn paint(&self, style: &Style, display: &Display, pixels: &mut [u8]) {
        self.paint_within(style, display, pixels, self.full());
    }

    /// Paints the part of `display` inside `clip`, leaving the rest of
    /// `pixels` alone: a new second repaints only the digits that changed.
    pub(crate) fn paint_within(
        &self,
        style: &Style,
        display: &Display,
        pixels: &mut [u8],
        clip: Rect,
    ) {
        for row in pixels
            .chunks_exact_mut(self.width)
            .take(clip.y1)
            .skip(clip.y0)
        {
            row[clip.x0..clip.x1].fill(BACKGROUND);
        }
        match display {
            Display::Running { .. } => {
                for placed in &self.fixed {
                    self.blit(pixels, placed, clip);
                }
                for column in &self.columns {
                    for placed in self.number(display, column) {
                        self.blit(pixels, &placed, clip);
                    }
                }
            }
            Display::Expired => {
                for placed in self.expired(style) {
                    self.blit(pixels, &placed, clip);
                }
            }
        }
    }

    /// Where `after` can differ from `before`: `None` when nothing can.
    pub(crate) fn changed(&self, before: &Display, after: &Display) -> Option<Rect> {
        match (before, after) {
            (Display::Expired, Display::Expired) => None,
            (Display::Running { .. }, Display::Running { .. }) => {
                let mut changed: Option<Rect> = None;
                for column in &self.columns {
                    if value(before, column.unit) == value(after, column.unit) {
                        continue;
                    }
                    let glyphs = self.number(before, column);
                    for placed in glyphs.iter().chain(&self.number(after, column)) {
                        if let Some(area) = self.area(placed) {
                            changed = Some(changed.map_or(area, |c| c.union(area)));
                        }
                    }
                }
                changed
            }
            _ => Some(self.full()),
        }
    }

    /// The digits of the column's value, zero-padded to two.
    fn number(&self, display: &Display, column: &Column) -> Vec<Placed> {
        let text = format!("{:02}", value(display, column.unit));
        let count = text.len() as f32;
        let face = face(self.font);
        // More than two digits (days, or absorbed hours) shrink to fit
        // the column instead of spilling over the separators.
        let px = if text.len() <= 2 {
            self.number_px
        } else {
            ((self.number_budget / (count * face.digit_advance)).floor() as u32)
                .clamp(1, self.number_px)
        };
        let advance = face.digit_advance * px as f32;
        let baseline = (self.number_middle + (face.digit_top - face.digit_bottom) * px as f32 / 2.0)
            .round() as i32;
        let start = column.centre - advance * count / 2.0;
        text.bytes()
            .enumerate()
            .map(|(i, digit)| Placed {
                // Each digit's pen position depends only on its place, never
                // on its neighbours, so changing digits do not shift others.
                x: (start + advance * i as f32).round() as i32,
                y: baseline,
                glyph: if px == self.number_px {
                    Arc::clone(&self.digits[usize::from(digit - b'0')])
                } else {
                    fonts::glyph(self.font, px, char::from(digit))
                },
                ramp: FOREGROUND_RAMP,
            })
            .collect()
    }

    fn expired(&self, style: &Style) -> Vec<Placed> {
        let text = style.expired_text.trim();
        let mut placed = Vec::new();
        if text.is_empty() {
            return placed;
        }
        let face = face(self.font);
        let (width, height) = (self.width as f32, self.height as f32);
        let px = (height * 0.6)
            .min(width * 0.9 / face.text_width(text).max(f32::EPSILON))
            .floor()
            .max(1.0);
        // Centre the line box (ascent to descent = px), not the ink, so
        // texts with and without descenders sit alike.
        let baseline = ((height - px) / 2.0 + face.ascent * px).round() as i32;
        place_text(
            &mut placed,
            self.font,
            text,
            px as u32,
            width / 2.0,
            baseline,
            FOREGROUND_RAMP,
        );
        placed
    }

    /// The pixels a placed glyph covers inside the frame.
    fn area(&self, placed: &Placed) -> Option<Rect> {
        let left = i64::from(placed.x) + i64::from(placed.glyph.left);
        let top = i64::from(placed.y) + i64::from(placed.glyph.top);
        let clamp = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
        let rect = Rect {
            x0: clamp(left, self.width),
            y0: clamp(top, self.height),
            x1: clamp(left + placed.glyph.width as i64, self.width),
            y1: clamp(top + placed.glyph.height as i64, self.height),
        };
        (rect.x0 < rect.x1 && rect.y0 < rect.y1).then_some(rect)
    }

    fn blit(&self, pixels: &mut [u8], placed: &Placed, clip: Rect) {
        let Some(area) = self.area(placed).and_then(|a| a.intersect(clip)) else {
            return;
        };
        let glyph = &placed.glyph;
        let left = (i64::from(placed.x) + i64::from(glyph.left)) as isize;
        let top = (i64::from(placed.y) + i64::from(glyph.top)) as isize;
        let gx0 = (area.x0 as isize - left) as usize;
        let gx1 = (area.x1 as isize - left) as usize;
        let ramp = placed.ramp;
        for y in area.y0..area.y1 {
            let gy = (y as isize - top) as usize;
            let line = &glyph.levels[gy * glyph.width + gx0..gy * glyph.width + gx1];
            let out = &mut pixels[y * self.width + area.x0..y * self.width + area.x1];
            for (cell, &level) in out.iter_mut().zip(line) {
                if level == 0 {
                    continue;
                }
                // Where anti-aliased edges of neighbouring glyphs overlap,
                // the stronger coverage wins instead of the later glyph.
                let current = cell.wrapping_sub(ramp);
                if current >= LEVELS || current < level - 1 {
                    *cell = ramp + level - 1;
                }
            }
        }
    }
}

/// A rectangle of pixels, end-exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub(crate) x0: usize,
    pub(crate) y0: usize,
    pub(crate) x1: usize,
    pub(crate) y1: usize,
}

impl Rect {
    pub(crate) fn union(self, other: Rect) -> Rect {
        Rect {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }

    fn intersect(self, other: Rect) -> Option<Rect> {
        let rect = Rect {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        };
        (rect.x0 < rect.x1 && rect.y0 < rect.y1).then_some(rect)
    }
}

fn value(display: &Display, unit: usize) -> u64 {
    match *display {
        Display::Running {
            days,
            hours,
            minutes,
            seconds,
        } => [days, hours, minutes, seconds][unit],
        Display::Expired => 0,
    }
}

/// Places `text` centred on `centre` with its pen on `baseline`.
fn place_text(
    out: &mut Vec<Placed>,
    font: Font,
    text: &str,
    px: u32,
    centre: f32,
    baseline: i32,
    ramp: u8,
) {
    let face = face(font);
    let start = centre - face.text_width(text) * px as f32 / 2.0;
    for (c, pen) in face.pen_positions(text, px) {
        out.push(Placed {
            x: (start + pen).round() as i32,
            y: baseline,
            glyph: fonts::glyph(font, px, c),
            ramp,
        });
    }
}
