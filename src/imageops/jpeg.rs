//! Reading a JPEG's marker segments without decoding it: the frame size (for the pixel limit and
//! the choice of DCT scale), the EXIF orientation, and whether the file reaches its end marker
//! (libjpeg pads a truncated file with grey and calls it a warning; we call it an error).

/// What the markers before the first scan tell.
#[derive(Debug, Clone, PartialEq)]
pub struct JpegInfo {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    /// EXIF orientation (1..=8), 1 when absent.
    pub orientation: u16,
    /// Offset of the first start-of-scan marker.
    pub first_scan: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JpegError {
    #[error("not a JPEG (no SOI marker)")]
    NoSoi,
    #[error("JPEG headers end early (truncated file)")]
    HeaderTruncated,
    #[error("JPEG has no frame header before its scan")]
    NoFrame,
    #[error("JPEG is truncated (no end-of-image marker after the scan data)")]
    Truncated,
}

/// One marker of a JPEG's header walk ([`next_marker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker<'a> {
    /// The end of the image (EOI).
    End,
    /// A marker segment and its body (for SOS, the scan header; its data follows the body).
    Segment(u8, &'a [u8]),
}

/// Why a header walk stopped before a marker ([`next_marker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkerEnd {
    /// The bytes end before another marker.
    NoMore,
    /// A segment's length bytes are cut off.
    HeaderCut,
    /// A segment is shorter than its length field, or runs past the end.
    RunsPast,
}

/// The next marker at or after `pos`, as libjpeg reads headers: fill bytes (0xFF 0xFF), stray
/// bytes between segments and markers without a body but EOI (RSTn, TEM) skipped. Returns where it starts, the marker, and where the walk goes on
/// (after its body; for SOS, where the scan data starts). Both header readers walk with it: the
/// frame and EXIF reader below and the scan check in [`super::jpeg_scan`].
pub(crate) fn next_marker(bytes: &[u8], mut pos: usize) -> Result<(usize, Marker<'_>, usize), MarkerEnd> {
    loop {
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 2 > bytes.len() {
            return Err(MarkerEnd::NoMore);
        }
        if bytes[pos] != 0xFF {
            pos += 1; // stray bytes between segments: libjpeg skips them with a warning
            continue;
        }
        match bytes[pos + 1] {
            0xD9 => return Ok((pos, Marker::End, pos + 2)),
            0xD0..=0xD7 | 0x01 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let marker = bytes[pos + 1];
        if pos + 4 > bytes.len() {
            return Err(MarkerEnd::HeaderCut);
        }
        let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        let end = pos + 2 + len;
        if len < 2 || end > bytes.len() {
            return Err(MarkerEnd::RunsPast);
        }
        return Ok((pos, Marker::Segment(marker, &bytes[pos + 4..end]), end));
    }
}

fn is_start_of_frame(marker: u8) -> bool {
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Parses the markers up to the first scan and checks that an end-of-image marker follows it.
///
/// Entropy-coded data never holds 0xFF 0xD9 (0xFF bytes in it are stuffed or restart markers),
/// so an EOI anywhere after the first scan means the data arrived whole; trailing bytes after it,
/// which some cameras add, are fine.
pub fn read_jpeg_info(bytes: &[u8]) -> Result<JpegInfo, JpegError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(JpegError::NoSoi);
    }
    let mut pos = 2;
    let mut frame = None;
    let mut orientation = 1;
    loop {
        // An end of image before any scan holds no picture: as cut short as a missing header.
        let (at, marker, next) = next_marker(bytes, pos).map_err(|_| JpegError::HeaderTruncated)?;
        let Marker::Segment(marker, body) = marker else {
            return Err(JpegError::HeaderTruncated);
        };
        if marker == 0xDA {
            let (width, height, components) = frame.ok_or(JpegError::NoFrame)?;
            let scan_data = &bytes[next..];
            let has_eoi = scan_data.windows(2).rev().any(|w| w == [0xFF, 0xD9]);
            if !has_eoi {
                return Err(JpegError::Truncated);
            }
            return Ok(JpegInfo { width, height, components, orientation, first_scan: at });
        }
        if is_start_of_frame(marker) {
            if body.len() < 6 {
                return Err(JpegError::HeaderTruncated);
            }
            let height = u16::from_be_bytes([body[1], body[2]]) as u32;
            let width = u16::from_be_bytes([body[3], body[4]]) as u32;
            frame = Some((width, height, body[5]));
        } else if marker == 0xE1 && body.starts_with(b"Exif\0\0") && orientation == 1 {
            orientation = exif_orientation(&body[6..]).unwrap_or(1);
        }
        pos = next;
    }
}

