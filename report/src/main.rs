//! `report`: tables, charts and claim verdicts from the grid's run records; regression checks.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use report::check;
use std::path::{Path, PathBuf};

/// Aggregates the grid's run records over seeds (mean ± std, n) and writes, per profile, the
/// verdict on each of the paper's claims (report/paper_claims.toml: paired estimates over seeds,
/// 95% intervals; claims.md, claims.tex, claims.csv and a forest plot, claims.png / .svg), LaTeX
/// tables in the paper's layout with the paper's numbers and our differences (last model and
/// best-oracle selection), Table VI (training speed), aggregates.csv, and charts as PNG and SVG
/// with caption files (training speed, GH++ α sensitivity, gradient inner products before/after
/// harmonization, convergence curves). Subcommands check runs against regression thresholds.
///
/// Exit status: 0 done; 1 a regression (`check`); 2 an error (unreadable input, bad arguments).
#[derive(Parser)]
#[command(name = "report", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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

#[derive(Subcommand)]
enum Command {
    /// Check a runs folder against regression thresholds: prints a table (group, check, value,
    /// bound, verdict) and exits 1 on any regression (accuracy below or time above its bound), on a
    /// diverged cell that was expected to complete, on a missing cell and on a group the profile
    /// does not have
    Check {
        /// Folder of the grid to check
        #[arg(long, env = "GH_RUNS", default_value = "runs")]
        runs: PathBuf,
        /// Thresholds (per profile, task, baseline, harmonizer; see ci/thresholds.toml)
        #[arg(long, default_value = "ci/thresholds.toml")]
        thresholds: PathBuf,
        /// Also write the result as JUnit XML (shown by CI systems)
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Also write the result as a markdown table (e.g. a CI job summary)
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Check only this profile's groups (repeatable; default: every profile in the file). A
        /// profile without groups in the file is an error saying how to derive them
        #[arg(long = "profile")]
        profiles: Vec<String>,
    },
    /// Propose thresholds from a trusted run (mean accuracy less max(2 x the seed std pooled over
    /// the baseline's groups, 1 point); 1.25 x the median time; the observed status) for a
    /// maintainer to review and commit
    Thresholds {
        /// Runs folder of the trusted run
        #[arg(long = "from")]
        from: PathBuf,
        /// Profile whose cells to use
        #[arg(long)]
        profile: String,
        /// Where to write the file (default: standard output)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Commit that produced the runs (default: `git rev-parse HEAD`, else "unknown")
        #[arg(long)]
        commit: Option<String>,
        /// Propose no speed bounds (accuracy and status only): for CPU profiles checked on other
        /// machines than the one that measured them
        #[arg(long)]
        no_speed: bool,
    },
    /// Compare two runs folders of one profile: per group the mean per-seed difference of the
    /// final accuracy (B minus A), its 95% interval over seeds, and WORSE where the interval lies
    /// below zero
    Compare {
        /// The reference runs folder (e.g. last night)
        a: PathBuf,
        /// The runs folder to judge (e.g. tonight, or a branch)
        b: PathBuf,
        #[arg(long)]
        profile: String,
    },
}

fn main() {
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match run(Cli::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("report: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        None => generate(&cli.runs, &cli.out, cli.profiles).map(|_| 0),
        Some(Command::Check { runs, thresholds, junit, markdown, profiles }) => {
            let file = check::ThresholdsFile::load(&thresholds)?;
            let rows = check::check(&runs, &file, &profiles)?;
            print!("{}", check::text(&rows));
            if let Some(path) = junit {
                write(&path, &check::junit(&rows))?;
            }
            if let Some(path) = markdown {
                write(&path, &check::markdown(&rows))?;
            }
            Ok(if check::failed(&rows) > 0 { 1 } else { 0 })
        }
        Some(Command::Thresholds { from, profile, out, commit, no_speed }) => {
            let commit = commit.unwrap_or_else(|| {
                std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_else(|| "unknown".to_owned())
            });
            let date = std::process::Command::new("date").arg("+%Y-%m-%d").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
            let proposed = check::propose(&from, &profile, &commit, &date, !no_speed)?;
            let text = format!(
                "# Regression thresholds proposed by `report thresholds --from {} --profile {profile}{}`: review\n# each bound (and its tolerance) before committing; `report check` reads this file.\n\n{}",
                from.display(),
                if no_speed { " --no-speed" } else { "" },
                toml::to_string_pretty(&proposed)?
            );
            match out {
                Some(path) => {
                    write(&path, &text)?;
                    eprintln!("report: wrote {} group(s) to {}", proposed.group.len(), path.display());
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Some(Command::Compare { a, b, profile }) => {
            let rows = check::compare(&a, &b, &profile, 0.95)?;
            if rows.is_empty() {
                bail!("no group of profile {profile} has a finished seed in both {} and {}", a.display(), b.display());
            }
            print!("{}", check::comparison_text(&rows, &a, &b));
            Ok(0)
        }
    }
}

fn generate(runs: &Path, out: &Path, profiles: Vec<String>) -> Result<()> {
    let profiles = if profiles.is_empty() { report::records::profiles(runs)? } else { profiles };
    if profiles.is_empty() {
        bail!("no profile manifests under {}/profiles: run `bench-suite run` (or `cargo make reproduce-all`) first", runs.display());
    }
    for p in &profiles {
        let g = report::generate_profile(runs, out, p)?;
        println!("report {}: {} finished cell(s) ({} diverged), {} without a record yet -> {}", g.profile, g.cells, g.diverged, g.missing, g.dir.display());
        for f in &g.files {
            println!("  {}", f.display());
        }
    }
    Ok(())
}
