//! Decoding photos as they come (EXIF orientation, grayscale, CMYK, 16-bit, alpha) into 8-bit RGB,
//! and the paper's geometry: scale the shorter side to the target, cut the central square.
//!
//! JPEGs, nearly all of ImageNet and CelebA, go through libjpeg-turbo (called directly, the library
//! OpenCV's imdecode uses, with the same pixels) so that a large photo can be decoded at 1/2, 1/4
//! or 1/8 scale in the DCT: that is most of the speed of the crop stage. Other formats go through
//! the `image` crate.
//!
//! A decoder that reports corrupt or missing data (libjpeg's warnings, which come with a grey fill)
//! makes the decode fail, unless the caller keeps damaged photos ([`DecodeOptions::keep_damaged`]),
//! and then [`Decoded::damage`] says what was reported. No decoder message reaches stderr.

pub mod jpeg;
pub mod jpeg_scan;
pub mod libjpeg;
pub mod resize;

pub use resize::min_resize_center_crop;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
#[derive(Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Self {
        assert_eq!(pixels.len(), (width * height * 3) as usize);
        Self { width, height, pixels }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file")]
    Empty,
    #[error("not an image (unrecognised content)")]
    NotAnImage,
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("{width}x{height} pixels exceeds the limit of {limit} (decompression bomb?)")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("corrupt {format}: {message}")]
    Corrupt { format: &'static str, message: String },
}

/// Bytes per pixel a decode may hold at its peak: a 16-bit RGB PNG decodes to 6 B, is widened to
/// 16-bit RGBA (8 B) beside it, then narrowed to RGB (3 B); a JPEG needs 3 B and its turned copy 3.
pub const DECODE_BYTES_PER_PIXEL: f64 = 14.0;

/// How to decode.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Refuse images with more pixels than this, before decoding them.
    pub max_pixels: u64,
    /// Where set, JPEGs may be decoded at a reduced DCT scale as long as their shorter side stays
    /// at least this long.
    pub min_decoded_side: Option<u32>,
    /// Keep a photo whose decoder reported corrupt or missing data (libjpeg fills it with grey)
    /// rather than failing it; [`Decoded::damage`] then says what was reported.
    pub keep_damaged: bool,
}

impl DecodeOptions {
    /// Full size, damaged photos refused.
    pub fn checked(max_pixels: u64) -> Self {
        Self { max_pixels, min_decoded_side: None, keep_damaged: false }
    }
}

/// A decoded image and what was learnt on the way.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: RgbImage,
    pub format: &'static str,
    /// The full-resolution size, after EXIF orientation.
    pub source_width: u32,
    pub source_height: u32,
    /// 1, 2, 4 or 8: the DCT scale denominator used (1 for formats other than JPEG).
    pub dct_scale: u32,
    pub orientation: u16,
    /// What the decoder reported of corrupt or missing data, for a photo kept with
    /// [`DecodeOptions::keep_damaged`]; None for a whole one.
    pub damage: Option<String>,
}

fn format_name(format: image::ImageFormat) -> &'static str {
    use image::ImageFormat::*;
    match format {
        Jpeg => "JPEG",
        Png => "PNG",
        WebP => "WebP",
        Gif => "GIF",
        Bmp => "BMP",
        Tiff => "TIFF",
        _ => "image",
    }
}

/// Decodes encoded image bytes into 8-bit RGB with its EXIF orientation applied (once), in pure
/// Rust (JPEGs through zune-jpeg in strict mode, the `image` crate's decoder). For binaries that must
/// not need OpenCV's libraries (train and cifar-eval run on GPU machines without them). zune-jpeg
/// reads an end marker met inside the scan as zero bits, so a sequential JPEG's scans are first
/// walked ([`jpeg_scan::check_scans`]) to find a hole that keeps its end marker, as libjpeg would;
/// a progressive JPEG's are not.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<Decoded, DecodeError> {
    match sniff(bytes)? {
        image::ImageFormat::Jpeg => {
            let info = checked_jpeg_info(bytes, max_pixels)?;
            // zune-jpeg cannot see a scan that stops early (below); the walk can.
            jpeg_scan::check_scans(bytes)
                .map_err(|e| DecodeError::Corrupt { format: "JPEG", message: e.to_string() })?;
            let image = apply_orientation(decode_jpeg_strictly(bytes)?, info.orientation);
            Ok(Decoded {
                source_width: image.width,
                source_height: image.height,
                image,
                format: "JPEG",
                dct_scale: 1,
                orientation: info.orientation,
                damage: None,
            })
        }
        format => decode_with_image_crate(bytes, format, max_pixels),
    }
}