/// The orientation tag of a TIFF-structured EXIF block, if present and valid.
pub fn exif_orientation(tiff: &[u8]) -> Option<u16> {
    let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let value = field.value.get_uint(0)? as u16;
    (1..=8).contains(&value).then_some(value)
}

/// Picks the DCT scale denominator (1, 2, 4 or 8) for decoding: the largest reduction that keeps
/// the decoded shorter side at least `min_decoded_side` pixels. libjpeg rounds scaled sizes up.
pub fn dct_scale_for(width: u32, height: u32, min_decoded_side: u32) -> u32 {
    let shorter = width.min(height);
    [8, 4, 2].into_iter().find(|&d| shorter.div_ceil(d) >= min_decoded_side).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(width: u16, height: u16) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width as u32, height as u32, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
        out
    }

    #[test]
    fn the_marker_walk_skips_fill_and_stray_bytes_and_stops_where_headers_are_cut() {
        // SOI, fill bytes, a 4-byte APP0 segment, a stray byte, a restart marker, EOI.
        let bytes = [0xFF, 0xD8, 0xFF, 0xFF, 0xFF, 0xE0, 0x00, 0x04, 0xAB, 0xCD, 0x42, 0xFF, 0xD3, 0xFF, 0xD9];
        assert_eq!(next_marker(&bytes, 2), Ok((4, Marker::Segment(0xE0, &[0xAB, 0xCD]), 10)));
        assert_eq!(next_marker(&bytes, 10), Ok((13, Marker::End, 15)), "the stray byte and RST3 skipped");
        assert_eq!(next_marker(&bytes, 15), Err(MarkerEnd::NoMore));
        assert_eq!(next_marker(&bytes[..7], 2), Err(MarkerEnd::HeaderCut));
        assert_eq!(next_marker(&bytes[..9], 2), Err(MarkerEnd::RunsPast));
        // An end of image before any scan: no picture, a cut header to the frame reader.
        assert_eq!(read_jpeg_info(&[0xFF, 0xD8, 0xFF, 0xD9, 0, 0, 0, 0]), Err(JpegError::HeaderTruncated));
    }

    #[test]
    fn reads_frame_size_and_detects_truncation() {
        let bytes = encode(40, 24);
        let info = read_jpeg_info(&bytes).unwrap();
        assert_eq!((info.width, info.height, info.components, info.orientation), (40, 24, 3, 1));
        assert_eq!(read_jpeg_info(&bytes[..bytes.len() - 10]), Err(JpegError::Truncated));
        assert_eq!(read_jpeg_info(&bytes[..20]), Err(JpegError::HeaderTruncated));
        assert_eq!(read_jpeg_info(b"GIF89a...."), Err(JpegError::NoSoi));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"camera trailer");
        assert!(read_jpeg_info(&trailing).is_ok());
    }

    #[test]
    fn dct_scale_keeps_twice_the_target() {
        assert_eq!(dct_scale_for(500, 375, 64), 4); // 375/4 = 94 >= 64, 375/8 = 47 < 64
        assert_eq!(dct_scale_for(2400, 1800, 64), 8);
        assert_eq!(dct_scale_for(100, 100, 64), 1);
        assert_eq!(dct_scale_for(128, 300, 64), 2);
    }
}
