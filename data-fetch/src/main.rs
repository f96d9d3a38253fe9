//! `data-fetch`: downloads, verifies and lays out the datasets and pretrained weights.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use data_fetch::checksum::Pins;
use data_fetch::download::HttpOptions;
use data_fetch::fetch::{FetchOptions, Fetcher, FileOutcome, Mirror};
use data_fetch::inspect;
use data_fetch::manifest::{ChecksumStatus, FileSpec, Kind, Manifest};
use data_fetch::store::Root;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "data-fetch",
    version,
    about = "Downloads, checksums and lays out the suite's datasets and pretrained weights",
    long_about = "Downloads, checksums and lays out the datasets (Digits: MNIST, USPS, SVHN; Office-31; \
                  Office-Home; VisDA-2017; DomainNet) and the pretrained weights (ResNet-50, ResNet-101, \
                  ViT-B/16) the suite trains from.\n\nNothing unverified is ever placed where training \
                  reads: downloads resume into <root>/.downloads, are checked (SHA-256 or the published \
                  MD5; files without a published checksum are pinned on first download), unpacked into \
                  <root>/.staging, image-counted, and only then moved into <root>/<dataset>.\n\nNames: a \
                  dataset (mnist, usps, svhn, office31, officehome, visda2017, domainnet, resnet50, ...), \
                  a family (digits), weights, or all."
)]
struct Cli {
    /// Data root (default: ./data)
    #[arg(long, global = true, env = "GH_DATA_ROOT")]
    root: Option<PathBuf>,
    /// Use this manifest instead of the one built in (data-fetch/manifest.toml)
    #[arg(long, global = true)]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every dataset and weight file: size, checksum status, what is on disk
    List,
    /// Download, verify and unpack a dataset, a family (digits), weights, or all
    Fetch {
        name: String,
        /// Folder (holding the files or their decompressed payloads, flat or in <dataset>/) or base
        /// URL to try before the manifest's mirrors; repeatable, tried in order
        #[arg(long = "mirror", value_name = "DIR|URL")]
        mirrors: Vec<String>,
        /// Keep verified archives in <root>/.downloads after unpacking
        #[arg(long)]
        keep_archives: bool,
        /// Exit 0 even when some files could not be obtained (they are still listed)
        #[arg(long)]
        allow_missing: bool,
        /// Retries per mirror on transient failures (5xx, timeouts, cut connections)
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Seconds without data before a server counts as stalled
        #[arg(long, default_value_t = 60)]
        stall_timeout: u64,
        /// No progress bars
        #[arg(long)]
        quiet: bool,
    },
    /// Re-check what is installed: payload checksums, image counts, files present
    Verify {
        /// A dataset, family, weights or all (default: everything fetched so far)
        name: Option<String>,
    },
    /// Print the folder of a fetched dataset (fails if it is not complete)
    Path {
        name: String,
        /// Print it even when only part of the dataset is fetched
        #[arg(long)]
        partial: bool,
    },
    /// Install a file downloaded by hand (e.g. from a Google Drive page), verified like a download
    Import { name: String, file: PathBuf },
}

