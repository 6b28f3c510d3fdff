//! A countdown image's style from the settings a command gives: merged onto
//! the defaults (creation) or the current style (restyling), checked, and
//! normalised (lower-case colours, units largest first) so equal styles
//! compare equal and the stored style is the one the schema describes.

use herald_events::timers::{CountdownLabels, CountdownStyle};

use super::commands::StyleSettings;
use crate::aggregate::Refusal;

/// Longest label under a number, in characters.
pub const MAX_LABEL_CHARS: usize = 32;
/// Longest text shown after the deadline, in characters.
pub const MAX_EXPIRED_TEXT_CHARS: usize = 64;

/// `settings` laid over `base`, or why the result is not a style.
pub fn resolve(base: &CountdownStyle, settings: StyleSettings) -> Result<CountdownStyle, Refusal> {
    let mut style = base.clone();
    if let Some(width) = settings.width {
        style.width = width;
    }
    if let Some(height) = settings.height {
        style.height = height;
    }
    for (field, value, target) in [
        ("background", settings.background, &mut style.background),
        ("foreground", settings.foreground, &mut style.foreground),
        (
            "label_colour",
            settings.label_colour,
            &mut style.label_colour,
        ),
    ] {
        if let Some(value) = value {
            *target = colour(field, &value)?;
        }
    }
    if let Some(font) = settings.font {
        style.font = font;
    }
    if let Some(units) = settings.units {
        style.units = units;
    }
    if let Some(labels) = settings.labels {
        style.labels = labels;
    }
    if let Some(text) = settings.expired_text {
        style.expired_text = text;
    }
    check(&mut style)?;
    Ok(style)
}

fn colour(field: &str, value: &str) -> Result<String, Refusal> {
    let hex = value.strip_prefix('#').unwrap_or("");
    if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(format!("#{}", hex.to_ascii_lowercase()))
    } else {
        Err(Refusal::invalid(format!(
            "style.{field} is a colour written #rrggbb, not {:?}",
            value.chars().take(16).collect::<String>()
        )))
    }
}

fn check(style: &mut CountdownStyle) -> Result<(), Refusal> {
    if !(60..=1200).contains(&style.width) {
        return Err(Refusal::invalid("style.width is 60 to 1200 pixels"));
    }
    if !(20..=400).contains(&style.height) {
        return Err(Refusal::invalid("style.height is 20 to 400 pixels"));
    }
    let shown = style.units.len();
    style.units.sort_unstable();
    style.units.dedup();
    if shown == 0 || style.units.len() != shown {
        return Err(Refusal::invalid(
            "style.units names one to four different units of days, hours, minutes, seconds",
        ));
    }
    if let Some(CountdownLabels {
        days,
        hours,
        minutes,
        seconds,
    }) = &style.labels
    {
        if [days, hours, minutes, seconds]
            .iter()
            .any(|l| l.chars().count() > MAX_LABEL_CHARS || l.chars().any(char::is_control))
        {
            return Err(Refusal::invalid(format!(
                "style.labels are at most {MAX_LABEL_CHARS} characters each, without control characters"
            )));
        }
    }
    if style.expired_text.chars().count() > MAX_EXPIRED_TEXT_CHARS
        || style.expired_text.chars().any(char::is_control)
    {
        return Err(Refusal::invalid(format!(
            "style.expired_text is at most {MAX_EXPIRED_TEXT_CHARS} characters, without control characters"
        )));
    }
    Ok(())
}
