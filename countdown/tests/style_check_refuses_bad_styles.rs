//! `Style::check` accepts the default and refuses each kind of bad style.

use herald_countdown::{Labels, Style, StyleError, Units};

#[test]
fn the_default_style_and_the_limits_pass() {
    assert_eq!(Style::default().check(), Ok(()));
    for (width, height) in [(60, 20), (1200, 400)] {
        let style = Style {
            width,
            height,
            ..Style::default()
        };
        assert_eq!(style.check(), Ok(()));
    }
    let style = Style {
        labels: Some(Labels {
            days: "d".repeat(32),
            ..Labels::default()
        }),
        expired_text: "é".repeat(64),
        ..Style::default()
    };
    assert_eq!(style.check(), Ok(()), "limits count characters, not bytes");
}

#[test]
fn sizes_outside_the_ranges_are_refused() {
    for (width, height, error) in [
        (59, 100, StyleError::Width(59)),
        (1201, 100, StyleError::Width(1201)),
        (0, 100, StyleError::Width(0)),
        (400, 19, StyleError::Height(19)),
        (400, 401, StyleError::Height(401)),
    ] {
        let style = Style {
            width,
            height,
            ..Style::default()
        };
        assert_eq!(style.check(), Err(error));
    }
}

#[test]
fn a_style_showing_no_unit_is_refused() {
    let style = Style {
        units: Units {
            days: false,
            hours: false,
            minutes: false,
            seconds: false,
        },
        ..Style::default()
    };
    assert_eq!(style.check(), Err(StyleError::NoUnit));
}

#[test]
fn overlong_texts_are_refused() {
    let style = Style {
        labels: Some(Labels {
            minutes: "m".repeat(33),
            ..Labels::default()
        }),
        ..Style::default()
    };
    assert_eq!(
        style.check(),
        Err(StyleError::LabelTooLong {
            unit: "minutes",
            chars: 33
        })
    );
    let style = Style {
        expired_text: "x".repeat(65),
        ..Style::default()
    };
    assert_eq!(style.check(), Err(StyleError::ExpiredTextTooLong(65)));
}
