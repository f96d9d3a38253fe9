//! The digits readers on small files written here, well-formed and malformed.

use baselines::data::synthetic::{idx_images, idx_labels, libsvm_text};
use baselines::data::{load, mnist, svhn, usps, DigitsFormat, Domain, Split};
use std::io::Write;
use std::path::Path;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn bz2(bytes: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn mnist_idx_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 251) as u8).collect();
    let plain = dir.path().join("images");
    std::fs::write(&plain, idx_images(&pixels, 3, 28)).unwrap();
    let compressed = dir.path().join("images.gz");
    std::fs::write(&compressed, gz(&idx_images(&pixels, 3, 28))).unwrap();
    for p in [&plain, &compressed] {
        let images = mnist::read_images(p).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (3, 28, 28));
        assert_eq!(images.pixels, pixels);
    }
    let labels = dir.path().join("labels");
    std::fs::write(&labels, idx_labels(&[7, 0, 9])).unwrap();
    assert_eq!(mnist::read_labels(&labels).unwrap(), vec![7, 0, 9]);
}

#[test]
fn malformed_idx_errors_name_file_offset_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad-images");
    let mut bytes = idx_images(&[0u8; 2 * 28 * 28], 2, 28);
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&p, &bytes).unwrap();
    let e = err_text(mnist::read_images(&p));
    assert!(e.contains("bad-images") && e.contains("offset 16") && e.contains("truncated"), "{e}");

    std::fs::write(&p, b"PK\x03\x04 this is a zip").unwrap();
    let e = err_text(mnist::read_images(&p));
    assert!(e.contains("offset 0") && e.contains("IDX magic"), "{e}");

    std::fs::write(&p, idx_labels(&[1, 2])).unwrap();
    let e = err_text(mnist::read_images(&p));
    assert!(e.contains("offset 3") && e.contains("expected 3"), "{e}");

    let l = dir.path().join("bad-labels");
    std::fs::write(&l, idx_labels(&[1, 12])).unwrap();
    let e = err_text(mnist::read_labels(&l));
    assert!(e.contains("bad-labels") && e.contains("offset 9") && e.contains("not a digit"), "{e}");

    std::fs::write(&l, [0x1f, 0x8b, 0x08, 0, 1, 2]).unwrap();
    let e = err_text(mnist::read_labels(&l));
    assert!(e.contains("bad-labels") && e.contains("gzip"), "{e}");
}

#[test]
fn usps_libsvm_bzip2_and_plain() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 256).map(|i| (i % 256) as u8).collect();
    let text = libsvm_text(&pixels, &[3, 0], 16);
    let p = dir.path().join("usps.t.bz2");
    std::fs::write(&p, bz2(text.as_bytes())).unwrap();
    let d = usps::read(&p).unwrap();
    assert_eq!(d.count, 2);
    assert_eq!(d.labels, vec![3, 0]);
    // (v+1)/2·255 truncated, v = p/255·2−1 written with 6 decimals: within one grey level.
    for (a, b) in d.pixels.iter().zip(&pixels) {
        assert!((*a as i32 - *b as i32).abs() <= 1, "{a} vs {b}");
    }
    // Omitted indices are zeros (mid grey).
    let sparse = dir.path().join("sparse");
    std::fs::write(&sparse, "1 1:1.0 256:-1.0\n").unwrap();
    let d = usps::read(&sparse).unwrap();
    assert_eq!((d.pixels[0], d.pixels[1], d.pixels[255]), (255, 127, 0));
}

#[test]
fn malformed_usps_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("usps.txt");
    let check = |text: &str, want: &[&str]| {
        std::fs::write(&p, text).unwrap();
        let e = err_text(usps::read(&p));
        for w in want {
            assert!(e.contains(w), "missing '{w}' in: {e}");
        }
    };
    check("1 1:0.5\n11 1:0.5\n", &["usps.txt:2:1", "1..10"]);
    check("1 1:0.5\n2 1:0.5 2:x\n", &["usps.txt:2:9", "value 'x'"]);
    check("1 1:0.5 1:0.2\n", &["usps.txt:1:9", "out of order"]);
    check("1 257:0.5\n", &["usps.txt:1:3", "outside 1..=256"]);
    check("1 1:3.5\n", &["outside [-1, 1]"]);
    check("1 1-0.5\n", &["usps.txt:1:3", "index:value"]);
    check("\n\n", &["no images"]);
}

