//! Typed configuration: one TOML table per stage plus `[run]`.
//!
//! Layers, each over the one before: the embedded default (configs/demo.toml), the file given
//! with `--config` (it only needs the keys it changes), then `--set key=value` flags. Unknown keys
//! are errors, so a typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stage::RunSettings;
use crate::torchutil::device::DeviceName;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../configs/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("--set {0}: expected KEY=VALUE, for example crop.size=64")]
    BadSet(String),
    #[error("--set {key}: {why}")]
    BadKey { key: String, why: String },
    #[error("{key} = {value} ({origin}): not a finite number (no setting takes NaN or infinity)")]
    NotFinite { key: String, value: f64, origin: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub run: RunSettings,
    pub crop: crate::crop::CropConfig,
    pub faces: crate::faces::FacesConfig,
    pub train: crate::gan::TrainConfig,
    pub cifar_eval: crate::eval::CifarEvalConfig,
    pub dedupe: crate::dedupe::DedupeConfig,
    pub paths: PathsConfig,
}

/// Where `make preprocess`, `make train` and `make cifar-eval` find the data sets (the Makefile
/// reads configs/paper.toml's `[paths]`; FACES_DIR, LSUN_DIR, IMAGENET_DIR, CIFAR_DIR and OUT on
/// the make line override them). Empty: that input is not configured and its stage is skipped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub faces: String,
    pub lsun: String,
    pub imagenet: String,
    pub cifar: String,
    pub out: String,
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse { origin: origin.to_owned(), message: e.to_string() })
}

/// Recursively lays `over` on top of `base`.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Parses the value of `--set`: a TOML value where it is one (64, true, 1.5, "x", [1, 2]),
/// otherwise the text as a string (so paths need no quotes).
fn parse_set_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let (key, value) = assignment.split_once('=').ok_or_else(|| ConfigError::BadSet(assignment.to_owned()))?;
    let key = key.trim();
    let path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::BadSet(assignment.to_owned()));
    }
    let mut node = table;
    for part in &path[..path.len() - 1] {
        node = match node.get_mut(*part) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(ConfigError::BadKey { key: key.to_owned(), why: format!("no table [{part}]") }),
        };
    }
    let leaf = path[path.len() - 1];
    if !node.contains_key(leaf) {
        return Err(ConfigError::BadKey { key: key.to_owned(), why: "no such key (see --print-config)".into() });
    }
    node.insert(leaf.to_owned(), parse_set_value(value.trim()));
    Ok(())
}

/// Refuses NaN and infinity anywhere in `table` (TOML has both; no setting means anything by
/// them, and `train.lr = nan` used to train into NaN losses), naming the key.
fn refuse_non_finite(table: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
    fn check(value: &toml::Value, key: &str) -> Result<(), ConfigError> {
        match value {
            toml::Value::Float(f) if !f.is_finite() => {
                Err(ConfigError::NotFinite { key: key.to_owned(), value: *f, origin: String::new() })
            }
            toml::Value::Table(t) => refuse_non_finite(t, key),
            toml::Value::Array(items) => {
                items.iter().enumerate().try_for_each(|(i, v)| check(v, &format!("{key}[{i}]")))
            }
            _ => Ok(()),
        }
    }
    table.iter().try_for_each(|(k, v)| check(v, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }))
}

/// The key a deserialisation error is about: toml writes it on a last line "in `table.key`".
fn error_key(error: &toml::de::Error) -> Option<String> {
    let text = error.to_string();
    text.lines().rev().find_map(|l| l.strip_prefix("in `")?.strip_suffix('`').map(str::to_owned))
}

/// The last `--set` that gave `key` (the one that won), if any did.
fn last_set_of<'a>(sets: &'a [String], key: &str) -> Option<&'a String> {
    sets.iter().rev().find(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key))
}

/// Deserialises the merged table; a value of the wrong type or an unknown word is named by its
/// key, and by its `--set` when one of `sets` gave it.
fn deserialise(table: toml::Table, origin: &str, sets: &[String]) -> Result<Config, ConfigError> {
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
        let message = e.message().to_owned();
        let Some(key) = error_key(&e) else { return ConfigError::Parse { origin: origin.to_owned(), message } };
        match last_set_of(sets, &key) {
            Some(assignment) => ConfigError::BadKey { key: assignment.trim().to_owned(), why: message },
            None => ConfigError::Parse { origin: origin.to_owned(), message: format!("{key}: {message}") },
        }
    })
}

