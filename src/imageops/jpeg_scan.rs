//! Walking a sequential JPEG's Huffman-coded scans, without the IDCT, to check that they hold every
//! block the frame needs. libjpeg reports a scan that stops early ("premature end of data segment",
//! a hole that keeps the end marker) and the image stages fail such a photo on it; zune-jpeg, the
//! pure-Rust path, reads the end marker as zero bits and says nothing, so this walk says it instead.

use super::jpeg::{next_marker, Marker, MarkerEnd};

/// What the walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanCheck {
    /// Every scan holds all its blocks.
    Whole,
    /// Progressive or arithmetic-coded: not walked here.
    NotWalked,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("scan data stops after {decoded} of {needed} blocks (premature end of data segment)")]
    Premature { decoded: u64, needed: u64 },
    #[error("{bytes} extraneous bytes after the scan's last block (its codes are out of step)")]
    Extraneous { bytes: u64 },
    #[error("bad Huffman code in the scan data (block {block})")]
    BadCode { block: u64 },
    #[error("{0}")]
    Malformed(&'static str),
}

/// One Huffman table in canonical form: per code length, the largest code and where its
/// symbols start.
#[derive(Clone)]
struct Huffman {
    max_code: [i32; 17],
    first_code: [i32; 17],
    first_index: [usize; 17],
    symbols: Vec<u8>,
    /// For the next [`FAST_BITS`] bits: code length << 8 | symbol, 0 where the code is longer.
    fast: Vec<u16>,
}

/// Codes up to this long (nearly all of them) are looked up at once instead of bit by bit.
const FAST_BITS: u32 = 9;

impl Huffman {
    fn from_counts(counts: &[u8], symbols: &[u8]) -> Self {
        let mut table = Huffman {
            max_code: [-1; 17],
            first_code: [0; 17],
            first_index: [0; 17],
            symbols: symbols.to_vec(),
            fast: vec![0; 1 << FAST_BITS],
        };
        let (mut code, mut index) = (0i32, 0usize);
        for length in 1..=16 {
            let n = counts[length - 1] as usize;
            table.first_code[length] = code;
            table.first_index[length] = index;
            if n > 0 {
                table.max_code[length] = code + n as i32 - 1;
            }
            for k in 0..n {
                let (c, Some(&symbol)) = (code as usize + k, symbols.get(index + k)) else { break };
                if length as u32 <= FAST_BITS && c < 1 << length {
                    let shift = FAST_BITS - length as u32;
                    for low in 0..1usize << shift {
                        table.fast[(c << shift) | low] = ((length as u16) << 8) | symbol as u16;
                    }
                }
            }
            code = (code + n as i32) << 1;
            index += n;
        }
        table
    }
}

#[derive(Clone, Copy)]
struct Component {
    id: u8,
    h: u32,
    v: u32,
}