fn main() {
    // Die quietly on a closed pipe (`data-fetch list | head`) instead of panicking.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("data-fetch: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let manifest = match &cli.manifest {
        Some(p) => Manifest::load(p)?,
        None => Manifest::embedded()?,
    };
    let root = Root::resolve(cli.root.as_deref())?;
    match cli.command {
        Command::List => list(&manifest, &root),
        Command::Fetch { name, mirrors, keep_archives, allow_missing, retries, stall_timeout, quiet } => {
            let options = FetchOptions {
                mirrors: mirrors.iter().map(|m| Mirror::parse(m)).collect(),
                http: HttpOptions {
                    retries,
                    stall_timeout: Duration::from_secs(stall_timeout.max(1)),
                    show_progress: !quiet,
                    ..HttpOptions::default()
                },
                keep_archives,
            };
            for m in &options.mirrors {
                if let Mirror::Dir(d) = m {
                    if !d.is_dir() {
                        bail!("--mirror {}: no such folder (a mirror is a folder or an http(s):// URL)", d.display());
                    }
                }
            }
            println!("data root: {}", root.path().display());
            let fetcher = Fetcher::new(root, &manifest, options)?;
            let reports = fetcher.fetch(&name)?;
            let mut missing = Vec::new();
            for report in &reports {
                let state = if report.complete() { "complete" } else { "INCOMPLETE" };
                println!("\n{}: {state} ({})", report.dataset, report.dir.display());
                for (file, outcome) in &report.files {
                    match outcome {
                        FileOutcome::AlreadyPresent => println!("  {file:<40} already present (verified earlier)"),
                        FileOutcome::Installed { source, verification, sha256 } => println!(
                            "  {file:<40} installed, {} from {source}{}",
                            describe_verification(verification),
                            sha256.as_deref().map(|s| format!(" (sha256 {s})")).unwrap_or_default()
                        ),
                        FileOutcome::Missing { attempts, manual } => {
                            missing.push(format!("{}/{file}", report.dataset));
                            println!("  {file:<40} MISSING");
                            for a in attempts {
                                println!("      tried {a}");
                            }
                            let spec = manifest.dataset(&report.dataset).and_then(|d| d.files.iter().find(|f| &f.name == file));
                            let how = manual.clone().or_else(|| spec.and_then(|s| s.urls.first().cloned()).map(|u| format!("download {u}")));
                            if let Some(how) = how {
                                println!("      get it: {how}");
                            }
                            println!("      then:   data-fetch import {} <downloaded file>", report.dataset);
                        }
                    }
                }
            }
            if missing.is_empty() {
                println!("\nall files present and verified");
                Ok(0)
            } else {
                println!("\nmissing {} file(s): {}", missing.len(), missing.join(", "));
                Ok(if allow_missing { 0 } else { 1 })
            }
        }
        Command::Verify { name } => {
            let datasets = match &name {
                Some(n) => manifest.select(n)?,
                None => manifest.datasets.iter().collect(),
            };
            let mut bad = 0;
            let mut any = false;
            for d in datasets {
                if name.is_none() && inspect::status(&root, d)? == inspect::Status::Missing {
                    continue;
                }
                any = true;
                let (checked, problems) = inspect::verify(&root, d)?;
                if problems.is_empty() {
                    println!("{}: ok ({checked} file(s) checked)", d.name);
                } else {
                    println!("{}: {} problem(s)", d.name, problems.len());
                    for p in &problems {
                        println!("  {}: {}", p.file, p.what);
                    }
                    bad += 1;
                }
            }
            if !any {
                println!("nothing fetched under {}", root.path().display());
            }
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Path { name, partial } => {
            let d = manifest.dataset(&name).with_context(|| format!("unknown dataset '{name}' (data-fetch list shows them)"))?;
            match inspect::status(&root, d)? {
                inspect::Status::Complete => {}
                inspect::Status::Partial { .. } if partial => {}
                s => bail!(
                    "'{name}' is {} under {}; run: data-fetch fetch {name}{}",
                    s.describe(),
                    root.path().display(),
                    if matches!(s, inspect::Status::Partial { .. }) { " (or pass --partial)" } else { "" }
                ),
            }
            println!("{}", root.dataset_dir(&name).display());
            Ok(0)
        }
        Command::Import { name, file } => {
            if !file.is_file() {
                bail!("{}: no such file", file.display());
            }
            let fetcher = Fetcher::new(root, &manifest, FetchOptions::default())?;
            let report = fetcher.import(&name, &file)?;
            for (f, outcome) in &report.files {
                if let FileOutcome::Installed { verification, .. } = outcome {
                    println!("{name}/{f}: installed, {} ({})", describe_verification(verification), report.dir.display());
                }
            }
            Ok(0)
        }
    }
}

fn describe_verification(v: &data_fetch::checksum::Verification) -> &'static str {
    use data_fetch::checksum::Verification::*;
    match v {
        Sha256 => "SHA-256 verified",
        Md5 => "MD5 verified (SHA-256 recorded)",
        Sha256PrefixAndPin => "SHA-256 prefix and local pin verified",
        Pinned => "matches the local SHA-256 pin",
        PinnedNow => "no published checksum: SHA-256 pinned now",
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn checksum_text(dataset: &str, f: &FileSpec, pins: &Pins) -> String {
    let source = f.checksum_source.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
    let pinned = pins.get(dataset, &f.name).map(|p| format!("; pinned here: {}", &p.sha256));
    match f.checksum_status() {
        ChecksumStatus::Sha256 => format!("sha256 published{source}"),
        ChecksumStatus::Md5 => format!("md5 published{source}; sha256 recorded on fetch"),
        ChecksumStatus::Sha256Prefix => format!(
            "sha256 prefix {} published; full sha256 {}",
            f.sha256_prefix.as_deref().unwrap_or(""),
            pinned.map(|p| p.trim_start_matches("; ").to_owned()).unwrap_or_else(|| "pinned on first download".into())
        ),
        ChecksumStatus::None => {
            pinned.map(|p| format!("none published{}", p)).unwrap_or_else(|| "none published: sha256 pinned on first download".into())
        }
    }
}

fn list(manifest: &Manifest, root: &Root) -> Result<i32> {
    let pins = Pins::load(root.path())?;
    println!("data root: {} (--root or GH_DATA_ROOT)\n", root.path().display());
    for d in &manifest.datasets {
        let kind = match d.kind {
            Kind::Dataset => "dataset",
            Kind::Weights => "weights",
        };
        let status = inspect::status(root, d)?;
        println!("{} [{}, {kind}] {}: {}", d.name, d.family, status.describe(), d.description);
        for f in &d.files {
            let size = f
                .size
                .map(human_size)
                .or_else(|| f.payload.as_ref().and_then(|p| p.size).map(|s| format!("{} unpacked", human_size(s))))
                .unwrap_or_else(|| "size unknown".into());
            println!("  {:<55} {:<22} {}", f.name, size, checksum_text(&d.name, f, &pins));
        }
    }
    let total: usize = manifest.datasets.iter().map(|d| d.files.len()).sum();
    println!("\n{} datasets and weights, {total} files; fetch with: data-fetch fetch <name|family|weights|all>", manifest.datasets.len());
    Ok(0)
}
