//! Fetching against a local HTTP server that misbehaves on purpose.

mod support;

use data_fetch::download::HttpOptions;
use data_fetch::fetch::{DatasetReport, FetchOptions, Fetcher, FileOutcome, Mirror};
use data_fetch::manifest::Manifest;
use data_fetch::store::Root;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{data, Behaviour, Server};

fn fast_options() -> FetchOptions {
    FetchOptions {
        mirrors: vec![],
        http: HttpOptions {
            retries: 2,
            backoff: Duration::from_millis(20),
            stall_timeout: Duration::from_millis(700),
            connect_timeout: Duration::from_secs(5),
            show_progress: false,
        },
        keep_archives: false,
    }
}

/// A one-file dataset manifest.
fn manifest(dataset: &str, file_toml: &str) -> Manifest {
    let text = format!(
        "version = 1\n[[dataset]]\nname = \"{dataset}\"\nfamily = \"test\"\nkind = \"dataset\"\ndescription = \"test\"\n[[dataset.file]]\n{file_toml}\n"
    );
    Manifest::parse(&text, "test manifest").unwrap()
}

fn urls(list: &[String]) -> String {
    format!("urls = [{}]", list.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", "))
}

/// A tar.gz dataset with image-count checks, served by `urls`.
fn images_manifest(url_list: &[String], sha256: &str) -> Manifest {
    manifest(
        "office",
        &format!(
            "name = \"office.tar.gz\"\n{}\nsha256 = \"{sha256}\"\nunpack = \"tar.gz\"\ncheck = [{{ path = \"amazon/images\", images = 7 }}]\n",
            urls(url_list)
        ),
    )
}

fn fetch(root: &Path, m: &Manifest, options: FetchOptions) -> DatasetReport {
    let fetcher = Fetcher::new(Root::new(root), m, options).unwrap();
    fetcher.fetch(&m.datasets[0].name).unwrap().pop().unwrap()
}

fn assert_installed(report: &DatasetReport, root: &Path) {
    assert!(report.complete(), "{report:#?}");
    let images = root.join("office/amazon/images");
    let n = walk(&images).len();
    assert_eq!(n, 7, "images installed");
    assert!(root.join("office/README.txt").is_file());
    assert!(root.join("office/.data-fetch.json").is_file());
    // No partial download or staging left behind.
    assert!(!root.join(".downloads").exists(), "{:?}", walk(root));
    assert!(!root.join(".staging").exists(), "{:?}", walk(root));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// After a failed fetch only locks (and pins) may remain.
fn assert_nothing_left(root: &Path) {
    let leftovers: Vec<PathBuf> = walk(root)
        .into_iter()
        .filter(|p| !p.starts_with(root.join(".locks")) && !p.ends_with("pinned-checksums.toml"))
        .collect();
    assert!(leftovers.is_empty(), "left in the root: {leftovers:?}");
}

#[test]
fn success_installs_and_checks_image_counts() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
    assert!(matches!(report.files[0].1, FileOutcome::Installed { .. }));
}

#[test]
fn wrong_image_count_is_rejected_before_anything_is_visible() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 6);
    let url = server.route("/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    match &report.files[0].1 {
        FileOutcome::Missing { attempts, .. } => assert!(attempts[0].contains("holds 6 images, expected 7"), "{attempts:?}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_nothing_left(root.path());
}

#[test]
fn resumes_a_download_cut_by_an_earlier_run() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    // What an interrupted earlier fetch left: the first half of the file.
    let downloads = root.path().join(".downloads/office");
    fs::create_dir_all(&downloads).unwrap();
    let half = archive.len() / 2;
    fs::write(downloads.join("office.tar.gz.part"), &archive[..half]).unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
    let requests = server.requests_for("/office.tar.gz");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].range.as_deref(), Some(format!("bytes={half}-").as_str()));
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::IgnoresRange);
    let root = tempfile::tempdir().unwrap();
    let downloads = root.path().join(".downloads/office");
    fs::create_dir_all(&downloads).unwrap();
    // Bytes that do not belong to the file: appending the full body to them would fail the checksum.
    fs::write(downloads.join("office.tar.gz.part"), b"garbage from somewhere else").unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
    assert!(server.requests_for("/office.tar.gz")[0].range.is_some());
}

