//! Face detection behind a small trait: OpenCV's Haar cascade, as in the paper ("we run an OpenCV
//! face detector"), here; YuNet, OpenCV's CNN detector, in [`super::yunet`].

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use opencv::core::{Mat, Rect, Size, Vector};
use opencv::imgproc;
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;

use crate::imageops::RgbImage;

/// One detection in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaceBox {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    /// How many overlapping raw detections were grouped into this one (OpenCV's numDetections):
    /// the cascade's confidence.
    pub neighbours: i32,
}

impl FaceBox {
    pub fn iou(&self, other: &FaceBox) -> f64 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.w).min(other.x + other.w);
        let y1 = (self.y + self.h).min(other.y + other.h);
        let inter = ((x1 - x0).max(0) * (y1 - y0).max(0)) as f64;
        let union = (self.w * self.h + other.w * other.h) as f64 - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// Five facial points in source pixels, in YuNet's order: the right eye, the left eye (the
/// person's: the right eye is on the image's left), the nose tip, the right and the left corner
/// of the mouth.
pub type Landmarks = [[f32; 2]; 5];

/// One face as a detector reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The box in whole source pixels (what crops are cut around).
    pub face: FaceBox,
    /// The same box as the detector computed it: x, y, w, h.
    pub exact: [f32; 4],
    /// YuNet's score, sqrt(cls x obj); none for the cascade (its confidence is `face.neighbours`).
    pub score: Option<f32>,
    /// YuNet's five landmarks; none for the cascade.
    pub landmarks: Option<Landmarks>,
}

impl Detection {
    /// A box without score or landmarks (the cascade's).
    pub fn from_box(face: FaceBox) -> Self {
        let exact = [face.x as f32, face.y as f32, face.w as f32, face.h as f32];
        Self { face, exact, score: None, landmarks: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("{path}: cannot load the Haar cascade ({why})")]
    Cascade { path: PathBuf, why: String },
    #[error("{path}: cannot load the {detector} model ({why})")]
    Model { path: PathBuf, detector: &'static str, why: String },
    #[error("OpenCV: {0}")]
    OpenCv(String),
}

impl From<opencv::Error> for DetectorError {
    fn from(e: opencv::Error) -> Self {
        // OpenCV's messages can span lines; a manifest reason is one.
        DetectorError::OpenCv(e.message.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

pub trait FaceDetector: Sync {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError>;

    /// A second look at one of this detector's detections ([`super::second_look`]); `None` for a
    /// detector without one (the cascade).
    fn look_again(
        &self,
        _image: &RgbImage,
        _detection: &Detection,
        _params: &super::second_look::SecondLookParams,
    ) -> Result<Option<super::second_look::Look>, DetectorError> {
        Ok(None)
    }
}

/// Detector settings (OpenCV's detectMultiScale parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct HaarParams {
    pub scale_factor: f64,
    pub min_neighbors: i32,
    /// Smallest and largest window, in pixels; 0 = no bound.
    pub min_size: i32,
    pub max_size: i32,
    /// Equalise the grey image's histogram first, as OpenCV's facedetect sample does.
    pub equalize: bool,
}

pub struct HaarCascade {
    path: PathBuf,
    params: HaarParams,
}

thread_local! {
    // CascadeClassifier is neither Send nor Sync, and loading one parses a ~1 MB XML: each worker
    // thread keeps its own, loaded once.
    static CASCADES: RefCell<Vec<(PathBuf, CascadeClassifier)>> = const { RefCell::new(Vec::new()) };
}

/// Resolves a cascade name (`frontalface_default`, `alt`, `alt2`, `alt_tree`, or a path to an XML
/// file) against OpenCV's cascade folder.
pub fn cascade_path(name: &str, dir: &Path) -> PathBuf {
    if name.ends_with(".xml") || name.contains('/') {
        return PathBuf::from(name);
    }
    let stem = match name {
        "default" => "frontalface_default",
        "alt" => "frontalface_alt",
        "alt2" => "frontalface_alt2",
        "alt_tree" => "frontalface_alt_tree",
        other => other,
    };
    dir.join(format!("haarcascade_{stem}.xml"))
}

/// Grey as OpenCV's cvtColor computes it (BT.601 weights, 14-bit fixed point), so that boxes
/// match those of a cv2 script that reads with imread and converts with cvtColor.
pub fn to_gray(image: &RgbImage) -> Vec<u8> {
    image
        .pixels
        .chunks_exact(3)
        .map(|p| ((p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + 8192) >> 14) as u8)
        .collect()
}

fn load_cascade(path: &Path) -> Result<CascadeClassifier, DetectorError> {
    let cascade_err = |why: String| DetectorError::Cascade { path: path.to_owned(), why };
    if !path.is_file() {
        return Err(cascade_err("no such file; install Debian's opencv-data".into()));
    }
    let cascade = CascadeClassifier::new(path).map_err(|e| cascade_err(e.message))?;
    if cascade.empty().map_err(|e| cascade_err(e.message))? {
        return Err(cascade_err("not a cascade OpenCV can read".into()));
    }
    Ok(cascade)
}

impl HaarCascade {
    /// Loads the cascade once here, so that a bad path fails the stage at start, not per image.
    pub fn new(path: PathBuf, params: HaarParams) -> Result<Self, DetectorError> {
        load_cascade(&path)?;
        Ok(Self { path, params })
    }
}

impl FaceDetector for HaarCascade {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let gray = to_gray(image);
        let mat = Mat::new_rows_cols_with_data(image.height as i32, image.width as i32, &gray)?;
        // An owned copy either way: detectMultiScale wants a plain Mat, and the copy is cheap
        // next to the detection.
        let mut input = Mat::default();
        if self.params.equalize {
            imgproc::equalize_hist(&mat, &mut input)?;
        } else {
            mat.copy_to(&mut input)?;
        }
        let mut objects = Vector::<Rect>::new();
        let mut counts = Vector::<i32>::new();
        CASCADES.with(|cell| -> Result<(), DetectorError> {
            let mut cascades = cell.borrow_mut();
            let index = match cascades.iter().position(|(p, _)| p == &self.path) {
                Some(i) => i,
                None => {
                    cascades.push((self.path.clone(), load_cascade(&self.path)?));
                    cascades.len() - 1
                }
            };
            let p = &self.params;
            cascades[index].1.detect_multi_scale2(
                &input,
                &mut objects,
                &mut counts,
                p.scale_factor,
                p.min_neighbors,
                0,
                Size::new(p.min_size, p.min_size),
                Size::new(p.max_size, p.max_size),
            )?;
            Ok(())
        })?;
        let mut boxes: Vec<FaceBox> = objects
            .iter()
            .zip(counts.iter())
            .map(|(r, n)| FaceBox { x: r.x, y: r.y, w: r.width, h: r.height, neighbours: n })
            .collect();
        // OpenCV's order depends on its grouping; a stable order keeps outputs reproducible.
        boxes.sort_by_key(|b| (b.y, b.x, b.w));
        Ok(boxes.into_iter().map(Detection::from_box).collect())
    }
}
