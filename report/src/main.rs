//! `report`: tables and charts from the grid's run records.

use anyhow::{bail, Result};
use clap::Parser;
use std::path::PathBuf;

/// Aggregates the grid's run records over seeds (mean ± std, n) and writes, per profile, the
/// verdict on each of the paper's claims (report/paper_claims.toml: paired estimates over seeds,
/// 95% intervals; claims.md, claims.tex, claims.csv and a forest plot, claims.png / .svg), LaTeX
/// tables in the paper's layout with the paper's numbers and our differences (last model and
/// best-oracle selection), Table VI (training speed), aggregates.csv, and charts as PNG and SVG
/// (training speed, GH++ α sensitivity, gradient inner products before/after harmonization,
/// convergence curves).
#[derive(Parser)]
#[command(name = "report", version)]
struct Cli {
    /// Folder of the grid (as written by `bench-suite run`)
    #[arg(long, env = "GH_RUNS", default_value = "runs")]
    runs: PathBuf,
    /// Output folder; each profile gets a subfolder
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// Profiles to report (default: every profile with a manifest under <runs>/profiles)
    #[arg(long = "profile")]
    profiles: Vec<String>,
}

fn main() {
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Err(e) = run(Cli::parse()) {
        eprintln!("report: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let profiles = if cli.profiles.is_empty() { report::records::profiles(&cli.runs)? } else { cli.profiles };
    if profiles.is_empty() {
        bail!("no profile manifests under {}/profiles: run `bench-suite run` (or `cargo make reproduce-all`) first", cli.runs.display());
    }
    for p in &profiles {
        let g = report::generate_profile(&cli.runs, &cli.out, p)?;
        println!(
            "report {}: {} finished cell(s) ({} diverged), {} without a record yet -> {}",
            g.profile,
            g.cells,
            g.diverged,
            g.missing,
            g.dir.display()
        );
        for f in &g.files {
            println!("  {}", f.display());
        }
    }
    Ok(())
}
