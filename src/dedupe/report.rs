//! One self-contained HTML page for the paper's "visual inspection of hash collisions": the
//! largest clusters (kept image outlined) and random pairs at or just under the radius, where
//! false positives would show first. Thumbnails are embedded as PNG data URIs.

use std::collections::HashMap;
use std::fmt::Write;

use super::index::NearPair;

pub struct ClusterView {
    /// Members shown (the first ones in input order).
    pub members: Vec<u32>,
    pub size: usize,
    pub kept: u32,
}

pub struct Page {
    pub title: String,
    pub side: u32,
    pub radius: u32,
    pub clusters: Vec<ClusterView>,
    pub pairs: Vec<NearPair>,
}

/// Up to `count` pairs drawn at random (seeded) from those at the radius and one bit under.
pub fn pairs_near_radius(pairs: &[NearPair], radius: u32, count: usize, seed: u64) -> Vec<NearPair> {
    let mut near: Vec<NearPair> = pairs.iter().filter(|p| p.distance + 1 >= radius && p.distance > 0).copied().collect();
    // Seeded: the same page for the same run.
    crate::rng::SplitMix::new(seed).shuffle(&mut near);
    near.truncate(count);
    near
}


use crate::report::html::escape;

fn png_data_uri(pixels: &[u8], side: u32) -> String {
    crate::report::html::rgb_data_uri(pixels, side, side)
}

impl Page {
    /// Every crop the page shows.
    pub fn images(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self.clusters.iter().flat_map(|c| c.members.iter().copied()).collect();
        all.extend(self.pairs.iter().flat_map(|p| [p.a, p.b]));
        all
    }

    /// The page, with `images` holding the crop of every index of [`Page::images`].
    pub fn render(&self, images: &HashMap<u32, Vec<u8>>, name: &dyn Fn(u32) -> String) -> String {
        let img = |i: u32, class: &str| -> String {
            let title = escape(&name(i));
            match images.get(&i) {
                Some(pixels) => format!("<img class=\"{class}\" src=\"{}\" title=\"{title}\" alt=\"{title}\">", png_data_uri(pixels, self.side)),
                None => format!("<span title=\"{title}\">?</span>"),
            }
        };
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>\
             body{{font-family:sans-serif;margin:1em}} img{{width:{1}px;height:{1}px;margin:1px;image-rendering:pixelated}}\
             img.kept{{outline:3px solid #2a2}} .row{{margin:.4em 0}} .pair{{display:inline-block;margin:.3em;padding:.2em;border:1px solid #ccc}}\
             </style></head><body><h1>{0}</h1>\
             <p>Hover an image for its source. Largest clusters first; the kept image is outlined in green.</p>",
            escape(&self.title),
            self.side.max(64)
        );
        let _ = write!(html, "<h2>{} largest clusters</h2>", self.clusters.len());
        for c in &self.clusters {
            let _ = write!(html, "<div class=\"row\"><b>{} images</b>{}<br>", c.size, if c.size > c.members.len() { " (first shown)" } else { "" });
            for &m in &c.members {
                html.push_str(&img(m, if m == c.kept { "kept" } else { "" }));
            }
            html.push_str("</div>");
        }
        let _ = write!(
            html,
            "<h2>{} random pairs at distance {} to {} bits</h2><p>The least similar pairs still called duplicates: count the false ones.</p>",
            self.pairs.len(),
            self.radius.saturating_sub(1),
            self.radius
        );
        for p in &self.pairs {
            let _ = write!(html, "<div class=\"pair\">{}{}<br>{} bits</div>", img(p.a, ""), img(p.b, ""), p.distance);
        }
        html.push_str("</body></html>\n");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_near_the_radius_only() {
        let pairs: Vec<NearPair> = (0..20).map(|d| NearPair { a: d, b: d + 100, distance: d % 9 }).collect();
        let picked = pairs_near_radius(&pairs, 8, 5, 1);
        assert!(!picked.is_empty() && picked.len() <= 5);
        assert!(picked.iter().all(|p| p.distance == 7 || p.distance == 8));
    }
}
