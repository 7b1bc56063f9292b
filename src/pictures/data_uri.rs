//! PNGs as data URIs, so that a page embeds its images and stays one self-contained file.
//! Escaping is the templates' (askama escapes everything it prints).

use std::path::Path;

use base64::Engine;

/// PNG bytes as a data URI.
pub fn png_data_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

/// An RGB image (row-major, 3 bytes a pixel) as a PNG data URI.
pub fn rgb_data_uri(pixels: &[u8], width: u32, height: u32) -> String {
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::write_image(encoder, pixels, width, height, image::ExtendedColorType::Rgb8)
        .expect("PNG of an RGB buffer");
    png_data_uri(&png)
}

/// A PNG file as a data URI (None when it cannot be read).
pub fn png_file_data_uri(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    bytes.starts_with(b"\x89PNG").then(|| png_data_uri(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn data_uris_hold_the_png_bytes() {
        let uri = rgb_data_uri(&[255, 0, 0], 1, 1);
        let encoded = uri.strip_prefix("data:image/png;base64,").unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back.get_pixel(0, 0), &Rgb([255, 0, 0]));
    }
}
