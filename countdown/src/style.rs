//! A countdown's look: its size, colours, font, shown units and texts, and
//! the limits a style must keep to be drawn as intended.

use std::ops::RangeInclusive;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub [u8; 3]);

/// The embedded faces a countdown can be drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Font {
    /// DejaVu Sans.
    Sans,
    /// DejaVu Sans Bold.
    SansBold,
    /// DejaVu Sans Mono Bold.
    MonoBold,
}

/// Which units a countdown shows, from days down to seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Units {
    pub days: bool,
    pub hours: bool,
    pub minutes: bool,
    pub seconds: bool,
}

impl Units {
    /// Every unit shown.
    pub const ALL: Units = Units {
        days: true,
        hours: true,
        minutes: true,
        seconds: true,
    };

    pub(crate) fn any(self) -> bool {
        self.days || self.hours || self.minutes || self.seconds
    }
}

impl Default for Units {
    fn default() -> Self {
        Units::ALL
    }
}

/// The words under the numbers, one per unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    pub days: String,
    pub hours: String,
    pub minutes: String,
    pub seconds: String,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            days: "DAYS".to_owned(),
            hours: "HOURS".to_owned(),
            minutes: "MINUTES".to_owned(),
            seconds: "SECONDS".to_owned(),
        }
    }
}

/// How a countdown looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Style {
    /// Pixels, within [`Style::WIDTH`].
    pub width: u32,
    /// Pixels, within [`Style::HEIGHT`].
    pub height: u32,
    pub background: Rgb,
    /// The numbers, the separators between them and the expired text.
    pub foreground: Rgb,
    /// The unit labels under the numbers.
    pub label_colour: Rgb,
    pub font: Font,
    /// At least one shown.
    pub units: Units,
    /// `None`: no labels under the numbers.
    pub labels: Option<Labels>,
    /// Shown centred once the deadline has passed; empty: a plain
    /// background frame.
    pub expired_text: String,
}

impl Default for Style {
    /// The recommended look: a 400×100 banner, white bold numbers on a dark
    /// slate background with muted grey labels.
    fn default() -> Self {
        Style {
            width: 400,
            height: 100,
            background: Rgb([0x1f, 0x29, 0x37]),
            foreground: Rgb([0xff, 0xff, 0xff]),
            label_colour: Rgb([0x9c, 0xa3, 0xaf]),
            font: Font::SansBold,
            units: Units::ALL,
            labels: Some(Labels::default()),
            expired_text: "Expired".to_owned(),
        }
    }
}

/// Why a style was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StyleError {
    #[error("width {0} px is outside 60..=1200")]
    Width(u32),
    #[error("height {0} px is outside 20..=400")]
    Height(u32),
    #[error("no unit is shown")]
    NoUnit,
    #[error("the {unit} label has {chars} characters; at most {max}", max = Style::MAX_LABEL_CHARS)]
    LabelTooLong { unit: &'static str, chars: usize },
    #[error("the expired text has {0} characters; at most {max}", max = Style::MAX_EXPIRED_CHARS)]
    ExpiredTextTooLong(usize),
}

impl Style {
    pub const WIDTH: RangeInclusive<u32> = 60..=1200;
    pub const HEIGHT: RangeInclusive<u32> = 20..=400;
    pub const MAX_LABEL_CHARS: usize = 32;
    pub const MAX_EXPIRED_CHARS: usize = 64;

    /// Refuses a style that would not draw as intended.
    pub fn check(&self) -> Result<(), StyleError> {
        if !Self::WIDTH.contains(&self.width) {
            return Err(StyleError::Width(self.width));
        }
        if !Self::HEIGHT.contains(&self.height) {
            return Err(StyleError::Height(self.height));
        }
        if !self.units.any() {
            return Err(StyleError::NoUnit);
        }
        if let Some(labels) = &self.labels {
            for (unit, text) in [
                ("days", &labels.days),
                ("hours", &labels.hours),
                ("minutes", &labels.minutes),
                ("seconds", &labels.seconds),
            ] {
                let chars = text.chars().count();
                if chars > Self::MAX_LABEL_CHARS {
                    return Err(StyleError::LabelTooLong { unit, chars });
                }
            }
        }
        let chars = self.expired_text.chars().count();
        if chars > Self::MAX_EXPIRED_CHARS {
            return Err(StyleError::ExpiredTextTooLong(chars));
        }
        Ok(())
    }

    /// The pixel size actually drawn: an unchecked style is clamped rather
    /// than refused here, so drawing never fails or overflows GIF's u16 sizes.
    pub(crate) fn size(&self) -> (u16, u16) {
        let clamp = |v: u32, r: RangeInclusive<u32>| {
            u16::try_from(v.clamp(*r.start(), *r.end())).unwrap_or(u16::MAX)
        };
        (
            clamp(self.width, Self::WIDTH),
            clamp(self.height, Self::HEIGHT),
        )
    }
}
