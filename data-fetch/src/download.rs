//! HTTP downloads that resume (Range), retry with backoff, and give up on a mirror when it cannot
//! serve the file, so the next mirror is tried.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Attempts per mirror after the first (transient failures only: 5xx, 429, timeouts, cuts).
    pub retries: u32,
    /// Wait before the first retry; doubles each time, capped at 60 s.
    pub backoff: Duration,
    /// A read (or the response headers) taking longer than this counts as a stalled server.
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    pub show_progress: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            retries: 3,
            backoff: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(20),
            show_progress: true,
        }
    }
}

/// Why a mirror could not deliver the file.
#[derive(Debug)]
pub enum MirrorError {
    /// The mirror does not have it (404, 403, an HTML page instead of the file, ...): no retry.
    Unavailable(String),
    /// Retries exhausted on transient failures.
    GaveUp(String),
    /// Local I/O failed (disk full, permissions): stop, no other mirror will help.
    Local(anyhow::Error),
}

impl std::fmt::Display for MirrorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrorError::Unavailable(m) => write!(f, "{m}"),
            MirrorError::GaveUp(m) => write!(f, "gave up after retries: {m}"),
            MirrorError::Local(e) => write!(f, "{e:#}"),
        }
    }
}

pub fn client(opts: &HttpOptions) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .user_agent(concat!("gh-suite-data-fetch/", env!("CARGO_PKG_VERSION")))
        .timeout(opts.stall_timeout)
        .connect_timeout(opts.connect_timeout)
        .build()?)
}

enum Attempt {
    Done,
    /// Retry (after backoff), keeping what is in the part file.
    Transient(String),
    Permanent(String),
}

/// Downloads `url` into `part`, resuming from what `part` already holds.
pub fn download(client: &Client, url: &str, part: &Path, label: &str, opts: &HttpOptions) -> Result<(), MirrorError> {
    let bar = progress_bar(label, opts.show_progress);
    let mut last = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            let wait = opts.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(60));
            bar.println(format!("  {label}: {last}; retrying in {:.1} s ({attempt}/{})", wait.as_secs_f64(), opts.retries));
            std::thread::sleep(wait);
        }
        match try_once(client, url, part, &bar) {
            Ok(Attempt::Done) => {
                bar.finish_and_clear();
                return Ok(());
            }
            Ok(Attempt::Transient(why)) => last = why,
            Ok(Attempt::Permanent(why)) => {
                bar.finish_and_clear();
                return Err(MirrorError::Unavailable(why));
            }
            Err(local) => {
                bar.finish_and_clear();
                return Err(MirrorError::Local(local));
            }
        }
    }
    bar.finish_and_clear();
    Err(MirrorError::GaveUp(last))
}

fn progress_bar(label: &str, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    bar
}

fn part_len(part: &Path) -> u64 {
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

fn try_once(client: &Client, url: &str, part: &Path, bar: &ProgressBar) -> anyhow::Result<Attempt> {
    let have = part_len(part);
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = match request.send() {
        Ok(r) => r,
        Err(e) if e.is_builder() => return Ok(Attempt::Permanent(format!("bad URL: {e}"))),
        // An unknown host stays unknown for the seconds a retry would wait: next mirror.
        Err(e) if describe(&e).contains("dns error") => return Ok(Attempt::Permanent(describe(&e))),
        Err(e) => return Ok(Attempt::Transient(describe(&e))),
    };
    let status = response.status();
    let (mut file, start, total) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let (start, total) = parse_content_range(response.headers().get(CONTENT_RANGE));
            if start != Some(have) {
                truncate(part)?;
                return Ok(Attempt::Transient(format!("server resumed at {start:?} instead of {have}; restarting")));
            }
            (OpenOptions::new().append(true).open(part)?, have, total)
        }
        StatusCode::OK => {
            if have > 0 {
                // The server ignored Range: start over rather than append the whole file.
                bar.println(format!("  {url}: server ignores Range; restarting from byte 0"));
            }
            let total = response.content_length();
            (File::create(part)?, 0, total)
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let (_, total) = parse_content_range(response.headers().get(CONTENT_RANGE));
            if total == Some(have) {
                return Ok(Attempt::Done);
            }
            truncate(part)?;
            return Ok(Attempt::Transient(format!("range {have}- not satisfiable (size {total:?}); restarting")));
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT => {
            return Ok(Attempt::Transient(format!("HTTP {s}")));
        }
        s => return Ok(Attempt::Permanent(format!("HTTP {s}"))),
    };
    let is_html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        truncate(part)?;
        return Ok(Attempt::Permanent(
            "the server sent an HTML page instead of the file (a login or Google Drive confirmation page?)".into(),
        ));
    }
    bar.set_length(total.unwrap_or(0));
    bar.set_position(start);
    let mut buf = vec![0u8; 1 << 16];
    let mut written = start;
    loop {
        match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                file.write_all(&buf[..n])?;
                written += n as u64;
                bar.set_position(written);
            }
            Err(e) => {
                file.sync_all()?;
                return Ok(Attempt::Transient(format!("connection broke after {written} bytes ({e})")));
            }
        }
    }
    file.sync_all()?;
    match total {
        Some(t) if written < t => Ok(Attempt::Transient(format!("body ended at {written} of {t} bytes"))),
        Some(t) if written > t => {
            truncate(part)?;
            Ok(Attempt::Transient(format!("received {written} bytes, more than the announced {t}; restarting")))
        }
        _ => Ok(Attempt::Done),
    }
}

fn truncate(part: &Path) -> std::io::Result<()> {
    File::create(part).map(|_| ())
}

/// `bytes a-b/total` -> (a, total); `bytes */total` -> (None, total).
fn parse_content_range(value: Option<&reqwest::header::HeaderValue>) -> (Option<u64>, Option<u64>) {
    let Some(s) = value.and_then(|v| v.to_str().ok()) else { return (None, None) };
    let Some(rest) = s.trim().strip_prefix("bytes ") else { return (None, None) };
    let (range, total) = rest.split_once('/').unwrap_or((rest, "*"));
    let start = range.split_once('-').and_then(|(a, _)| a.trim().parse().ok());
    (start, total.trim().parse().ok())
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out (stalled server?)"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The innermost cause says what happened ("dns error: ...", "Connection refused").
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let dns = if format!("{e:?}").contains("Dns") || cause.contains("lookup address") { " (dns error)" } else { "" };
    format!("{kind}{dns}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_content_range_forms() {
        let v = HeaderValue::from_static("bytes 100-199/500");
        assert_eq!(parse_content_range(Some(&v)), (Some(100), Some(500)));
        let v = HeaderValue::from_static("bytes */500");
        assert_eq!(parse_content_range(Some(&v)), (None, Some(500)));
        assert_eq!(parse_content_range(None), (None, None));
    }
}