/// Entropy-coded bits with byte stuffing removed; stops at the first marker.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    count: u32,
    /// Offset of the marker that ended the data, once met.
    marker: Option<usize>,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.count <= 56 && self.marker.is_none() {
            let Some(&byte) = self.data.get(self.pos) else {
                self.marker = Some(self.data.len());
                break;
            };
            if byte == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => self.pos += 2,
                    Some(0xFF) => {
                        self.pos += 1; // a fill byte before a marker
                        continue;
                    }
                    _ => {
                        self.marker = Some(self.pos);
                        break;
                    }
                }
            } else {
                self.pos += 1;
            }
            self.acc = (self.acc << 8) | byte as u64;
            self.count += 8;
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.count == 0 {
            self.fill();
            if self.count == 0 {
                return None;
            }
        }
        self.count -= 1;
        Some(((self.acc >> self.count) & 1) as u32)
    }

    fn skip(&mut self, n: u32) -> Option<()> {
        if self.count < n {
            self.fill();
            if self.count < n {
                return None;
            }
        }
        self.count -= n;
        Some(())
    }

    /// The next `n` bits without taking them, when that many are there before the marker.
    fn peek(&mut self, n: u32) -> Option<usize> {
        if self.count < n {
            self.fill();
            if self.count < n {
                return None;
            }
        }
        Some(((self.acc >> (self.count - n)) & ((1 << n) - 1)) as usize)
    }

    /// Drops the padding bits and reads on to the next marker; returns how many whole bytes lay
    /// between the last block and it (libjpeg's "extraneous bytes before marker": a well-formed
    /// scan has none, and a flipped bit that desynchronises the codes usually leaves some).
    fn skip_to_marker(&mut self) -> u64 {
        let mut extraneous = u64::from(self.count / 8);
        self.count = 0;
        while self.marker.is_none() {
            self.fill();
            extraneous += u64::from(self.count / 8);
            self.count = 0;
        }
        self.acc = 0;
        extraneous
    }

    /// Steps over the restart marker that must come next; Err(extraneous bytes) or Ok(false)
    /// where another marker comes instead.
    fn restart(&mut self) -> Result<bool, u64> {
        let extraneous = self.skip_to_marker();
        match self.marker {
            Some(at) if at + 1 < self.data.len() && (0xD0..=0xD7).contains(&self.data[at + 1]) => {
                if extraneous > 0 {
                    return Err(extraneous);
                }
                self.pos = at + 2;
                self.marker = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

enum Decoded {
    Symbol(u8),
    OutOfData,
    BadCode,
}

fn decode(bits: &mut Bits, table: &Huffman) -> Decoded {
    if let Some(next) = bits.peek(FAST_BITS) {
        let entry = table.fast[next];
        if entry != 0 {
            bits.count -= (entry >> 8) as u32;
            return Decoded::Symbol(entry as u8);
        }
    }
    let mut code = 0i32;
    for length in 1..=16 {
        let Some(bit) = bits.bit() else { return Decoded::OutOfData };
        code = (code << 1) | bit as i32;
        if code <= table.max_code[length] {
            let at = table.first_index[length] + (code - table.first_code[length]) as usize;
            return table.symbols.get(at).map_or(Decoded::BadCode, |&s| Decoded::Symbol(s));
        }
    }
    Decoded::BadCode
}

/// The markers' state as the walk goes: tables, restart interval, the frame.
#[derive(Default)]
struct Tables {
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: u32,
    frame: Option<(u32, u32, Vec<Component>)>,
}

/// Checks every scan of a sequential Huffman JPEG for a premature end or a bad code.
pub fn check_scans(bytes: &[u8]) -> Result<ScanCheck, ScanError> {
    if bytes.len() < 4 || bytes[..2] != [0xFF, 0xD8] {
        return Err(ScanError::Malformed("no start-of-image marker"));
    }
    let mut tables = Tables::default();
    let mut pos = 2;
    loop {
        let (_, marker, next) = next_marker(bytes, pos).map_err(|end| {
            ScanError::Malformed(match end {
                MarkerEnd::NoMore => "markers end before the end-of-image marker",
                MarkerEnd::HeaderCut => "a segment header is cut",
                MarkerEnd::RunsPast => "a segment runs past the end of the file",
            })
        })?;
        let Marker::Segment(marker, body) = marker else {
            return Ok(ScanCheck::Whole);
        };
        match marker {
            0xC0 | 0xC1 => tables.frame = Some(read_frame(body)?),
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(ScanCheck::NotWalked),
            0xC4 => read_huffman_tables(body, &mut tables)?,
            0xDD if body.len() >= 2 => tables.restart_interval = u16::from_be_bytes([body[0], body[1]]) as u32,
            0xDA => {
                pos = walk_scan(bytes, next, body, &tables)?;
                continue;
            }
            _ => {}
        }
        pos = next;
    }
}

fn read_frame(body: &[u8]) -> Result<(u32, u32, Vec<Component>), ScanError> {
    let bad = ScanError::Malformed("frame header too short");
    if body.len() < 6 {
        return Err(bad);
    }
    let height = u16::from_be_bytes([body[1], body[2]]) as u32;
    let width = u16::from_be_bytes([body[3], body[4]]) as u32;
    let n = body[5] as usize;
    if body.len() < 6 + 3 * n {
        return Err(bad);
    }
    let components: Vec<Component> = body[6..6 + 3 * n]
        .chunks_exact(3)
        .map(|c| Component { id: c[0], h: (c[1] >> 4) as u32, v: (c[1] & 15) as u32 })
        .collect();
    if width == 0 || height == 0 || components.iter().any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v)) {
        return Err(ScanError::Malformed("frame of no size or with bad sampling factors"));
    }
    Ok((width, height, components))
}

fn read_huffman_tables(mut body: &[u8], tables: &mut Tables) -> Result<(), ScanError> {
    while !body.is_empty() {
        if body.len() < 17 {
            return Err(ScanError::Malformed("Huffman table cut"));
        }
        let (class, id) = (body[0] >> 4, (body[0] & 15) as usize);
        let counts = &body[1..17];
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        if body.len() < 17 + n || id > 3 || class > 1 {
            return Err(ScanError::Malformed("Huffman table cut or misnumbered"));
        }
        let table = Huffman::from_counts(counts, &body[17..17 + n]);
        if class == 0 {
            tables.dc[id] = Some(table);
        } else {
            tables.ac[id] = Some(table);
        }
        body = &body[17 + n..];
    }
    Ok(())
}

/// Walks one scan whose entropy-coded data starts at `data_start`; returns where its data ended
/// (the next marker).
fn walk_scan(bytes: &[u8], data_start: usize, header: &[u8], tables: &Tables) -> Result<usize, ScanError> {
    let (width, height, components) = tables.frame.as_ref().ok_or(ScanError::Malformed("scan before frame"))?;
    let n = *header.first().ok_or(ScanError::Malformed("empty scan header"))? as usize;
    if header.len() < 1 + 2 * n || n == 0 {
        return Err(ScanError::Malformed("scan header cut"));
    }
    let h_max = components.iter().map(|c| c.h).max().unwrap_or(1);
    let v_max = components.iter().map(|c| c.v).max().unwrap_or(1);
    // Per scan component: its sampling and its tables.
    let mut in_scan = Vec::with_capacity(n);
    for pair in header[1..1 + 2 * n].chunks_exact(2) {
        let c = components.iter().find(|c| c.id == pair[0]).ok_or(ScanError::Malformed("scan names no component"))?;
        let dc = tables.dc[(pair[1] >> 4) as usize & 3].as_ref();
        let ac = tables.ac[(pair[1] & 15) as usize & 3].as_ref();
        let (Some(dc), Some(ac)) = (dc, ac) else { return Err(ScanError::Malformed("scan uses a missing table")) };
        in_scan.push((*c, dc, ac));
    }
    // Blocks per MCU (scan order) and the MCU count: one block an MCU for a single component.
    let (mcus, blocks_per_mcu): (u64, Vec<u32>) = if n == 1 {
        let c = in_scan[0].0;
        let w = (*width * c.h).div_ceil(h_max).div_ceil(8) as u64;
        let h = (*height * c.v).div_ceil(v_max).div_ceil(8) as u64;
        (w * h, vec![1])
    } else {
        let w = width.div_ceil(8 * h_max) as u64;
        let h = height.div_ceil(8 * v_max) as u64;
        (w * h, in_scan.iter().map(|(c, _, _)| c.h * c.v).collect())
    };
    let needed = mcus * blocks_per_mcu.iter().map(|&b| b as u64).sum::<u64>();
    let mut bits = Bits { data: bytes, pos: data_start, acc: 0, count: 0, marker: None };
    let mut decoded = 0u64;
    let premature = |decoded| ScanError::Premature { decoded, needed };
    for mcu in 0..mcus {
        if tables.restart_interval > 0 && mcu > 0 && mcu % tables.restart_interval as u64 == 0 {
            match bits.restart() {
                Ok(true) => {}
                Ok(false) => return Err(premature(decoded)),
                Err(bytes) => return Err(ScanError::Extraneous { bytes }),
            }
        }
        for (k, &blocks) in blocks_per_mcu.iter().enumerate() {
            let (_, dc, ac) = in_scan[k];
            for _ in 0..blocks {
                match walk_block(&mut bits, dc, ac) {
                    Decoded::Symbol(_) => decoded += 1,
                    Decoded::OutOfData => return Err(premature(decoded)),
                    Decoded::BadCode => return Err(ScanError::BadCode { block: decoded }),
                }
            }
        }
    }
    let extraneous = bits.skip_to_marker();
    if extraneous > 0 {
        return Err(ScanError::Extraneous { bytes: extraneous });
    }
    Ok(bits.marker.unwrap_or(bytes.len()))
}

/// One 8x8 block's coefficients read past: the DC difference, then the AC run-lengths.
fn walk_block(bits: &mut Bits, dc: &Huffman, ac: &Huffman) -> Decoded {
    let size = match decode(bits, dc) {
        Decoded::Symbol(s) => s,
        other => return other,
    };
    if size > 16 || bits.skip(size as u32).is_none() {
        return if size > 16 { Decoded::BadCode } else { Decoded::OutOfData };
    }
    let mut k = 1;
    while k < 64 {
        let rs = match decode(bits, ac) {
            Decoded::Symbol(s) => s,
            other => return other,
        };
        let (run, size) = (rs >> 4, rs & 15);
        if size == 0 {
            if run != 15 {
                break; // end of block
            }
            k += 16;
            continue;
        }
        k += run as usize + 1;
        if bits.skip(size as u32).is_none() {
            return Decoded::OutOfData;
        }
    }
    Decoded::Symbol(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new("/usr/share/doc/opencv-doc/examples/data");
        std::fs::read(dir.join(name)).expect("opencv-doc's photos (make setup)")
    }

    fn encoded(
        configure: impl Fn(&mut jpeg_encoder::Encoder<&mut Vec<u8>>),
        color: jpeg_encoder::ColorType,
    ) -> Vec<u8> {
        let (w, h) = (83u16, 61u16);
        let channels = match color {
            jpeg_encoder::ColorType::Luma => 1,
            _ => 3,
        };
        let pixels: Vec<u8> = (0..w as usize * h as usize * channels).map(|i| ((i * 37) % 251) as u8).collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
        configure(&mut encoder);
        encoder.encode(&pixels, w, h, color).unwrap();
        out
    }

    /// libjpeg's own verdict on `bytes` (the image stages' checked decode).
    fn libjpeg_warns(bytes: &[u8]) -> Option<String> {
        let info = super::super::jpeg::read_jpeg_info(bytes).ok()?;
        match super::super::libjpeg::decode(bytes, 1, (info.width, info.height)) {
            super::super::libjpeg::Outcome::Whole { .. } => None,
            super::super::libjpeg::Outcome::Damaged { first, .. } => Some(first),
            super::super::libjpeg::Outcome::Failed(why) => Some(why),
        }
    }

    #[test]
    fn whole_jpegs_of_every_layout_hold_all_their_blocks() {
        use jpeg_encoder::{ColorType, SamplingFactor};
        let mut files = vec![samples("baboon.jpg"), samples("fruits.jpg"), samples("messi5.jpg")];
        files.push(encoded(|_| {}, ColorType::Rgb));
        files.push(encoded(|_| {}, ColorType::Luma));
        files.push(encoded(|e| e.set_sampling_factor(SamplingFactor::R_4_2_0), ColorType::Rgb));
        files.push(encoded(|e| e.set_sampling_factor(SamplingFactor::R_4_2_2), ColorType::Rgb));
        files.push(encoded(|e| e.set_restart_interval(3), ColorType::Rgb));
        files.push(encoded(|e| e.set_restart_interval(1), ColorType::Luma));
        for (k, bytes) in files.iter().enumerate() {
            assert_eq!(check_scans(bytes), Ok(ScanCheck::Whole), "JPEG {k}");
        }
        let progressive = encoded(|e| e.set_progressive(true), ColorType::Rgb);
        assert_eq!(check_scans(&progressive), Ok(ScanCheck::NotWalked));
    }

    #[test]
    fn a_hole_that_keeps_the_end_marker_is_found_where_libjpeg_finds_it() {
        use jpeg_encoder::ColorType;
        let with_restarts = encoded(|e| e.set_restart_interval(4), ColorType::Rgb);
        let mut checked = 0;
        for whole in [samples("baboon.jpg"), samples("fruits.jpg"), samples("messi5.jpg"), with_restarts] {
            for (from, to) in [(0.2, 1.0), (0.4, 0.6), (0.5, 0.9), (0.7, 0.98)] {
                let (a, b) = ((whole.len() as f64 * from) as usize, (whole.len() as f64 * to) as usize);
                let mut hole = whole[..a].to_vec();
                hole.extend_from_slice(&whole[b.min(whole.len() - 200)..]);
                let ours = check_scans(&hole);
                let libjpeg = libjpeg_warns(&hole);
                // Where libjpeg calls the data short, so do we (a hole may also read as a bad code).
                if libjpeg.is_some() {
                    assert!(ours.is_err(), "hole {from}-{to}: libjpeg {libjpeg:?}, ours {ours:?}");
                    checked += 1;
                }
                assert!(ours.is_err() || libjpeg.is_none(), "hole {from}-{to}");
            }
        }
        assert!(checked >= 12, "only {checked} holes were short by libjpeg");
    }

    #[test]
    fn a_flipped_bit_is_refused_mostly_where_libjpeg_warns_and_never_where_it_does_not() {
        let whole = samples("fruits.jpg");
        let scan = super::super::jpeg::read_jpeg_info(&whole).unwrap().first_scan + 20;
        let (mut both, mut libjpeg_only, mut ours_only) = (0, 0, 0);
        for k in 0..60usize {
            let mut flipped = whole.clone();
            let at = scan + (k * 7919) % (whole.len() - scan - 400);
            flipped[at] ^= 1 << (k % 8);
            match (check_scans(&flipped).is_err(), libjpeg_warns(&flipped).is_some()) {
                (true, true) => both += 1,
                (false, true) => libjpeg_only += 1,
                (true, false) => ours_only += 1,
                (false, false) => {}
            }
        }
        assert_eq!(ours_only, 0, "refused where libjpeg decodes without a word");
        // Measured: libjpeg warned on 12 of the 60, and we refused the same 12.
        assert!(both >= 5 && both >= 3 * libjpeg_only, "libjpeg warned on {both} + {libjpeg_only}, we refused {both}");
    }
}
