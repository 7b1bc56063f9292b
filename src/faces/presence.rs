//! A face-presence score from a second model, whose errors are not the detector's: MediaPipe's face
//! landmark network (Apache-2.0) cut to its face-presence output (models/mediapipe_face_presence.onnx,
//! written by benches/facemesh_flag_to_onnx.py). It sees the box's square, 1.5 times the box's longer
//! side, turned so the eyes are level, at 192 x 192; it was trained on such crops from its own face
//! detector, so it tells a face from a torso, a fist or a sign, but it doubts profiles and faces under
//! hair or hands. The stage uses it to give back a box the second look rejects
//! (`faces.presence_rescue`, docs/faces.md).

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use opencv::core::{Mat, Scalar, Size, Vector};
use opencv::dnn::{self, Net};
use opencv::prelude::*;

use super::align::{crop_rotated, TurnedSquare};
use super::detector::{Detection, DetectorError};
use super::yunet::{build_net_with, load_checked, with_net, NetKey};
use crate::imageops::RgbImage;

/// The network's input side (px).
pub const INPUT_SIDE: u32 = 192;
/// The crop's side per the box's longer side (MediaPipe's face region, from its detector's box).
pub const SIDE_PER_BOX: f32 = 1.5;
/// The model's one output: the face-presence logit.
const OUTPUT: &str = "face_presence";

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // One network per thread (a Net is neither Send nor Sync), built from the checked bytes.
    static NETS: RefCell<Vec<(NetKey, Net)>> = const { RefCell::new(Vec::new()) };
}

/// The face-presence model, loaded and checked once.
pub struct FacePresence {
    id: usize,
    model: Vec<u8>,
}

impl FacePresence {
    /// Reads the model and checks its sha256 (unless empty) and its output; errors name the file.
    pub fn new(path: &Path, expected_sha256: &str) -> Result<Self, DetectorError> {
        let model = load_checked(path, expected_sha256, "face-presence", &[OUTPUT])?;
        Ok(Self { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), model })
    }

    /// The probability that `detection` is a face (0-1), from the crop [`presence_square`] gives.
    pub fn score(&self, image: &RgbImage, detection: &Detection) -> Result<f32, DetectorError> {
        let square = presence_square(detection);
        let crop = crop_rotated(image, &square, INPUT_SIDE)?;
        let flat = Mat::new_rows_cols_with_data(INPUT_SIDE as i32, (INPUT_SIDE * 3) as i32, &crop)?;
        let rgb = flat.reshape(3, INPUT_SIDE as i32)?;
        // RGB in [0, 1], NCHW: the crop is already RGB, so no channel swap.
        let blob = dnn::blob_from_image(
            &rgb,
            1.0 / 255.0,
            Size::new(INPUT_SIDE as i32, INPUT_SIDE as i32),
            Scalar::all(0.0),
            false,
            false,
            opencv::core::CV_32F,
        )?;
        let logit = with_net(
            &NETS,
            (self.id, 0),
            || build_net_with(&self.model, "face-presence", &[OUTPUT]),
            |net| {
                net.set_input(&blob, "", 1.0, Scalar::all(0.0))?;
                let mut outputs = Vector::<Mat>::new();
                net.forward(&mut outputs, &Vector::<String>::from_iter([OUTPUT]))?;
                let out = outputs.get(0)?;
                Ok(*out.data_typed::<f32>()?.first().ok_or_else(|| DetectorError::OpenCv("empty output".into()))?)
            },
        )?;
        Ok(1.0 / (1.0 + (-logit).exp()))
    }
}

/// The square the model sees: centred on the box, [`SIDE_PER_BOX`] x its longer side, turned by the
/// eye line's angle (level when the detector gives no landmarks).
pub fn presence_square(detection: &Detection) -> TurnedSquare {
    let [x, y, w, h] = detection.exact;
    let angle = detection
        .landmarks
        .map_or(0.0, |[right_eye, left_eye, ..]| (left_eye[1] - right_eye[1]).atan2(left_eye[0] - right_eye[0]));
    TurnedSquare { centre: [x + w / 2.0, y + h / 2.0], side: (SIDE_PER_BOX * w.max(h)).max(1.0), angle }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faces::detector::FaceBox;

    #[test]
    fn the_square_is_centred_on_the_box_and_turned_with_the_eyes() {
        let mut det = Detection::from_box(FaceBox { x: 100, y: 50, w: 40, h: 60, neighbours: 0 });
        let level = presence_square(&det);
        assert_eq!(level.centre, [120.0, 80.0]);
        assert!((level.side - 90.0).abs() < 1e-4 && level.angle == 0.0, "{level:?}");
        // The left eye (image right) 10 px lower than the right eye over 20 px: turned by atan(0.5).
        det.landmarks = Some([[110.0, 70.0], [130.0, 80.0], [120.0, 85.0], [112.0, 95.0], [128.0, 100.0]]);
        let turned = presence_square(&det);
        assert!((turned.angle - 0.5f32.atan()).abs() < 1e-5, "{turned:?}");
        assert_eq!(turned.centre, level.centre);
    }
}