/// A JPEG through zune-jpeg (the `image` crate's own JPEG decoder, the same pixels) in strict mode:
/// scan data that stops early or meets a marker where none belongs fails the decode, where the
/// lenient default fills the rest grey without a word (the twin of libjpeg's warnings below).
fn decode_jpeg_strictly(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| DecodeError::Corrupt { format: "JPEG", message: e.to_string() };
    let pixels = decoder.decode().map_err(corrupt)?;
    let (width, height) = decoder.dimensions().expect("headers decoded with the pixels");
    if pixels.len() != width * height * 3 {
        let message = format!("{} values for {width}x{height} RGB pixels", pixels.len());
        return Err(DecodeError::Corrupt { format: "JPEG", message });
    }
    Ok(RgbImage::new(width as u32, height as u32, pixels))
}

/// Like [`decode_rgb`], but JPEGs go through libjpeg-turbo (OpenCV's imdecode), at a reduced DCT
/// scale where `options.min_decoded_side` allows: the fast path of the image stages.
pub fn decode_rgb_with_libjpeg(bytes: &[u8], options: &DecodeOptions) -> Result<Decoded, DecodeError> {
    match sniff(bytes)? {
        image::ImageFormat::Jpeg => decode_jpeg(bytes, options),
        format => decode_with_image_crate(bytes, format, options.max_pixels),
    }
}

/// The format of `bytes`, among those the pipeline decodes.
fn sniff(bytes: &[u8]) -> Result<image::ImageFormat, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::NotAnImage)?;
    use image::ImageFormat::*;
    match format {
        Jpeg | Png | WebP | Gif | Bmp | Tiff => Ok(format),
        _ => Err(DecodeError::NotAnImage),
    }
}

/// The JPEG's markers, checked: whole (not truncated), a real frame, within the pixel limit.
fn checked_jpeg_info(bytes: &[u8], max_pixels: u64) -> Result<jpeg::JpegInfo, DecodeError> {
    let corrupt = |message: String| DecodeError::Corrupt { format: "JPEG", message };
    let info = jpeg::read_jpeg_info(bytes).map_err(|e| match e {
        jpeg::JpegError::Truncated | jpeg::JpegError::HeaderTruncated => DecodeError::Truncated(e.to_string()),
        jpeg::JpegError::NoSoi => DecodeError::NotAnImage,
        jpeg::JpegError::NoFrame => corrupt(e.to_string()),
    })?;
    if info.width == 0 || info.height == 0 {
        return Err(corrupt(format!("frame of {}x{} pixels", info.width, info.height)));
    }
    check_pixels(info.width, info.height, max_pixels)?;
    Ok(info)
}

fn check_pixels(width: u32, height: u32, limit: u64) -> Result<(), DecodeError> {
    if width as u64 * height as u64 > limit {
        return Err(DecodeError::TooManyPixels { width, height, limit });
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], options: &DecodeOptions) -> Result<Decoded, DecodeError> {
    let corrupt = |message: String| DecodeError::Corrupt { format: "JPEG", message };
    let info = checked_jpeg_info(bytes, options.max_pixels)?;
    let dct_scale = options.min_decoded_side.map_or(1, |side| jpeg::dct_scale_for(info.width, info.height, side));
    // We apply the orientation ourselves, from the EXIF we parsed, so that every format behaves the
    // same.
    let (width, height, pixels, damage) = match libjpeg::decode(bytes, dct_scale, (info.width, info.height)) {
        libjpeg::Outcome::Whole { width, height, pixels } => (width, height, pixels, None),
        libjpeg::Outcome::Damaged { width, height, pixels, warnings, first } => {
            let what = damage_text(&first, warnings);
            if !options.keep_damaged {
                return Err(corrupt(what));
            }
            (width, height, pixels, Some(what))
        }
        libjpeg::Outcome::Failed(why) => return Err(corrupt(format!("libjpeg: {why}"))),
    };
    let image = apply_orientation(RgbImage::new(width, height, pixels), info.orientation);
    let (source_width, source_height) =
        if info.orientation >= 5 { (info.height, info.width) } else { (info.width, info.height) };
    Ok(Decoded { image, format: "JPEG", source_width, source_height, dct_scale, orientation: info.orientation, damage })
}

