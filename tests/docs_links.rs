//! Every relative link in README.md and docs/ points at something in the repository: the file (or
//! folder) exists, and a `#anchor` into a markdown file names one of its headings. Web links
//! (http, https, mailto) are not followed. Pure std: the markdown is scanned by hand.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every .md file under docs/ (sub-folders included), in sorted order.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut folders = vec![root.join("docs")];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for path in entries.map(|e| e.expect("a readable docs/ entry").path()) {
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The markdown text outside fenced code blocks and inline code spans, line by line (code may
/// hold `](` that is not a link).
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop the inline code spans: every other backtick-delimited piece.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        lines.push((i + 1, prose));
    }
    lines
}

/// The targets of `[text](target)`, `![alt](target)` and `[label]: target` links, with their
/// line numbers; an optional title after the target is dropped, `<target>` unwrapped.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (line_no, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some((label, rest)) = trimmed.split_once("]:") {
                if !label.contains('(') {
                    if let Some(target) = rest.split_whitespace().next() {
                        targets.push((line_no, target.trim_matches(['<', '>']).to_owned()));
                    }
                    continue;
                }
            }
        }
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            // The target ends at the ")" that balances the "(", so "a_(b).md" stays whole.
            let mut depth = 0usize;
            let mut end = after.len();
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let inside = after[..end].trim();
            let target = if let Some(stripped) = inside.strip_prefix('<') {
                stripped.split('>').next().unwrap_or("")
            } else {
                inside.split_whitespace().next().unwrap_or("")
            };
            targets.push((line_no, target.to_owned()));
            rest = &after[end.min(after.len())..];
        }
    }
    targets
}

fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    ["http://", "https://", "mailto:"].iter().any(|scheme| lower.starts_with(scheme))
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept),
/// spaces to hyphens.
fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings, with GitHub's -1, -2 suffixes for repeats.
fn anchors(text: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    let in_code = {
        let mut in_fence = false;
        text.lines()
            .map(|line| {
                let fence = line.trim_start().starts_with("```");
                let inside = in_fence || fence;
                if fence {
                    in_fence = !in_fence;
                }
                inside
            })
            .collect::<Vec<_>>()
    };
    for (line, code) in text.lines().zip(in_code) {
        if code || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = heading_anchor(&heading.replace('`', ""));
        let mut anchor = base.clone();
        let mut n = 0;
        while found.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        found.insert(anchor);
    }
    found
}

/// `a/./b/../c` -> `a/c`, without touching the file system (the target may not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why `target`, a relative link in `markdown` (the text of the file at `path`), does not resolve;
/// None when it does.
fn link_problem(root: &Path, path: &Path, markdown: &str, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("empty target".to_owned());
    }
    let (file_part, anchor) = match target.split_once('#') {
        Some((file, anchor)) => (file, Some(anchor)),
        None => (target, None),
    };
    let file_part = file_part.split('?').next().unwrap_or("").replace("%20", " ");
    let (resolved, text) = if file_part.is_empty() {
        (path.to_path_buf(), markdown.to_owned())
    } else {
        let resolved = match file_part.strip_prefix('/') {
            Some(from_root) => normalise(&root.join(from_root)),
            None => normalise(&path.parent().expect("a markdown file has a folder").join(&file_part)),
        };
        if !resolved.starts_with(root) {
            return Some("outside the repository".to_owned());
        }
        if !resolved.exists() {
            return Some("no such file".to_owned());
        }
        let is_markdown = resolved.extension().is_some_and(|e| e == "md");
        (
            resolved.clone(),
            if is_markdown { std::fs::read_to_string(&resolved).unwrap_or_default() } else { String::new() },
        )
    };
    match anchor {
        Some(anchor) if resolved.extension().is_some_and(|e| e == "md") && !anchors(&text).contains(anchor) => {
            Some(format!("no heading #{anchor} in it"))
        }
        _ => None,
    }
}

/// Every broken relative link of `markdown` (the text of the file at `path`), described as
/// "file:line: target (why)".
fn broken_links(root: &Path, path: &Path, markdown: &str) -> Vec<String> {
    let shown = path.strip_prefix(root).unwrap_or(path).display().to_string();
    link_targets(markdown)
        .into_iter()
        .filter(|(_, target)| !is_external(target))
        .filter_map(|(line, target)| {
            link_problem(root, path, markdown, &target).map(|why| format!("{shown}:{line}: {target} ({why})"))
        })
        .collect()
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let root = repo_root();
    let files = markdown_files(&root);
    assert!(files.len() > 1, "README.md and docs/*.md expected, found {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        checked += link_targets(&text).iter().filter(|(_, t)| !is_external(t)).count();
        broken.extend(broken_links(&root, file, &text));
    }
    assert!(checked > 0, "no relative link found in {} files: the link scanner is broken", files.len());
    assert!(broken.is_empty(), "{} broken links of {checked}:\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn made_up_broken_links_are_reported_and_good_ones_are_not() {
    let root = repo_root();
    let page = root.join("docs/made-up.md");
    let markdown = "\
# A made-up page

## Its second heading

Good: [the front page](../README.md), ![a screenshot](../results/report-screenshots/phone-390-top.png),
[a folder](../results/h100/), [a heading](crop.md#config-keys) and [this page's own](#its-second-heading),
[from the root](/Cargo.toml \"a title\"), [a web page](https://example.org/missing.md).
Broken: [a missing page](no-such-page.md) and [a missing heading](crop.md#no-such-heading),
![a missing image](../results/nowhere.png), [outside](../../../etc/hostname).
Not links: `[code](span.md)` and

```
[fenced](block.md)
```

[label]: missing-reference.md
";
    let targets: Vec<String> = link_targets(markdown).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        targets,
        [
            "../README.md",
            "../results/report-screenshots/phone-390-top.png",
            "../results/h100/",
            "crop.md#config-keys",
            "#its-second-heading",
            "/Cargo.toml",
            "https://example.org/missing.md",
            "no-such-page.md",
            "crop.md#no-such-heading",
            "../results/nowhere.png",
            "../../../etc/hostname",
            "missing-reference.md",
        ]
    );
    let broken = broken_links(&root, &page, markdown);
    let expected = [
        "docs/made-up.md:8: no-such-page.md (no such file)",
        "docs/made-up.md:8: crop.md#no-such-heading (no heading #no-such-heading in it)",
        "docs/made-up.md:9: ../results/nowhere.png (no such file)",
        "docs/made-up.md:9: ../../../etc/hostname (outside the repository)",
        "docs/made-up.md:16: missing-reference.md (no such file)",
    ];
    assert_eq!(broken, expected);
}

#[test]
fn heading_anchors_follow_github() {
    assert_eq!(
        heading_anchor("Benchmark: the L2-SVM against scikit-learn's LinearSVC"),
        "benchmark-the-l2-svm-against-scikit-learns-linearsvc"
    );
    assert_eq!(heading_anchor("Evaluation at scale (100,000 photos)"), "evaluation-at-scale-100000-photos");
    let repeated = anchors("# Notes\n\n## Notes\n\n```\n# not a heading\n```\n#nor-this\n");
    assert_eq!(repeated, HashSet::from(["notes".to_owned(), "notes-1".to_owned()]));
}
