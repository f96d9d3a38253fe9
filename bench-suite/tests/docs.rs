//! The README and docs/: every relative link resolves to a file of the repository, the code's
//! references to design notes name pages that exist, and the README stays a five-minute read.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out
}

/// Targets of `[text](target)` links that are neither URLs nor in-page anchors.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or_default().trim();
        if !target.is_empty() && !target.contains("://") && !target.contains(' ') {
            out.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let files = markdown_files();
    assert!(files.len() > 10, "docs/ holds the moved reference: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in relative_links(&text) {
            if !file.parent().unwrap().join(&target).exists() {
                broken.push(format!("{}: {target}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_reader_finds_links_and_skips_urls() {
    assert_eq!(relative_links("see [a](docs/a.md#x) and [b](https://x.org/b) or [c](../c.rs)"), vec!["docs/a.md", "../c.rs"]);
}

#[test]
fn design_notes_the_code_cites_exist() {
    for page in ["harmonization", "protocols", "protocols-images", "datasets", "ours"] {
        assert!(root().join(format!("docs/design/{page}.md")).is_file(), "docs/design/{page}.md");
    }
    // No reference to the design notes outside the repository remains in the code or the data.
    for path in ["bench-suite/protocol.toml", "data-fetch/manifest.toml", "harmonizer/src/lib.rs", "baselines/src/methods/mod.rs", "tools/reference/uda_step.py"] {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        assert!(!text.contains("shared/design/"), "{path} still cites shared/design/");
    }
}

#[test]
fn the_readme_is_a_five_minute_read() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; move reference material to docs/");
    assert!(readme.contains("cargo make test"), "the README names the test command CI runs");
}
