//! GIF's LZW compression, specialised for our small palette: with at most
//! 32 colours a code's children fit a dense array, so compressing a pixel is
//! one array lookup instead of the general encoder's tree search (which cost
//! two thirds of a render).

use std::cell::RefCell;

/// GIF codes are at most 12 bits.
const MAX_CODES: usize = 4096;

/// The compressor's tables, reused across frames and renders on a thread
/// so a render allocates nothing per frame.
#[derive(Debug)]
struct Tables {
    /// `children[code << bits | pixel]`: the code for `code` followed by
    /// `pixel`, or 0 for none (0 is never a code that can be added).
    children: Vec<u16>,
    /// Entries set since the last clear, to reset only those.
    touched: Vec<usize>,
}

thread_local! {
    static TABLES: RefCell<Tables> = const {
        RefCell::new(Tables { children: Vec::new(), touched: Vec::new() })
    };
}

struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    len: u32,
}

impl Bits<'_> {
    fn push(&mut self, code: u16, width: u32) {
        self.acc |= u64::from(code) << self.len;
        self.len += width;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn finish(self) {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// `pixels` compressed for an image block: the minimum code size byte, then
/// the LZW codes packed least significant bit first (GIF89a appendix F), as
/// `gif::Encoder::write_lzw_pre_encoded_frame` takes them.
///
/// `bits` is the minimum code size: every pixel must be below `1 << bits`.
pub(crate) fn compress(pixels: &[u8], bits: u8, out: &mut Vec<u8>) {
    debug_assert!((2..=8).contains(&bits));
    TABLES.with(|tables| {
        let mut tables = tables.borrow_mut();
        compress_with(&mut tables, pixels, bits, out);
    });
}

fn compress_with(tables: &mut Tables, pixels: &[u8], bits: u8, out: &mut Vec<u8>) {
    let shift = u32::from(bits);
    let alphabet = 1usize << shift;
    if tables.children.len() < MAX_CODES << shift {
        tables.children = vec![0; MAX_CODES << shift];
        tables.touched.clear();
    }
    for &slot in &tables.touched {
        tables.children[slot] = 0;
    }
    tables.touched.clear();

    let clear = alphabet as u16;
    let end = clear + 1;
    let first_free = clear + 2;
    out.push(bits);
    let mut sink = Bits {
        out,
        acc: 0,
        len: 0,
    };
    let mut width = shift + 1;
    let mut next = first_free;
    sink.push(clear, width);

    let Some((&first, rest)) = pixels.split_first() else {
        sink.push(end, width);
        sink.finish();
        return;
    };
    let mut prefix = u16::from(first) & (clear - 1);
    for &pixel in rest {
        let pixel = usize::from(pixel) & (alphabet - 1);
        let slot = (usize::from(prefix) << shift) | pixel;
        let child = tables.children[slot];
        if child != 0 {
            prefix = child;
            continue;
        }
        sink.push(prefix, width);
        tables.children[slot] = next;
        tables.touched.push(slot);
        next += 1;
        // The decoder adds its entry one code later than we do, so it
        // widens its codes once `next` has passed the current width.
        if u32::from(next) > 1 << width && width < 12 {
            width += 1;
        }
        if usize::from(next) == MAX_CODES {
            sink.push(clear, width);
            for &slot in &tables.touched {
                tables.children[slot] = 0;
            }
            tables.touched.clear();
            width = shift + 1;
            next = first_free;
        }
        prefix = pixel as u16;
    }
    sink.push(prefix, width);
    sink.push(end, width);
    sink.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(data: &[u8], width: u16, height: u16) -> Vec<u8> {
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::Indexed);
        // Wrap the compressed block in a minimal GIF to decode it with an
        // independent decoder.
        let mut file = Vec::new();
        file.extend_from_slice(b"GIF89a");
        file.extend_from_slice(&width.to_le_bytes());
        file.extend_from_slice(&height.to_le_bytes());
        file.extend_from_slice(&[0xf4, 0, 0]); // 32-colour global table
        file.extend_from_slice(&[0; 96]);
        file.push(0x2c);
        file.extend_from_slice(&[0, 0, 0, 0]);
        file.extend_from_slice(&width.to_le_bytes());
        file.extend_from_slice(&height.to_le_bytes());
        file.push(0);
        file.push(data[0]);
        for chunk in data[1..].chunks(255) {
            file.push(chunk.len() as u8);
            file.extend_from_slice(chunk);
        }
        file.extend_from_slice(&[0, 0x3b]);
        let mut decoder = options.read_info(&file[..]).expect("a GIF");
        let frame = decoder
            .read_next_frame()
            .expect("a frame")
            .expect("one frame");
        frame.buffer.to_vec()
    }

    #[test]
    fn compressed_pixels_decode_to_themselves_across_table_resets() {
        // A mix of long runs and noise fills the 4096-code table several
        // times over, exercising every width change and reset.
        let mut seed = 0x2545_f491_u32;
        let pixels: Vec<u8> = (0..300 * 200)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                if (i / 700) % 2 == 0 {
                    (seed % 31) as u8
                } else {
                    (i / 97 % 3) as u8
                }
            })
            .collect();
        let mut out = Vec::new();
        compress(&pixels, 5, &mut out);
        assert!(decode(&out, 300, 200) == pixels);
        for size in [1usize, 2, 3, 31, 32, 33, 1000] {
            let pixels: Vec<u8> = (0..size).map(|i| (i * 7 % 31) as u8).collect();
            out.clear();
            compress(&pixels, 5, &mut out);
            assert!(decode(&out, size as u16, 1) == pixels, "size {size}");
        }
    }
}
