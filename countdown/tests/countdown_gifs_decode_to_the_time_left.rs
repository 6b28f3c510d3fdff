//! The GIF decodes to the frames `draw` makes for each second's display:
//! one per second, a second apart, never looping, stopping at expiry.

use chrono::{DateTime, TimeDelta, Utc};
use herald_countdown::{display_at, draw, palette, render_gif, Display, Style, Units};

struct Decoded {
    width: u16,
    height: u16,
    palette: Vec<u8>,
    /// Each frame composited over the previous ones, as palette indices.
    canvases: Vec<Vec<u8>>,
    delays: Vec<u16>,
    /// Width × height of each frame's own rectangle.
    areas: Vec<usize>,
}

fn decode(gif: &[u8]) -> Decoded {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(gif).expect("a GIF");
    let (width, height) = (decoder.width(), decoder.height());
    let palette = decoder.global_palette().expect("a global palette").to_vec();
    let mut canvas = vec![0u8; usize::from(width) * usize::from(height)];
    let mut decoded = Decoded {
        width,
        height,
        palette,
        canvases: Vec::new(),
        delays: Vec::new(),
        areas: Vec::new(),
    };
    while let Some(frame) = decoder.read_next_frame().expect("a frame") {
        assert!(frame.palette.is_none(), "frames use the global palette");
        assert_eq!(frame.dispose, gif::DisposalMethod::Keep);
        let (left, top) = (usize::from(frame.left), usize::from(frame.top));
        let fw = usize::from(frame.width);
        for (y, row) in frame.buffer.chunks_exact(fw).enumerate() {
            let at = (top + y) * usize::from(width) + left;
            canvas[at..at + fw].copy_from_slice(row);
        }
        decoded.canvases.push(canvas.clone());
        decoded.delays.push(frame.delay);
        decoded.areas.push(fw * usize::from(frame.height));
    }
    decoded
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn running(days: u64, hours: u64, minutes: u64, seconds: u64) -> Display {
    Display::Running {
        days,
        hours,
        minutes,
        seconds,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_far_deadline_gives_sixty_one_second_frames_that_play_once() {
    let style = Style::default();
    let gif = render_gif(&style, start() + TimeDelta::days(40), start(), 60);
    let decoded = decode(&gif);
    assert_eq!(decoded.canvases.len(), 60);
    assert!(
        decoded.delays.iter().all(|&d| d == 100),
        "{:?}",
        decoded.delays
    );
    assert_eq!(u32::from(decoded.width), style.width);
    assert_eq!(u32::from(decoded.height), style.height);
    assert!(!contains(&gif, b"NETSCAPE2.0"), "no looping extension");
    let expected: Vec<u8> = palette(&style).concat();
    assert_eq!(&decoded.palette[..expected.len()], &expected[..]);
}

#[test]
fn frames_show_the_digits_of_each_second() {
    let style = Style::default();
    let deadline = start()
        + TimeDelta::days(2)
        + TimeDelta::hours(4)
        + TimeDelta::minutes(13)
        + TimeDelta::seconds(59);
    let decoded = decode(&render_gif(&style, deadline, start(), 60));
    assert_eq!(decoded.canvases.len(), 60);
    for (i, canvas) in decoded.canvases.iter().enumerate() {
        let expected = draw(&style, &running(2, 4, 13, 59 - i as u64));
        assert!(
            *canvas == expected.pixels,
            "frame {i} differs from its draw"
        );
    }
    // The comparison can tell digits apart: the neighbouring second draws
    // differently, and frame 0 is not it.
    let fifty_nine = draw(&style, &running(2, 4, 13, 59));
    let fifty_eight = draw(&style, &running(2, 4, 13, 58));
    assert!(fifty_nine.pixels != fifty_eight.pixels);
    assert!(decoded.canvases[0] != fifty_eight.pixels);
    assert!(draw(&style, &running(3, 4, 13, 59)).pixels != fifty_nine.pixels);
}

#[test]
fn a_start_inside_a_second_rounds_the_time_left_up() {
    let style = Style::default();
    let deadline = start() + TimeDelta::minutes(5);
    let at = start() + TimeDelta::milliseconds(300);
    let decoded = decode(&render_gif(&style, deadline, at, 3));
    // 299.7 s left rounds up to 300 s: 00:05:00, then 00:04:59.
    assert!(decoded.canvases[0] == draw(&style, &running(0, 0, 5, 0)).pixels);
    assert!(decoded.canvases[1] == draw(&style, &running(0, 0, 4, 59)).pixels);
}

#[test]
fn later_frames_encode_only_the_changed_rectangle() {
    let style = Style::default();
    // Only the seconds change in these 60 frames (59 down to 00).
    let deadline = start() + TimeDelta::days(2) + TimeDelta::minutes(13) + TimeDelta::seconds(59);
    let decoded = decode(&render_gif(&style, deadline, start(), 60));
    let screen = usize::from(decoded.width) * usize::from(decoded.height);
    assert_eq!(decoded.areas[0], screen);
    for (i, &area) in decoded.areas.iter().enumerate().skip(1) {
        assert!(
            area * 4 < screen,
            "frame {i} covers {area} of {screen} pixels"
        );
    }
}

#[test]
fn a_deadline_k_seconds_away_gives_k_plus_one_frames_ending_expired() {
    let style = Style::default();
    for k in [1u32, 5, 59] {
        let deadline = start() + TimeDelta::seconds(i64::from(k));
        let decoded = decode(&render_gif(&style, deadline, start(), 60));
        assert_eq!(decoded.canvases.len(), k as usize + 1, "k = {k}");
        assert!(decoded.delays.iter().all(|&d| d == 100));
        let last = decoded.canvases.last().unwrap();
        assert!(*last == draw(&style, &Display::Expired).pixels, "k = {k}");
        let before = &decoded.canvases[k as usize - 1];
        assert!(
            *before == draw(&style, &running(0, 0, 0, 1)).pixels,
            "k = {k}"
        );
    }
}

#[test]
fn an_expired_countdown_is_a_single_frame() {
    let style = Style::default();
    for deadline in [start(), start() - TimeDelta::days(3)] {
        let gif = render_gif(&style, deadline, start(), 60);
        let decoded = decode(&gif);
        assert_eq!(decoded.canvases.len(), 1);
        assert_eq!(decoded.delays, [100]);
        assert!(decoded.canvases[0] == draw(&style, &Display::Expired).pixels);
        assert!(!contains(&gif, b"NETSCAPE2.0"));
    }
}

#[test]
fn hidden_seconds_still_give_one_frame_per_second() {
    let style = Style {
        units: Units {
            days: true,
            hours: true,
            minutes: false,
            seconds: false,
        },
        ..Style::default()
    };
    let deadline = start() + TimeDelta::days(1) + TimeDelta::hours(2) + TimeDelta::minutes(5);
    let decoded = decode(&render_gif(&style, deadline, start(), 60));
    assert_eq!(decoded.canvases.len(), 60);
    for (i, canvas) in decoded.canvases.iter().enumerate() {
        let at = start() + TimeDelta::seconds(i as i64);
        let expected = draw(&style, &display_at(style.units, deadline, at));
        assert!(*canvas == expected.pixels, "frame {i}");
    }
    assert!(
        decoded.canvases[0] == decoded.canvases[59],
        "the hours did not change"
    );
}