/// libjpeg's first warning, and how many followed.
fn damage_text(first: &str, warnings: u64) -> String {
    match warnings {
        0 | 1 => format!("libjpeg: {first}"),
        n => format!("libjpeg: {first} (and {} more warnings)", n - 1),
    }
}

fn decode_with_image_crate(bytes: &[u8], format: image::ImageFormat, max_pixels: u64) -> Result<Decoded, DecodeError> {
    use image::ImageDecoder;
    let name = format_name(format);
    let classify = |e: image::ImageError| {
        let message = e.to_string();
        let eof = matches!(&e, image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
            || message.contains("end of file")
            || message.contains("EOF")
            || message.contains("unexpected end");
        if eof {
            DecodeError::Truncated(format!("{name} data ends early"))
        } else {
            DecodeError::Corrupt { format: name, message }
        }
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    // The pixel check below comes first; these limits only stop absurd allocations in decoders.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut dynamic = image::DynamicImage::from_decoder(decoder).map_err(classify)?;
    dynamic.apply_orientation(orientation);
    let image = to_rgb_over_white(dynamic);
    Ok(Decoded {
        source_width: image.width,
        source_height: image.height,
        image,
        format: name,
        dct_scale: 1,
        orientation: orientation_code(orientation),
        damage: None,
    })
}

fn orientation_code(o: image::metadata::Orientation) -> u16 {
    use image::metadata::Orientation::*;
    match o {
        NoTransforms => 1,
        FlipHorizontal => 2,
        Rotate180 => 3,
        FlipVertical => 4,
        Rotate90FlipH => 5,
        Rotate90 => 6,
        Rotate270FlipH => 7,
        Rotate270 => 8,
    }
}

/// 8-bit RGB; transparent pixels are composited over white, since their colour channels are often
/// arbitrary (black, or left-over paint) and a training image has no transparency.
fn to_rgb_over_white(image: image::DynamicImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    if !image.color().has_alpha() {
        return RgbImage::new(width, height, image.into_rgb8().into_raw());
    }
    let rgba = image.into_rgba16();
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for p in rgba.pixels() {
        let a = p[3] as u32;
        for c in 0..3 {
            let over_white = (p[c] as u32 * a + 65535 * (65535 - a)) / 65535;
            pixels.push(((over_white + 128) / 257) as u8);
        }
    }
    RgbImage::new(width, height, pixels)
}

/// Turns a stored image upright according to its EXIF orientation code (1..=8).
pub fn apply_orientation(image: RgbImage, orientation: u16) -> RgbImage {
    if orientation <= 1 || orientation > 8 {
        return image;
    }
    let (w, h) = (image.width, image.height);
    let (out_w, out_h) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut pixels = vec![0u8; image.pixels.len()];
    for oy in 0..out_h {
        for ox in 0..out_w {
            // Where the displayed pixel (ox, oy) sits in the stored image.
            let (sx, sy) = match orientation {
                2 => (w - 1 - ox, oy),
                3 => (w - 1 - ox, h - 1 - oy),
                4 => (ox, h - 1 - oy),
                5 => (oy, ox),
                6 => (oy, h - 1 - ox),
                7 => (w - 1 - oy, h - 1 - ox),
                _ => (w - 1 - oy, ox),
            };
            let s = ((sy * w + sx) * 3) as usize;
            let d = ((oy * out_w + ox) * 3) as usize;
            pixels[d..d + 3].copy_from_slice(&image.pixels[s..s + 3]);
        }
    }
    RgbImage::new(out_w, out_h, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged() -> RgbImage {
        // 3x2: red marks the stored top-left corner.
        let mut px = vec![0u8; 18];
        px[0] = 255;
        RgbImage::new(3, 2, px)
    }

    #[test]
    fn pure_rust_and_libjpeg_decoders_agree() {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&img).unwrap();
        let options = DecodeOptions::checked(1 << 20);
        let (a, b) = (decode_rgb(&jpeg, 1 << 20).unwrap(), decode_rgb_with_libjpeg(&jpeg, &options).unwrap());
        assert_eq!((a.image.width, a.image.height), (64, 48));
        let max_diff = a.image.pixels.iter().zip(&b.image.pixels).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(max_diff <= 8, "IDCTs differ by {max_diff}");
        let cut = &jpeg[..jpeg.len() - 20];
        assert!(matches!(decode_rgb(cut, 1 << 20), Err(DecodeError::Truncated(_))));
        assert!(matches!(decode_rgb(&jpeg, 100), Err(DecodeError::TooManyPixels { .. })));
        assert_eq!(decode_rgb(b"", 100).unwrap_err(), DecodeError::Empty);
    }

    /// OpenCV's imdecode of `bytes` as RGB: what the stages decoded with before the direct call.
    fn opencv_rgb(bytes: &[u8], scale: u32) -> (u32, u32, Vec<u8>) {
        use opencv::{core::Mat, imgcodecs, prelude::*};
        let reduce = match scale {
            2 => imgcodecs::IMREAD_REDUCED_COLOR_2,
            4 => imgcodecs::IMREAD_REDUCED_COLOR_4,
            8 => imgcodecs::IMREAD_REDUCED_COLOR_8,
            _ => imgcodecs::IMREAD_COLOR,
        };
        let buffer = Mat::from_slice(bytes).unwrap();
        let bgr = imgcodecs::imdecode(&buffer, reduce | imgcodecs::IMREAD_IGNORE_ORIENTATION).unwrap();
        let rgb: Vec<u8> = bgr.data_bytes().unwrap().chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
        (bgr.cols() as u32, bgr.rows() as u32, rgb)
    }

    /// A grey and a CMYK JPEG, which take other colour conversions than a photo's YCbCr.
    fn grey_and_cmyk_jpegs() -> [Vec<u8>; 2] {
        let gray = image::GrayImage::from_fn(61, 47, |x, y| image::Luma([(x * 4 + y) as u8]));
        let mut gray_jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut gray_jpeg, 90).encode_image(&gray).unwrap();
        let cmyk: Vec<u8> =
            (0..40 * 30).flat_map(|i| [(i % 256) as u8, (i / 5 % 256) as u8, 90, (i % 70) as u8]).collect();
        let mut cmyk_jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut cmyk_jpeg, 90).encode(&cmyk, 40, 30, jpeg_encoder::ColorType::Cmyk).unwrap();
        [gray_jpeg, cmyk_jpeg]
    }

    #[test]
    fn the_direct_libjpeg_call_gives_opencvs_pixels() {
        let samples = std::path::Path::new("/usr/share/doc/opencv-doc/examples/data");
        let mut jpegs: Vec<Vec<u8>> = ["baboon.jpg", "fruits.jpg", "HappyFish.jpg", "messi5.jpg"]
            .iter()
            .map(|n| std::fs::read(samples.join(n)).expect("opencv-doc's photos (make setup)"))
            .collect();
        jpegs.extend(grey_and_cmyk_jpegs());
        for (k, bytes) in jpegs.iter().enumerate() {
            let info = jpeg::read_jpeg_info(bytes).unwrap();
            for scale in [1, 2, 4, 8] {
                let libjpeg::Outcome::Whole { width, height, pixels } =
                    libjpeg::decode(bytes, scale, (info.width, info.height))
                else {
                    panic!("JPEG {k} at 1/{scale}: not whole");
                };
                assert_eq!((width, height, pixels), opencv_rgb(bytes, scale), "JPEG {k} at 1/{scale}");
            }
        }
    }

    #[test]
    fn a_jpeg_with_a_hole_is_refused_or_kept_marked() {
        let samples = std::path::Path::new("/usr/share/doc/opencv-doc/examples/data");
        let whole = std::fs::read(samples.join("baboon.jpg")).expect("opencv-doc's photos (make setup)");
        // The F1: a fifth of the file, then its last 200 bytes (the end marker kept).
        let mut hole = whole[..whole.len() / 5].to_vec();
        hole.extend_from_slice(&whole[whole.len() - 200..]);
        let mut options = DecodeOptions::checked(1 << 28);
        let err = decode_rgb_with_libjpeg(&hole, &options).unwrap_err().to_string();
        assert!(err.contains("Corrupt JPEG data"), "{err}");
        options.keep_damaged = true;
        let kept = decode_rgb_with_libjpeg(&hole, &options).unwrap();
        assert!(kept.damage.as_deref().is_some_and(|d| d.contains("Corrupt JPEG data")), "{:?}", kept.damage);
        assert_eq!(decode_rgb_with_libjpeg(&whole, &options).unwrap().damage, None);
    }

    #[test]
    fn the_pure_rust_decoder_refuses_a_spliced_or_holed_jpeg_and_keeps_the_image_crates_pixels() {
        let samples = std::path::Path::new("/usr/share/doc/opencv-doc/examples/data");
        let whole = std::fs::read(samples.join("baboon.jpg")).expect("opencv-doc's photos (make setup)");
        // A download restarted into the same file: half of one JPEG, then another whole one. The
        // lenient decoder reads the second's markers as scan data and says nothing.
        let other = std::fs::read(samples.join("fruits.jpg")).unwrap();
        let mut spliced = whole[..whole.len() / 2].to_vec();
        spliced.extend_from_slice(&other);
        assert!(image::load_from_memory(&spliced).is_ok());
        let err = decode_rgb(&spliced, 1 << 28).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { format: "JPEG", .. }), "{err}");
        // The F1 on this path: a fifth of the file, then its last 200 bytes (end marker kept).
        let mut hole = whole[..whole.len() / 5].to_vec();
        hole.extend_from_slice(&whole[whole.len() - 200..]);
        assert!(image::load_from_memory(&hole).is_ok());
        let err = decode_rgb(&hole, 1 << 28).unwrap_err().to_string();
        assert!(err.contains("premature end of data segment") || err.contains("bad Huffman code"), "{err}");
        // Whole JPEGs (colour, grey, CMYK) decode to exactly the image crate's pixels.
        let mut jpegs: Vec<Vec<u8>> = ["baboon.jpg", "fruits.jpg", "messi5.jpg"]
            .iter()
            .map(|n| std::fs::read(samples.join(n)).unwrap())
            .collect();
        jpegs.extend(grey_and_cmyk_jpegs());
        for (k, bytes) in jpegs.iter().enumerate() {
            let ours = decode_rgb(bytes, 1 << 28).unwrap().image;
            let theirs = image::load_from_memory(bytes).unwrap().to_rgb8();
            assert_eq!((ours.width, ours.height), theirs.dimensions(), "JPEG {k}");
            assert!(ours.pixels == theirs.into_raw(), "JPEG {k}: pixels differ from the image crate's");
        }
    }

    #[test]
    fn both_decoders_turn_an_exif_rotated_jpeg_once() {
        let img = image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([(x * 6) as u8, (y * 10) as u8, 50]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&img).unwrap();
        // An EXIF APP1 right after SOI: little-endian TIFF, one IFD entry, orientation 6 (turn 90).
        let mut tiff = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
        for v in [1u16, 0x0112, 3] {
            tiff.extend_from_slice(&v.to_le_bytes());
        }
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        let mut rotated = jpeg[..2].to_vec();
        rotated.extend_from_slice(&[0xFF, 0xE1]);
        rotated.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        rotated.extend_from_slice(b"Exif\0\0");
        rotated.extend_from_slice(&tiff);
        rotated.extend_from_slice(&jpeg[2..]);
        let ours = decode_rgb(&rotated, 1 << 20).unwrap();
        let libjpeg = decode_rgb_with_libjpeg(&rotated, &DecodeOptions::checked(1 << 20)).unwrap();
        assert_eq!(ours.orientation, 6);
        assert_eq!((ours.image.width, ours.image.height), (24, 40));
        assert_eq!((libjpeg.image.width, libjpeg.image.height), (24, 40));
        let max_diff = ours.image.pixels.iter().zip(&libjpeg.image.pixels).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(max_diff <= 8, "the two decoders turned it differently (max difference {max_diff})");
    }

    #[test]
    fn orientation_moves_the_top_left_corner_where_exif_says() {
        // Where the stored top-left pixel is displayed, for each orientation.
        let expected =
            [(1, (0, 0)), (2, (2, 0)), (3, (2, 1)), (4, (0, 1)), (5, (0, 0)), (6, (1, 0)), (7, (1, 2)), (8, (0, 2))];
        for (code, (x, y)) in expected {
            let out = apply_orientation(tagged(), code);
            assert_eq!(out.pixel(x, y), [255, 0, 0], "orientation {code}");
            let reds = out.pixels.chunks(3).filter(|p| p[0] == 255).count();
            assert_eq!(reds, 1);
        }
    }
}
