//! One self-contained HTML page for the paper's "visual inspection of hash collisions": the
//! largest clusters (kept image outlined) and random pairs at or just under the radius, where
//! false positives would show first. Thumbnails are embedded as PNG data URIs.

use std::collections::HashMap;

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
    /// With the pHash check on: its radius and each shown pair's pHash distance (the best over
    /// the crops' windows when the crop route is on) and whether it passes (as `pairs`).
    pub check: Option<(u32, Vec<(u32, bool)>)>,
}

/// Up to `count` pairs drawn at random (seeded) from those at the radius and one bit under.
pub fn pairs_near_radius(pairs: &[NearPair], radius: u32, count: usize, seed: u64) -> Vec<NearPair> {
    let near: Vec<NearPair> = pairs.iter().filter(|p| p.distance + 1 >= radius && p.distance > 0).copied().collect();
    random_pairs(near, count, seed)
}

/// Up to `count` of `pairs`, drawn at random (seeded).
pub fn random_pairs(mut near: Vec<NearPair>, count: usize, seed: u64) -> Vec<NearPair> {
    // Seeded: the same page for the same run.
    crate::rng::SplitMix::new(seed).shuffle(&mut near);
    near.truncate(count);
    near
}

/// A thumbnail: the crop as a data URI (None: not readable), its source, whether it was kept.
struct Thumb {
    uri: Option<String>,
    name: String,
    kept: bool,
}

struct ClusterRow {
    size: usize,
    members: Vec<Thumb>,
}

struct PairRow {
    a: Thumb,
    b: Thumb,
    distance: u32,
    /// pHash distance and whether the pair passes the check.
    phash: Option<(u32, bool)>,
}

/// templates/dedupe.html.
#[derive(askama::Template)]
#[template(path = "dedupe.html")]
struct PageView<'a> {
    title: &'a str,
    thumb: u32,
    clusters: Vec<ClusterRow>,
    pairs: Vec<PairRow>,
    radius: u32,
    radius_low: u32,
    check_radius: Option<u32>,
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
        let thumb = |i: u32, kept: bool| Thumb {
            uri: images.get(&i).map(|pixels| crate::pictures::data_uri::rgb_data_uri(pixels, self.side, self.side)),
            name: name(i),
            kept,
        };
        let view = PageView {
            title: &self.title,
            thumb: self.side.max(64),
            clusters: self
                .clusters
                .iter()
                .map(|c| ClusterRow {
                    size: c.size,
                    members: c.members.iter().map(|&m| thumb(m, m == c.kept)).collect(),
                })
                .collect(),
            pairs: self
                .pairs
                .iter()
                .enumerate()
                .map(|(i, p)| PairRow {
                    a: thumb(p.a, false),
                    b: thumb(p.b, false),
                    distance: p.distance,
                    phash: self.check.as_ref().map(|(_, d)| d[i]),
                })
                .collect(),
            radius: self.radius,
            radius_low: self.radius.saturating_sub(1),
            check_radius: self.check.as_ref().map(|c| c.0),
        };
        askama::Template::render(&view).expect("the dedupe template renders (it has no fallible parts)") + "\n"
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

    #[test]
    fn the_page_escapes_names_marks_the_kept_image_and_embeds_crops() {
        let page = Page {
            title: "dedupe <test>".into(),
            side: 2,
            radius: 9,
            clusters: vec![ClusterView { members: vec![0, 1], size: 3, kept: 1 }],
            pairs: vec![NearPair { a: 0, b: 2, distance: 8 }, NearPair { a: 1, b: 2, distance: 9 }],
            check: Some((10, vec![(4, true), (22, false)])),
        };
        let images: HashMap<u32, Vec<u8>> = [(0, vec![255u8; 12]), (1, vec![0u8; 12])].into_iter().collect();
        let html = page.render(&images, &|i| format!("img\"{i}\".jpg"));
        let unchecked = Page { check: None, ..page }.render(&images, &|i| format!("{i}.jpg"));
        assert!(unchecked.contains("distance 8 to 9 bits") && !unchecked.contains("pHash"), "{unchecked}");
        assert!(
            html.contains("<title>dedupe &#60;test&#62;</title>")
                || html.contains("<title>dedupe &lt;test&gt;</title>"),
            "{html}"
        );
        assert!(
            html.contains("title=\"img&#34;1&#34;.jpg\"") || html.contains("title=\"img&quot;1&quot;.jpg\""),
            "names are escaped in attributes"
        );
        assert_eq!(html.matches("class=\"kept\"").count(), 1, "only the kept member is outlined");
        assert_eq!(
            html.matches("src=\"data:image/png;base64,").count(),
            4,
            "two cluster members and one side of each pair"
        );
        assert!(
            html.contains("(first shown)") && html.contains("8 bits") && html.contains("those that pass the check")
        );
        assert!(html.contains("pHash 4 bits: passes") && html.contains("pHash 22 bits: fails"), "{html}");
        assert!(html.contains("<span title="), "a crop that could not be read is a placeholder");
    }
}
