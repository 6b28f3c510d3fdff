//! Frames at every allowed size and font keep their text inside the image,
//! draw labels only when asked, and stay on the style's palette.

use herald_countdown::{draw, palette, Display, Font, Style, Units};

fn styles() -> Vec<Style> {
    let mut styles = Vec::new();
    for (width, height) in [
        (60, 20),
        (400, 100),
        (1200, 400),
        (60, 400),
        (1200, 20),
        (250, 250),
    ] {
        for font in [Font::Sans, Font::SansBold, Font::MonoBold] {
            for labels in [true, false] {
                let base = Style::default();
                styles.push(Style {
                    width,
                    height,
                    font,
                    labels: if labels { base.labels.clone() } else { None },
                    ..base
                });
            }
        }
    }
    styles
}

fn edges_are_background(pixels: &[u8], width: usize, height: usize) -> bool {
    let rows = pixels.chunks_exact(width);
    let first = &pixels[..width];
    let last = &pixels[(height - 1) * width..];
    first.iter().chain(last).all(|&p| p == 0)
        && rows.clone().all(|row| row[0] == 0 && row[width - 1] == 0)
}

#[test]
fn text_stays_inside_the_image_with_long_numbers() {
    let displays = [
        Display::Running {
            days: 88,
            hours: 88,
            minutes: 88,
            seconds: 88,
        },
        Display::Running {
            days: 12_345,
            hours: 23,
            minutes: 59,
            seconds: 59,
        },
        Display::Expired,
    ];
    for style in styles() {
        for display in &displays {
            let frame = draw(&style, display);
            assert_eq!((frame.width, frame.height), (style.width, style.height));
            assert_eq!(frame.pixels.len(), (style.width * style.height) as usize);
            let (w, h) = (frame.width as usize, frame.height as usize);
            assert!(
                edges_are_background(&frame.pixels, w, h),
                "{}x{} {:?} {display:?} touches the edge",
                style.width,
                style.height,
                style.font
            );
            assert!(frame.pixels.iter().any(|&p| p != 0), "something is drawn");
        }
    }
}

#[test]
fn labels_are_drawn_in_the_label_colour_only_when_asked() {
    let display = Display::Running {
        days: 1,
        hours: 2,
        minutes: 3,
        seconds: 4,
    };
    let with = Style::default();
    let without = Style {
        labels: None,
        ..Style::default()
    };
    let palette = palette(&with);
    assert_eq!(palette.len(), 31);
    assert_eq!(palette[0], with.background.0);
    assert_eq!(palette[15], with.foreground.0);
    assert_eq!(palette[30], with.label_colour.0);
    let labelled = |style: &Style| draw(style, &display).pixels.iter().any(|&p| p >= 16);
    assert!(labelled(&with));
    assert!(!labelled(&without));
    let rgb = draw(&with, &display).rgb(&with);
    assert!(rgb.contains(&with.label_colour.0) && rgb.contains(&with.foreground.0));
}

#[test]
fn an_empty_expired_text_is_a_plain_background() {
    let style = Style {
        expired_text: String::new(),
        units: Units::ALL,
        ..Style::default()
    };
    assert!(draw(&style, &Display::Expired)
        .pixels
        .iter()
        .all(|&p| p == 0));
}
