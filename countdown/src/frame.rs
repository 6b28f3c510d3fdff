//! One frame as palette indices, and the single palette every frame of a
//! style indexes into.

use crate::fonts::LEVELS;
use crate::layout::Layout;
use crate::style::{Rgb, Style};
use crate::time::Display;

/// A frame's pixels as indices into [`palette`] of its style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// `width * height` palette indices, row-major.
    pub pixels: Vec<u8>,
}

impl Frame {
    /// The pixels as colours of `style`'s palette.
    pub fn rgb(&self, style: &Style) -> Vec<[u8; 3]> {
        let palette = palette(style);
        self.pixels
            .iter()
            .map(|&i| palette[usize::from(i)])
            .collect()
    }
}

/// The palette [`draw`] indexes into: the background, then 15 anti-aliasing
/// steps from it to the foreground, then 15 to the label colour (31 colours,
/// so no frame needs a palette of its own).
pub fn palette(style: &Style) -> Vec<[u8; 3]> {
    let ramp = |to: Rgb| {
        (1..=LEVELS).map(move |level| {
            let mix = |from: u8, to: u8| {
                let (from, to, level) = (u32::from(from), u32::from(to), u32::from(level));
                let levels = u32::from(LEVELS);
                ((from * (levels - level) + to * level + levels / 2) / levels) as u8
            };
            let (Rgb(from), Rgb(to)) = (style.background, to);
            [
                mix(from[0], to[0]),
                mix(from[1], to[1]),
                mix(from[2], to[2]),
            ]
        })
    };
    std::iter::once(style.background.0)
        .chain(ramp(style.foreground))
        .chain(ramp(style.label_colour))
        .collect()
}

/// The frame showing `display` in `style`.
///
/// A style that fails [`Style::check`] is still drawn: sizes are clamped to
/// the allowed ranges and overlong texts shrink.
pub fn draw(style: &Style, display: &Display) -> Frame {
    let layout = Layout::new(style);
    let mut pixels = vec![0; layout.width * layout.height];
    layout.paint(style, display, &mut pixels);
    Frame {
        width: layout.width as u32,
        height: layout.height as u32,
        pixels,
    }
}
