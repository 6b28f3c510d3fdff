//! The embedded DejaVu faces, parsed once, their layout metrics, and the
//! rasterized glyphs shared by every render (so drawing a frame is blitting).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use ab_glyph::{point, Font as _, FontRef, GlyphId, PxScale, ScaleFont as _};

use crate::style::Font;

/// Coverage is quantized to this many steps above background, so every
/// colour a frame can hold fits one small global palette.
pub(crate) const LEVELS: u8 = 15;

/// A parsed face with the metrics layout needs, per pixel of [`PxScale`]
/// (ab_glyph's scale is the ascent-to-descent height in pixels).
#[derive(Debug)]
pub(crate) struct Face {
    pub(crate) font: FontRef<'static>,
    /// DejaVu's digits share one advance; numbers are laid out by it so they
    /// do not jitter as they change.
    pub(crate) digit_advance: f32,
    /// Ink above the baseline of the tallest digit.
    pub(crate) digit_top: f32,
    /// Ink below the baseline of the lowest digit (round digits overshoot).
    pub(crate) digit_bottom: f32,
    pub(crate) ascent: f32,
}

fn parse(bytes: &'static [u8]) -> Face {
    let font = FontRef::try_from_slice(bytes).expect("the embedded font parses");
    let unit = font.as_scaled(PxScale::from(1.0));
    let (mut top, mut bottom) = (0.0f32, 0.0f32);
    for digit in '0'..='9' {
        if let Some(outline) = font.outline(font.glyph_id(digit)) {
            // ab_glyph stores outline bounds with y flipped relative to
            // their names, so take the extremes whichever way round.
            let (a, b) = (outline.bounds.min.y, outline.bounds.max.y);
            top = top.max(a.max(b) * unit.v_scale_factor());
            bottom = bottom.max(-a.min(b) * unit.v_scale_factor());
        }
    }
    Face {
        digit_advance: unit.h_advance(font.glyph_id('0')),
        digit_top: top,
        digit_bottom: bottom,
        ascent: unit.ascent(),
        font,
    }
}

static SANS: LazyLock<Face> = LazyLock::new(|| parse(include_bytes!("../fonts/DejaVuSans.ttf")));
static SANS_BOLD: LazyLock<Face> =
    LazyLock::new(|| parse(include_bytes!("../fonts/DejaVuSans-Bold.ttf")));
static MONO_BOLD: LazyLock<Face> =
    LazyLock::new(|| parse(include_bytes!("../fonts/DejaVuSansMono-Bold.ttf")));

pub(crate) fn face(font: Font) -> &'static Face {
    match font {
        Font::Sans => &SANS,
        Font::SansBold => &SANS_BOLD,
        Font::MonoBold => &MONO_BOLD,
    }
}

impl Face {
    /// The width of `text` per pixel of scale, kerned.
    pub(crate) fn text_width(&self, text: &str) -> f32 {
        let unit = self.font.as_scaled(PxScale::from(1.0));
        let mut width = 0.0;
        let mut prev: Option<GlyphId> = None;
        for c in text.chars() {
            let id = self.font.glyph_id(c);
            if let Some(prev) = prev {
                width += unit.kern(prev, id);
            }
            width += unit.h_advance(id);
            prev = Some(id);
        }
        width
    }

    /// Pen positions (relative to the start, unrounded) of each character
    /// of `text` at `px`.
    pub(crate) fn pen_positions(&self, text: &str, px: u32) -> Vec<(char, f32)> {
        let scaled = self.font.as_scaled(PxScale::from(px as f32));
        let mut pen = 0.0;
        let mut prev: Option<GlyphId> = None;
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            let id = self.font.glyph_id(c);
            if let Some(prev) = prev {
                pen += scaled.kern(prev, id);
            }
            out.push((c, pen));
            pen += scaled.h_advance(id);
            prev = Some(id);
        }
        out
    }
}

/// A glyph rasterized at an integer pen position, coverage quantized to
/// `0..=LEVELS`.
#[derive(Debug)]
pub(crate) struct Bitmap {
    /// Offset of the top-left pixel from the pen position on the baseline.
    pub(crate) left: i32,
    pub(crate) top: i32,
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) levels: Vec<u8>,
}

type GlyphKey = (Font, u32, char);

/// Shared by every render: a countdown's glyphs are rasterized once, not
/// once per frame or per second.
static GLYPHS: LazyLock<Mutex<HashMap<GlyphKey, Arc<Bitmap>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Styles are tenant-chosen (any size, any text), so the cache is bounded by
/// starting over rather than growing without limit.
const MAX_GLYPHS: usize = 16_384;

/// The glyph of `c` in `font` at `px` pixels of scale.
pub(crate) fn glyph(font: Font, px: u32, c: char) -> Arc<Bitmap> {
    let key = (font, px, c);
    if let Some(hit) = lock().get(&key) {
        return Arc::clone(hit);
    }
    // Rasterized outside the lock: concurrent renders do not queue behind
    // it, and a duplicate rasterization is harmless.
    let bitmap = Arc::new(rasterize(face(font), px, c));
    let mut glyphs = lock();
    if glyphs.len() >= MAX_GLYPHS {
        glyphs.clear();
    }
    Arc::clone(glyphs.entry(key).or_insert(bitmap))
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<GlyphKey, Arc<Bitmap>>> {
    // The map holds only finished bitmaps, so a panic elsewhere cannot leave
    // it inconsistent.
    GLYPHS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rasterize(face: &Face, px: u32, c: char) -> Bitmap {
    let glyph = face
        .font
        .glyph_id(c)
        .with_scale_and_position(PxScale::from(px as f32), point(0.0, 0.0));
    let Some(outlined) = face.font.outline_glyph(glyph) else {
        // Spaces and characters the face lacks: nothing to draw.
        return Bitmap {
            left: 0,
            top: 0,
            width: 0,
            height: 0,
            levels: Vec::new(),
        };
    };
    let bounds = outlined.px_bounds();
    let width = bounds.width() as usize;
    let height = bounds.height() as usize;
    let mut levels = vec![0u8; width * height];
    outlined.draw(|x, y, coverage| {
        let level = (coverage.clamp(0.0, 1.0) * f32::from(LEVELS)).round() as u8;
        if let Some(cell) = levels.get_mut(y as usize * width + x as usize) {
            *cell = level;
        }
    });
    Bitmap {
        left: bounds.min.x as i32,
        top: bounds.min.y as i32,
        width,
        height,
        levels,
    }
}