/// Loads the effective configuration (embedded default, --config, --set); with --print-config,
/// prints it and returns None: the binary is done.
pub fn load_or_print(file: Option<&Path>, sets: &[String], print: bool) -> Result<Option<Config>, ConfigError> {
    let config = Config::load(file, sets)?;
    if print {
        print!("{}", config.to_toml());
        return Ok(None);
    }
    Ok(Some(config))
}

impl Config {
    /// The embedded default, then `file`, then each `--set`.
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let mut table = parse_table(DEFAULT_TOML, "embedded default config")?;
        let mut origin = "embedded default config".to_owned();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            merge_tables(&mut table, parse_table(&text, &path.display().to_string())?);
            origin = path.display().to_string();
        }
        for assignment in sets {
            apply_set(&mut table, assignment)?;
        }
        if !sets.is_empty() {
            origin = format!("{origin} with --set");
        }
        refuse_non_finite(&table, "").map_err(|e| match e {
            // Which layer gave it: the last --set of that key, else the file.
            ConfigError::NotFinite { key, value, .. } => {
                let table_key = key.split('[').next().unwrap_or(&key);
                let origin = match (last_set_of(sets, table_key), file) {
                    (Some(assignment), _) => format!("--set {}", assignment.trim()),
                    (None, Some(path)) => path.display().to_string(),
                    (None, None) => "embedded default config".into(),
                };
                ConfigError::NotFinite { key, value, origin }
            }
            other => other,
        })?;
        let config = deserialise(table, &origin, sets)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Parse { origin: "config".into(), message };
        if self.crop.size == 0 || self.crop.size > 4096 {
            return Err(bad(format!("crop.size = {} is outside 1..=4096", self.crop.size)));
        }
        if self.crop.part_size == 0 {
            return Err(bad("crop.part_size must be at least 1".into()));
        }
        if self.crop.min_decoded_factor == 0 {
            return Err(bad("crop.min_decoded_factor must be at least 1".into()));
        }
        let f = &self.faces;
        if f.size == 0 || f.size > 4096 || f.part_size == 0 {
            return Err(bad("faces.size must be in 1..=4096 and faces.part_size at least 1".into()));
        }
        if f.scale_factor <= 1.0 {
            return Err(bad(format!("faces.scale_factor = {} must be above 1 (e.g. 1.1)", f.scale_factor)));
        }
        if f.margin < 0.0 || f.min_neighbors < 0 {
            return Err(bad("faces.margin and faces.min_neighbors must not be negative".into()));
        }
        if !(0.0..=1.0).contains(&f.score_threshold) || !(0.0..=1.0).contains(&f.nms_threshold) {
            return Err(bad("faces.score_threshold and faces.nms_threshold must be in [0, 1]".into()));
        }
        if !(8.0..=1024.0).contains(&f.second_look_face)
            || !(1.0..=8.0).contains(&f.second_look_context)
            || !(0.0..=1.0).contains(&f.second_look_threshold)
        {
            return Err(bad(format!(
                "faces.second_look_face = {} must be in 8..=1024, faces.second_look_context = {} in 1..=8 and \
                 faces.second_look_threshold = {} in [0, 1]",
                f.second_look_face, f.second_look_context, f.second_look_threshold
            )));
        }
        if f.presence_rescue.is_nan() || f.presence_rescue < 0.0 {
            return Err(bad(format!(
                "faces.presence_rescue = {} must be a number from 0 (above 1: off)",
                f.presence_rescue
            )));
        }
        if f.detect_face_px != 0 && f.detect_face_px < 8 {
            return Err(bad(format!("faces.detect_face_px = {} must be 0 (off) or at least 8", f.detect_face_px)));
        }
        if f.detect_max_side != 0 && f.detect_max_side < 32 {
            return Err(bad(format!(
                "faces.detect_max_side = {} must be 0 (full size) or at least 32",
                f.detect_max_side
            )));
        }
        let t = &self.train;
        if t.batch < 1 || t.lr <= 0.0 || !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return Err(bad("train.batch must be >= 1, train.lr > 0, train.beta1 and beta2 in [0, 1)".into()));
        }
        DeviceName::parse(&t.device).map_err(|e| bad(format!("train.device: {e}")))?;
        self.cifar_eval.validate().map_err(bad)?;
        self.dedupe.validate().map_err(bad)?;
        self.run.validate().map_err(bad)?;
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_file_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                loaded += 1;
            }
        }
        assert!(loaded >= 4, "only {loaded} config files in {}", dir.display());
        let recall = Config::load(Some(&dir.join("faces-recall-first.toml")), &[]).unwrap();
        assert!(recall.to_toml().contains("side_measure = \"longer\""), "{}", recall.to_toml());
    }

    #[test]
    fn embedded_default_loads() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.crop.size, 32);
    }

    #[test]
    fn file_and_set_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[crop]\nsize = 64\npart_size = 7\n").unwrap();
        let c = Config::load(Some(&file), &["crop.size=48".into(), "run.threads=3".into()]).unwrap();
        assert_eq!((c.crop.size, c.crop.part_size, c.run.threads), (48, 7, 3));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = Config::load(None, &["crop.sise=64".into()]).unwrap_err();
        assert!(err.to_string().contains("crop.sise"), "{err}");
        assert!(Config::load(None, &["crop.size=big".into()]).is_err());
        assert!(Config::load(None, &["crop.size=0".into()]).is_err());
        assert!(Config::load(None, &["nonsense".into()]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[crop]\ncolour = 1\n").unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("colour") && err.contains("c.toml"), "{err}");
    }

    #[test]
    fn a_set_of_the_wrong_type_or_word_names_its_key() {
        for (set, key) in [
            ("crop.size=abc", "crop.size=abc"),
            ("faces.align=\"foo\"", "faces.align"),
            ("train.channels_last=\"sideways\"", "train.channels_last"),
            ("train.preset=\"dcgan128\"", "train.preset"),
            ("cifar_eval.c_grid=[\"a\"]", "cifar_eval.c_grid"),
        ] {
            let err = Config::load(None, &[set.into()]).unwrap_err().to_string();
            assert!(err.starts_with("--set ") && err.contains(key), "{set}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        // From a file: the key with the file's name.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[faces]\nalign = \"foo\"\n").unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("faces.align") && err.contains("foo"), "{err}");
    }

    #[test]
    fn nan_and_infinity_are_refused_under_their_key() {
        for (set, key) in [
            ("train.lr=nan", "train.lr"),
            ("train.lr=inf", "train.lr"),
            ("train.beta1=-inf", "train.beta1"),
            ("faces.margin=nan", "faces.margin"),
            ("faces.presence_rescue=nan", "faces.presence_rescue"),
            ("dedupe.ae_lr=inf", "dedupe.ae_lr"),
            ("cifar_eval.tol=nan", "cifar_eval.tol"),
            ("cifar_eval.c_grid=[0.1, nan]", "cifar_eval.c_grid[1]"),
            ("run.log_every_s=inf", "run.log_every_s"),
        ] {
            let err = Config::load(None, &[set.into()]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{key} = ")) && err.contains("not a finite number"), "{set}: {err}");
        }
        assert!(Config::load(None, &["train.lr=0.001".into()]).is_ok());
        let err = Config::load(None, &["faces.presence_rescue=-0.5".into()]).unwrap_err().to_string();
        assert!(err.contains("faces.presence_rescue = -0.5 must be"), "{err}");
        let err = Config::load(None, &["train.lr=nan".into()]).unwrap_err().to_string();
        assert!(err.contains("(--set train.lr=nan)"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[train]\nbeta2 = inf\n").unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.starts_with("train.beta2 = inf (") && err.contains("c.toml)"), "{err}");
    }

    #[test]
    fn a_bad_device_name_is_refused_at_load_under_its_key() {
        for key in ["train.device", "dedupe.device", "cifar_eval.device"] {
            let err = Config::load(None, &[format!("{key}=\"gpu\"")]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("\"gpu\""), "{err}");
            assert!(Config::load(None, &[format!("{key}=\"cuda:1\"")]).is_ok(), "{key}");
        }
    }
}
