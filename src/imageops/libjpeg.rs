//! libjpeg-turbo, called directly (src/imageops/libjpeg_checked.c), so that its warnings about
//! corrupt data reach us instead of stderr: libjpeg decodes a JPEG with a hole or a cut tail to
//! grey and only warns, and OpenCV's imdecode, which we used before, neither tells nor lets one ask.

use std::os::raw::{c_char, c_int, c_uchar, c_uint, c_ulong};

extern "C" {
    fn dcgan_jpeg_decode(
        data: *const c_uchar,
        size: c_ulong,
        scale_denom: c_int,
        out: *mut c_uchar,
        out_capacity: c_ulong,
        width: *mut c_uint,
        height: *mut c_uint,
        warnings: *mut c_ulong,
        message: *mut c_char,
        message_len: c_ulong,
    ) -> c_int;
}

/// What libjpeg made of a JPEG.
#[derive(Debug)]
pub enum Outcome {
    /// Decoded without a word: RGB pixels.
    Whole { width: u32, height: u32, pixels: Vec<u8> },
    /// Decoded, but libjpeg warned `warnings` times (the first warning's text): the pixels hold its
    /// grey fill where data was missing or corrupt.
    Damaged { width: u32, height: u32, pixels: Vec<u8>, warnings: u64, first: String },
    /// Not decoded.
    Failed(String),
}

/// Decodes `bytes` at 1/`scale_denom` (1, 2, 4 or 8). `frame` is the size the headers give (see
/// [`super::jpeg::read_jpeg_info`]); a decode to anything larger is refused.
pub fn decode(bytes: &[u8], scale_denom: u32, frame: (u32, u32)) -> Outcome {
    let scaled = |n: u32| n.div_ceil(scale_denom.max(1)) as u64;
    let capacity = scaled(frame.0) * scaled(frame.1) * 3;
    let mut pixels = vec![0u8; capacity as usize];
    let (mut width, mut height, mut warnings) = (0 as c_uint, 0 as c_uint, 0 as c_ulong);
    let mut message = [0 as c_char; 256];
    // SAFETY: every pointer is valid for the length passed with it; the C side writes at most
    // `capacity` bytes into `pixels` and a NUL-terminated string of at most 256 bytes into
    // `message`, and keeps no pointer after it returns.
    let status = unsafe {
        dcgan_jpeg_decode(
            bytes.as_ptr(),
            bytes.len() as c_ulong,
            scale_denom as c_int,
            pixels.as_mut_ptr(),
            capacity as c_ulong,
            &mut width,
            &mut height,
            &mut warnings,
            message.as_mut_ptr(),
            message.len() as c_ulong,
        )
    };
    // SAFETY: the C side always leaves a NUL-terminated string in `message` (zeroed at the start).
    let text = unsafe { std::ffi::CStr::from_ptr(message.as_ptr()) }.to_string_lossy().trim().to_owned();
    pixels.truncate((width as usize) * (height as usize) * 3);
    match status {
        0 => Outcome::Whole { width, height, pixels },
        1 => Outcome::Damaged { width, height, pixels, warnings, first: text },
        _ => Outcome::Failed(text),
    }
}