#[test]
fn not_found_moves_on_to_the_next_mirror() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let dead = server.route("/dead/office.tar.gz", b"", Behaviour::NotFound);
    let good = server.route("/good/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[dead, good.clone()], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
    assert_eq!(server.requests_for("/dead/office.tar.gz").len(), 1, "404 is not retried");
    match &report.files[0].1 {
        FileOutcome::Installed { source, .. } => assert_eq!(source, &good),
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_error_is_retried_on_the_same_mirror() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::FailsFirst(1));
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
    assert_eq!(server.requests_for("/office.tar.gz").len(), 2);
}

#[test]
fn persistent_server_errors_give_up_and_leave_nothing() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::FailsFirst(100));
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    match &report.files[0].1 {
        FileOutcome::Missing { attempts, .. } => assert!(attempts[0].contains("gave up") && attempts[0].contains("500"), "{attempts:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests_for("/office.tar.gz").len(), 3, "1 try + 2 retries");
    assert_nothing_left(root.path());
}

#[test]
fn wrong_checksum_is_rejected_and_nothing_is_left() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let wrong = data::sha256(b"something else");
    let report = fetch(root.path(), &images_manifest(&[url], &wrong), fast_options());
    match &report.files[0].1 {
        FileOutcome::Missing { attempts, .. } => assert!(attempts[0].contains("does not match the published"), "{attempts:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!report.complete());
    assert_nothing_left(root.path());
}

#[test]
fn truncated_body_is_resumed_with_a_range_request() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let cut = archive.len() / 3;
    let url = server.route("/office.tar.gz", &archive, Behaviour::CutsFirstAfter(cut));
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[url], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
    let requests = server.requests_for("/office.tar.gz");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
}

#[test]
fn stalled_server_times_out_then_the_next_mirror_serves() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let stalled = server.route("/slow/office.tar.gz", &archive, Behaviour::Stalls);
    let good = server.route("/good/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let mut options = fast_options();
    options.http.retries = 0;
    let report = fetch(root.path(), &images_manifest(&[stalled, good], &data::sha256(&archive)), options);
    assert_installed(&report, root.path());
    assert_eq!(server.requests_for("/slow/office.tar.gz").len(), 1);
    assert_eq!(server.requests_for("/good/office.tar.gz").len(), 1);
}

#[test]
fn html_interstitial_is_not_taken_for_the_file() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let page = server.route("/drive/office.tar.gz", b"", Behaviour::Html);
    let good = server.route("/good/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let report = fetch(root.path(), &images_manifest(&[page, good], &data::sha256(&archive)), fast_options());
    assert_installed(&report, root.path());
}

#[test]
fn zip_slip_archive_is_rejected() {
    let server = Server::start();
    let archive = data::zip_slip();
    let url = server.route("/evil.zip", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let parent_canary = root.path().parent().unwrap().join("evil.txt");
    let m = manifest("evil", &format!("name = \"evil.zip\"\nurls = [\"{url}\"]\nsha256 = \"{}\"\nunpack = \"zip\"\n", data::sha256(&archive)));
    let report = fetch(root.path(), &m, fast_options());
    match &report.files[0].1 {
        FileOutcome::Missing { attempts, .. } => assert!(attempts[0].contains("escapes the extraction folder"), "{attempts:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!parent_canary.exists());
    assert_nothing_left(root.path());
}

#[test]
fn second_fetch_is_a_no_op() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route("/office.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let m = images_manifest(&[url], &data::sha256(&archive));
    fetch(root.path(), &m, fast_options());
    let before = server.requests().len();
    let again = fetch(root.path(), &m, fast_options());
    assert!(matches!(again.files[0].1, FileOutcome::AlreadyPresent));
    assert_eq!(server.requests().len(), before, "no request on the second fetch");
}

#[test]
fn two_concurrent_fetches_of_one_dataset_download_once() {
    let server = Server::start();
    let archive = data::image_tar_gz("amazon", 7);
    let url = server.route_with_delay("/office.tar.gz", &archive, Behaviour::Normal, Duration::from_millis(400));
    let root = tempfile::tempdir().unwrap();
    let m = images_manifest(&[url], &data::sha256(&archive));
    let reports: Vec<DatasetReport> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| fetch(root.path(), &m, fast_options()))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &reports {
        assert_installed(r, root.path());
    }
    let installed = reports.iter().filter(|r| matches!(r.files[0].1, FileOutcome::Installed { .. })).count();
    let waited = reports.iter().filter(|r| matches!(r.files[0].1, FileOutcome::AlreadyPresent)).count();
    assert_eq!((installed, waited), (1, 1));
    assert_eq!(server.requests_for("/office.tar.gz").len(), 1);
}

#[test]
fn unpublished_checksum_is_pinned_then_a_changed_file_is_refused() {
    let server = Server::start();
    let first = data::blob(5000);
    let url = server.route("/weights.bin", &first, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let m = manifest("vit", &format!("name = \"weights.bin\"\nurls = [\"{url}\"]\nunpack = \"none\"\npayload = {{ path = \"weights.bin\" }}\n"));
    let report = fetch(root.path(), &m, fast_options());
    assert!(report.complete());
    let pins = fs::read_to_string(root.path().join("pinned-checksums.toml")).unwrap();
    assert!(pins.contains(&data::sha256(&first)), "{pins}");
    // Upstream changes the file; a fresh root would accept it, this one must not.
    fs::remove_dir_all(root.path().join("vit")).unwrap();
    let changed = data::blob(5001);
    server.route("/weights.bin", &changed, Behaviour::Normal);
    let report = fetch(root.path(), &m, fast_options());
    match &report.files[0].1 {
        FileOutcome::Missing { attempts, .. } => assert!(attempts[0].contains("pinned"), "{attempts:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!root.path().join("vit").exists());
}

#[test]
fn mirror_folder_with_the_decompressed_payload_is_verified_against_the_payload_checksum() {
    let payload = data::blob(3000);
    let mirror = tempfile::tempdir().unwrap();
    fs::create_dir_all(mirror.path().join("mnist")).unwrap();
    fs::write(mirror.path().join("mnist/train-images"), &payload).unwrap();
    let root = tempfile::tempdir().unwrap();
    let file = format!(
        "name = \"train-images.gz\"\nurls = []\nsha256 = \"{}\"\nunpack = \"gz\"\npayload = {{ path = \"train-images\", size = 3000, sha256 = \"{}\" }}\n",
        data::sha256(b"the gz we do not have"),
        data::sha256(&payload)
    );
    let m = manifest("mnist", &file);
    let mut options = fast_options();
    options.mirrors = vec![Mirror::Dir(mirror.path().to_path_buf())];
    let report = fetch(root.path(), &m, options.clone());
    assert!(report.complete(), "{report:#?}");
    assert_eq!(fs::read(root.path().join("mnist/train-images")).unwrap(), payload);
    // A corrupted payload in the mirror is refused.
    let root2 = tempfile::tempdir().unwrap();
    fs::write(mirror.path().join("mnist/train-images"), data::blob(2999)).unwrap();
    let report = fetch(root2.path(), &m, options);
    match &report.files[0].1 {
        FileOutcome::Missing { attempts, .. } => assert!(attempts[0].contains("does not match"), "{attempts:?}"),
        other => panic!("{other:?}"),
    }
    assert_nothing_left(root2.path());
}

#[test]
fn import_installs_a_hand_downloaded_file_and_rejects_a_foreign_one() {
    let archive = data::image_tar_gz("amazon", 7);
    let dir = tempfile::tempdir().unwrap();
    let by_hand = dir.path().join("download (1).tar.gz");
    fs::write(&by_hand, &archive).unwrap();
    let root = tempfile::tempdir().unwrap();
    let m = images_manifest(&[], &data::sha256(&archive));
    let fetcher = Fetcher::new(Root::new(root.path()), &m, fast_options()).unwrap();
    let report = fetcher.import("office", &by_hand).unwrap();
    assert_installed(&report, root.path());
    let foreign = dir.path().join("other.tar.gz");
    fs::write(&foreign, b"not it").unwrap();
    let err = fetcher.import("office", &foreign).unwrap_err().to_string();
    assert!(err.contains("matches none"), "{err}");
}