/// A MATLAB 5 file with X (uint8 32×32×3×n) and y (double n×1), optionally zlib-compressed.
fn mat_file(x: &[u8], y: &[f64], n: usize, compress: bool) -> Vec<u8> {
    fn element(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(kind.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        out
    }
    fn matrix(name: &str, class: u32, dims: &[u32], data_kind: u32, data: &[u8]) -> Vec<u8> {
        let mut body = element(6, &[class.to_le_bytes(), 0u32.to_le_bytes()].concat());
        body.extend(element(5, &dims.iter().flat_map(|d| (*d as i32).to_le_bytes()).collect::<Vec<u8>>()));
        body.extend(element(1, name.as_bytes()));
        body.extend(element(data_kind, data));
        element(14, &body)
    }
    let mut header = format!("MATLAB 5.0 MAT-file, written by the suite's tests").into_bytes();
    header.resize(116, b' ');
    header.extend([0u8; 8]);
    header.extend(0x0100u16.to_le_bytes());
    header.extend(b"IM");
    let x_el = matrix("X", 9, &[32, 32, 3, n as u32], 2, x);
    let y_el = matrix("y", 6, &[y.len() as u32, 1], 9, &y.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    for el in [x_el, y_el] {
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&el).unwrap();
            let zbytes = z.finish().unwrap();
            header.extend(15u32.to_le_bytes());
            header.extend((zbytes.len() as u32).to_le_bytes());
            header.extend(zbytes);
        } else {
            header.extend(el);
        }
    }
    header
}

#[test]
fn svhn_mat_plain_and_compressed_in_image_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2;
    // Column-major X(r, c, ch, k): value encodes its coordinates.
    let mut x = vec![0u8; 32 * 32 * 3 * n];
    for k in 0..n {
        for ch in 0..3 {
            for c in 0..32 {
                for r in 0..32 {
                    x[r + 32 * c + 1024 * ch + 3072 * k] = ((r * 7 + c * 3 + ch * 50 + k * 100) % 256) as u8;
                }
            }
        }
    }
    for compress in [false, true] {
        let p = dir.path().join(format!("svhn-{compress}.mat"));
        std::fs::write(&p, mat_file(&x, &[10.0, 3.0], n, compress)).unwrap();
        let d = svhn::read(&p).unwrap();
        assert_eq!(d.count, 2);
        assert_eq!(d.labels, vec![0, 3], "label 10 means digit 0");
        // Row-major [k][ch][r][c].
        let at = |k: usize, ch: usize, r: usize, c: usize| d.pixels[k * 3072 + ch * 1024 + r * 32 + c];
        assert_eq!(at(1, 2, 5, 9), ((5 * 7 + 9 * 3 + 2 * 50 + 100) % 256) as u8);
        assert_eq!(at(0, 0, 31, 0), ((31 * 7) % 256) as u8);
    }
}

#[test]
fn malformed_svhn_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("svhn.mat");
    std::fs::write(&p, b"short").unwrap();
    assert!(err_text(svhn::read(&p)).contains("128-byte"));
    let mut not_mat = vec![b'x'; 200];
    not_mat[..5].copy_from_slice(b"HELLO");
    std::fs::write(&p, &not_mat).unwrap();
    let e = err_text(svhn::read(&p));
    assert!(e.contains("svhn.mat") && e.contains("offset 0") && e.contains("MATLAB"), "{e}");
    let x = vec![0u8; 3072];
    std::fs::write(&p, mat_file(&x, &[11.0], 1, false)).unwrap();
    let e = err_text(svhn::read(&p));
    assert!(e.contains("y(1) = 11"), "{e}");
    std::fs::write(&p, mat_file(&x, &[1.0, 2.0], 1, false)).unwrap();
    let e = err_text(svhn::read(&p));
    assert!(e.contains("2 labels for 1 images"), "{e}");
    let mut garbage = mat_file(&x, &[1.0], 1, false);
    garbage.truncate(300);
    std::fs::write(&p, &garbage).unwrap();
    let e = err_text(svhn::read(&p));
    assert!(e.contains("svhn.mat") && e.contains("truncated"), "{e}");
}

#[test]
fn load_resizes_usps_to_the_task_format() {
    let dir = tempfile::tempdir().unwrap();
    baselines::data::synthetic::write_fake_digits_root(dir.path(), 20, 10, 1).unwrap();
    let set = load(dir.path(), Domain::Usps, Split::Test, DigitsFormat::Grey28, tch::Device::Cpu).unwrap();
    assert_eq!(set.images.size(), vec![10, 1, 28, 28]);
    let rgb = load(dir.path(), Domain::Mnist, Split::Train, DigitsFormat::Rgb32, tch::Device::Cpu).unwrap();
    assert_eq!(rgb.images.size(), vec![20, 3, 32, 32]);
    let missing = load(Path::new("/nonexistent"), Domain::Mnist, Split::Train, DigitsFormat::Grey28, tch::Device::Cpu);
    assert!(err_text(missing).contains("/nonexistent/mnist/train-images-idx3-ubyte"));
}

/// The published split sizes that data-derived epochs are planned from (before any data is read)
/// are what the readers find in the real files: checked on the project's copies of MNIST (both
/// splits) and the USPS test split (`../shared/datasets`, beside the checkout and CI's clone).
#[test]
fn planned_split_sizes_match_the_real_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets");
    if !root.is_dir() {
        eprintln!("skipped: no {} (the real MNIST / USPS files)", root.display());
        return;
    }
    for (domain, split) in [(Domain::Mnist, Split::Train), (Domain::Mnist, Split::Test), (Domain::Usps, Split::Test)] {
        let set = load(&root, domain, split, DigitsFormat::Grey28, tch::Device::Cpu).unwrap();
        assert_eq!(set.len() as usize, domain.split_size(split), "{} {}", domain.name(), split.name());
    }
}
