//! The records published in results/<profile>/ render to the report committed beside them, and the
//! README's headline table is that report's headline.md: the numbers the README states cannot
//! drift from the records. After adding cells (tools/publish-results.sh), regenerate with
//! UPDATE_PUBLISHED=1.

use std::path::{Path, PathBuf};

const PROFILE: &str = "digits-paper-cdan";
const TEXT_OUTPUTS: [&str; 7] = ["headline.md", "claims.md", "table_digits_last.tex", "table_digits_best.tex", "aggregates.csv", "index.md", "time_split.md"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn published_records_render_to_the_committed_report_and_readme() {
    let results = root().join("results").join(PROFILE);
    let committed = results.join("report");
    let out = tempfile::tempdir().unwrap();
    let g = report::generate_profile(&results, out.path(), PROFILE).unwrap();
    assert!(g.cells > 0, "no published cells under {}", results.display());
    let update = std::env::var_os("UPDATE_PUBLISHED").is_some();
    for name in TEXT_OUTPUTS {
        let produced = std::fs::read_to_string(g.dir.join(name)).unwrap();
        let file = committed.join(name);
        if update {
            std::fs::create_dir_all(&committed).unwrap();
            std::fs::write(&file, &produced).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("missing {}; run with UPDATE_PUBLISHED=1", file.display()));
        assert!(produced == expected, "{name} rendered from the records differs from {}:\n--- rendered\n{produced}\n--- committed\n{expected}", file.display());
    }
    // The README quotes headline.md between its markers, verbatim.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = format!("<!-- headline:{PROFILE} -->\n");
    let end = "<!-- /headline -->";
    let from = readme.find(&start).unwrap_or_else(|| panic!("README.md has no {start:?} marker")) + start.len();
    let to = from + readme[from..].find(end).expect("README.md's headline has no end marker");
    let headline = std::fs::read_to_string(g.dir.join("headline.md")).unwrap();
    assert_eq!(&readme[from..to], headline, "README.md's headline table differs from the records' headline.md");
    // Under 30 MB in all, so the repository stays light.
    let bytes: u64 = walk(&results).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(bytes < 30 << 20, "results/{PROFILE} holds {bytes} bytes");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
