//! The image readers and the input pipeline on small datasets written here: each benchmark's
//! layout, your own folders and lists, broken files and lists, colour modes against PIL, the
//! transforms against torchvision, determinism across worker counts, and the decoded cache.
//!
//! The PIL/torchvision comparison runs tools/reference/image_transforms.py with the project venv
//! (`cargo make test` installs torchvision and pillow into it; GH_REFERENCE_PYTHON overrides).

mod support;
use support::{python, workspace};
use baselines::data::benchmarks::{Benchmark, Role, OFFICEHOME_CLASSES};
use baselines::data::decode::{decode_bytes, decode_file, Rgb};
use baselines::data::decoded_cache::CacheMode;
use baselines::data::image_list::ImageList;
use baselines::data::image_task::{load_image_task, LoadOptions};
use baselines::data::pipeline::{with_resizer, HostOutput, PipelineOptions};
use baselines::data::synthetic::write_image_folders;
use baselines::data::transform::{crop_to_chw, finish, resize, CropBox, ImageInput, Mode, ResizeFilter, TrainCrop};
use baselines::data::{Samples, Task};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn jpeg(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3 + seed as u32) as u8, (y * 5) as u8, ((x ^ y) * 2) as u8]));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

fn files(samples: &Samples) -> &std::sync::Arc<baselines::data::pipeline::FileSet> {
    match samples {
        Samples::Files(f) => f,
        Samples::InMemory(_) => panic!("expected files"),
    }
}

fn options(workers: usize, cache: CacheMode, dir: &Path) -> LoadOptions {
    // The queue depth follows the worker count, so that the determinism test varies both.
    LoadOptions { pipeline: PipelineOptions { workers, prefetch: 1 + 3 * (workers - 1) }, cache, cache_dir: Some(dir.join("cache")), cache_progress: None }
}

#[test]
fn office31_reads_sorted_class_folders_and_evaluates_on_the_target_list() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for domain in ["amazon", "webcam"] {
        for (k, class) in ["back_pack", "bike", "calculator"].iter().enumerate() {
            for i in 0..2 {
                jpeg(&root.join(format!("office31/{domain}/images/{class}/frame_{i:04}.jpg")), 20, 16, k as u8);
            }
        }
    }
    // Office-31 has 31 classes: three folders are refused, naming the count.
    let list = ImageList::from_class_folders(&root.join("office31/amazon/images"), None).unwrap();
    assert_eq!(list.classes, vec!["back_pack", "bike", "calculator"]);
    assert_eq!(list.entries[2].label, 1);
    assert!(err_text(Benchmark::Office31.read(root, 0, Role::Train)).contains("31"));
    let t = Task::parse("office31:A-W").unwrap();
    assert!(err_text(load_image_task(root, &t, &ImageInput::PAPER, &options(1, CacheMode::Off, root))).contains("has 31"));
    // A missing domain names the folder and the fetch command.
    let e = err_text(Benchmark::Office31.read(root, 2, Role::Train));
    assert!(e.contains("office31/dslr/images") && e.contains("data-fetch fetch office31"), "{e}");
}

#[test]
fn officehome_uses_its_fixed_class_order() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("officehome/OfficeHomeDataset_10072016/Art");
    for class in OFFICEHOME_CLASSES {
        jpeg(&art.join(class).join("00001.jpg"), 8, 8, 0);
    }
    let list = Benchmark::OfficeHome.read(dir.path(), 0, Role::Train).unwrap();
    assert_eq!(list.classes[0], "Drill");
    assert_eq!(list.classes[64], "Marker");
    assert!(list.entries[0].path.to_string_lossy().contains("/Drill/"));
    std::fs::remove_dir_all(art.join("Mop")).unwrap();
    std::fs::create_dir_all(art.join("Mops")).unwrap();
    let e = err_text(Benchmark::OfficeHome.read(dir.path(), 0, Role::Train));
    assert!(e.contains("\"Mop\"") && e.contains("Mops"), "{e}");
}

#[test]
fn visda_and_domainnet_read_their_lists_and_name_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let visda = root.join("visda2017/validation");
    jpeg(&visda.join("aeroplane/a.jpg"), 8, 8, 0);
    jpeg(&visda.join("truck/b.jpg"), 8, 8, 1);
    std::fs::write(visda.join("image_list.txt"), "aeroplane/a.jpg 0\ntruck/b.jpg 11\n").unwrap();
    let list = Benchmark::Visda2017.read(root, 1, Role::Train).unwrap();
    assert_eq!((list.len(), list.classes.len(), list.classes[11].as_str()), (2, 12, "truck"));
    let cases = [
        ("aeroplane/a.jpg 0\ntruck/b.jpg 12\n", "line 2: label 12 is out of range"),
        ("aeroplane/a.jpg 0\ntruck/b.jpg x\n", "line 2: the label 'x'"),
        ("aeroplane/a.jpg\n", "line 1: expected '<path> <label>'"),
        ("aeroplane/a.jpg 0\naeroplane/missing.jpg 0\n", "line 2: the image"),
        ("aeroplane/a.jpg 0\ntruck/b.jpg 0\n", "line 2: label 0 is given to folder 'truck'"),
    ];
    for (text, expected) in cases {
        std::fs::write(visda.join("image_list.txt"), text).unwrap();
        let e = err_text(Benchmark::Visda2017.read(root, 1, Role::Train));
        assert!(e.contains("image_list.txt") && e.contains(expected), "{expected}: {e}");
    }
    // DomainNet: train and test lists under splits/, paths relative to domainnet/.
    let dn = root.join("domainnet");
    jpeg(&dn.join("clipart/aircraft_carrier/c1.jpg"), 8, 8, 0);
    jpeg(&dn.join("clipart/zigzag/c2.jpg"), 8, 8, 0);
    std::fs::create_dir_all(dn.join("splits")).unwrap();
    std::fs::write(dn.join("splits/clipart_train.txt"), "clipart/aircraft_carrier/c1.jpg 0\n").unwrap();
    std::fs::write(dn.join("splits/clipart_test.txt"), "clipart/zigzag/c2.jpg 344\n").unwrap();
    let train = Benchmark::DomainNet.read(root, 0, Role::Train).unwrap();
    let test = Benchmark::DomainNet.read(root, 0, Role::Test).unwrap();
    assert_eq!((train.len(), test.entries[0].label, train.classes.len()), (1, 344, 345));
    assert!(train.notes[0].contains("344 of 345 classes have no image"));
}

#[test]
fn own_lists_and_folders_form_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_image_folders(&a, 3, 4, 20, 20, false, 1).unwrap();
    write_image_folders(&b, 3, 2, 20, 20, true, 2).unwrap();
    let task = Task::parse(&format!("folder:{}->{}", a.display(), b.display())).unwrap();
    let data = load_image_task(dir.path(), &task, &ImageInput::sized(24, 16).unwrap(), &options(1, CacheMode::Off, dir.path())).unwrap();
    assert_eq!((data.classes, data.source_train.len(), data.target_train.len(), data.target_test.len()), (3, 12, 6, 6));
    // Image lists, paths relative to the list, a path with a space.
    std::fs::create_dir_all(dir.path().join("lists/my images")).unwrap();
    jpeg(&dir.path().join("lists/my images/x.jpg"), 8, 8, 0);
    std::fs::write(dir.path().join("lists/s.txt"), "my images/x.jpg 1\n").unwrap();
    std::fs::write(dir.path().join("lists/t.txt"), "\nmy images/x.jpg 0\n").unwrap();
    let task = Task::parse(&format!("list:{}->{}", dir.path().join("lists/s.txt").display(), dir.path().join("lists/t.txt").display())).unwrap();
    let data = load_image_task(dir.path(), &task, &ImageInput::sized(24, 16).unwrap(), &options(1, CacheMode::Off, dir.path())).unwrap();
    assert_eq!(data.classes, 2);
    // Non-image files in class folders are left out and said so.
    std::fs::write(a.join("class_a/notes.txt"), "x").unwrap();
    let list = ImageList::from_class_folders(&a, None).unwrap();
    assert_eq!(list.len(), 12);
    assert!(list.notes[0].contains("notes.txt"));
}

#[test]
fn broken_images_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("c/ok.jpg");
    jpeg(&good, 64, 48, 3);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("c/truncated.jpg");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let corrupt = dir.path().join("c/corrupt.jpg");
    let mut garbage = bytes[..20].to_vec();
    garbage.extend(std::iter::repeat_n(0x5Au8, 300));
    garbage.extend([0xFF, 0xD9]);
    std::fs::write(&corrupt, &garbage).unwrap();
    let text = dir.path().join("c/not_an_image.png");
    std::fs::write(&text, b"hello").unwrap();
    assert!(decode_file(&good).is_ok());
    for (path, why) in [(&truncated, "truncated"), (&corrupt, ""), (&text, "neither a JPEG nor a PNG")] {
        let e = err_text(decode_file(path));
        assert!(e.contains(&*path.to_string_lossy()) && e.contains(why), "{e}");
    }
    assert!(err_text(decode_file(&dir.path().join("c/missing.jpg"))).contains("missing.jpg"));
    // Through the pipeline, the error also names the list line.
    std::fs::write(dir.path().join("list.txt"), "c/ok.jpg 0\nc/truncated.jpg 1\n").unwrap();
    let task = Task::parse(&format!("list:{}->{}", dir.path().join("list.txt").display(), dir.path().join("list.txt").display())).unwrap();
    let data = load_image_task(dir.path(), &task, &ImageInput::sized(24, 16).unwrap(), &options(1, CacheMode::Off, dir.path())).unwrap();
    let set = match &data.target_test {
        Samples::Files(f) => f.clone(),
        _ => unreachable!(),
    };
    let mut loader = set.eval_stream(8, Device::Cpu);
    let e = err_text(loader.next_batch());
    assert!(e.contains("truncated.jpg") && e.contains("list.txt line 2"), "{e}");
    // The decoded cache refuses to build over it, naming the file.
    let e = err_text(load_image_task(dir.path(), &task, &ImageInput::sized(24, 16).unwrap(), &options(1, CacheMode::Auto, dir.path())));
    assert!(e.contains("truncated.jpg"), "{e}");
    assert!(std::fs::read_dir(dir.path().join("cache")).unwrap().next().is_none(), "nothing half-written is left");
}

#[test]
fn grey_and_alpha_images_become_rgb_like_pils_convert() {
    let grey = image::GrayImage::from_fn(5, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
    let mut png = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let rgb = decode_bytes(&png).unwrap();
    assert_eq!(&rgb.pixels[3 * 7..3 * 8], &[81, 81, 81]);
    let rgba = image::RgbaImage::from_fn(3, 2, |x, _| image::Rgba([10 * x as u8, 20, 30, 0]));
    let mut png = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    // Alpha dropped, not composited (a fully transparent pixel keeps its colour).
    assert_eq!(&decode_bytes(&png).unwrap().pixels[3..6], &[10, 20, 30]);
    let la = image::GrayAlphaImage::from_fn(2, 2, |_, _| image::LumaA([77, 0]));
    let mut png = Vec::new();
    la.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    assert_eq!(&decode_bytes(&png).unwrap().pixels[..3], &[77, 77, 77]);
}


fn hwc_tensor(t: &Tensor) -> (Vec<u8>, Vec<i64>) {
    (Vec::<u8>::try_from(t.flatten(0, -1)).unwrap(), t.size())
}

fn chw_to_hwc(chw: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; chw.len()];
    for c in 0..3 {
        for i in 0..h * w {
            out[i * 3 + c] = chw[c * h * w + i];
        }
    }
    out
}

fn max_and_mean_diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    let mean = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64;
    (max, mean)
}

/// Fraction of values that differ by more than 1.
fn over_one(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x.abs_diff(**y) > 1).count() as f64 / a.len() as f64
}

/// Decoding and every transform against PIL and torchvision on the same files.
#[test]
fn decoding_and_transforms_match_pil_and_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Lossless inputs (PNG) isolate the transforms; JPEGs check the decoder.
    let photo = image::RgbImage::from_fn(300, 220, |x, y| {
        let v = ((x as f64 / 17.0).sin() * 60.0 + (y as f64 / 11.0).cos() * 50.0 + 128.0) as u8;
        image::Rgb([v, (x % 256) as u8, ((x * y) / 97 % 256) as u8])
    });
    photo.save(d.join("photo.png")).unwrap();
    photo.save(d.join("photo.jpg")).unwrap();
    image::imageops::resize(&photo, 640, 480, image::imageops::FilterType::Triangle).save(d.join("large.jpg")).unwrap();
    image::imageops::resize(&photo, 180, 200, image::imageops::FilterType::Triangle).save(d.join("small.png")).unwrap();
    image::DynamicImage::ImageRgb8(photo.clone()).to_luma8().save(d.join("grey.jpg")).unwrap();
    image::DynamicImage::ImageRgb8(photo.clone()).to_luma_alpha8().save(d.join("grey_alpha.png")).unwrap();
    let mut rgba = image::DynamicImage::ImageRgb8(photo.clone()).to_rgba8();
    rgba.pixels_mut().enumerate().for_each(|(k, p)| p.0[3] = (k % 256) as u8);
    rgba.save(d.join("alpha.png")).unwrap();
    let images = ["photo.png", "small.png", "photo.jpg", "large.jpg", "cmyk.jpg", "palette.png", "grey.jpg", "grey_alpha.png", "alpha.png"];
    let boxes: [[u32; 4]; 3] = [[0, 0, 224, 224], [32, 5, 224, 224], [10, 40, 150, 97]];
    let job = serde_json::json!({
        "write": d,
        "images": images.iter().map(|n| d.join(n)).collect::<Vec<_>>(),
        "boxes": boxes,
    });
    std::fs::write(d.join("job.json"), job.to_string()).unwrap();
    let out = d.join("reference.safetensors");
    let status = std::process::Command::new(python())
        .arg(workspace().join("tools/reference/image_transforms.py"))
        .arg(d.join("job.json"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "the reference script failed");
    let theirs: BTreeMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    let get = |k: &str| hwc_tensor(&theirs[k]);
    let mut report = Vec::new();
    for (i, name) in images.iter().enumerate() {
        let ours = decode_file(&d.join(name)).unwrap();
        let (pil, shape) = get(&format!("decoded/{i}"));
        assert_eq!(shape, vec![ours.height as i64, ours.width as i64, 3], "{name}: size");
        let (max, mean) = max_and_mean_diff(&ours.pixels, &pil);
        report.push(format!("decode {name}: max {max}, mean {mean:.3}"));
        if name.ends_with(".png") {
            assert_eq!(max, 0, "{name}: PNG decoding must be exact");
        } else {
            // zune-jpeg and libjpeg-turbo (PIL) differ in IDCT and chroma upsampling rounding.
            assert!(mean < 0.1 && max <= 8, "{name}: decode differs from PIL: max {max}, mean {mean}");
        }
        // Transforms on PIL's own decoding, so that only the transform is compared.
        let (pil_pixels, _) = get(&format!("decoded/{i}"));
        let src = Rgb { width: ours.width, height: ours.height, pixels: pil_pixels };
        for (filter, key) in [(ResizeFilter::Bilinear, "resize_bilinear"), (ResizeFilter::Bicubic, "resize_bicubic")] {
            let resized = with_resizer(|r| resize(r, src.view(), None, 256, 256, filter)).unwrap();
            let reference = get(&format!("{key}/{i}")).0;
            let (max, mean) = max_and_mean_diff(&resized.pixels, &reference);
            let over = over_one(&resized.pixels, &reference);
            report.push(format!("{key} {name}: max {max}, mean {mean:.4}, share off by more than 1: {over:.5}"));
            // Bilinear: within 1 everywhere. Bicubic: within 1 except a few values next to
            // 255→0 jumps, where the two round/clamp bicubic overshoot differently.
            // (The test image wraps 255→0 often, far more than photographs do.)
            let (max_allowed, over_allowed, mean_allowed) = if filter == ResizeFilter::Bilinear { (1, 0.0, 0.15) } else { (255, 0.005, 0.15) };
            assert!(max <= max_allowed && over <= over_allowed && mean < mean_allowed, "{key} {name}: max {max}, mean {mean}, over {over}");
        }
        // Crops and flips on torchvision's resized image: exact.
        let (tv_resized, _) = get(&format!("resize_bilinear/{i}"));
        let resized = Rgb { width: 256, height: 256, pixels: tv_resized };
        let input = ImageInput::PAPER;
        let mut chw = vec![0u8; 3 * 224 * 224];
        with_resizer(|r| finish(r, resized.view(), &input, Mode::Test, &mut baselines::data::transform::sample_rng(0, 0, 0), &mut chw)).unwrap();
        assert_eq!(chw_to_hwc(&chw, 224, 224), get(&format!("center/{i}")).0, "{name}: centre crop");
        for (b, [top, left, height, width]) in boxes.iter().copied().enumerate() {
            let bx = CropBox { top, left, height, width };
            let mut chw = vec![0u8; 3 * (height * width) as usize];
            crop_to_chw(resized.view(), bx, false, &mut chw);
            assert_eq!(chw_to_hwc(&chw, height as usize, width as usize), get(&format!("crop/{i}/{b}")).0, "{name}: crop {b}");
            crop_to_chw(resized.view(), bx, true, &mut chw);
            assert_eq!(chw_to_hwc(&chw, height as usize, width as usize), get(&format!("crop_flip/{i}/{b}")).0, "{name}: crop+flip {b}");
            let rc = with_resizer(|r| resize(r, resized.view(), Some(bx), 224, 224, ResizeFilter::Bilinear)).unwrap();
            let reference = get(&format!("resized_crop/{i}/{b}")).0;
            let (max, mean) = max_and_mean_diff(&rc.pixels, &reference);
            let over = over_one(&rc.pixels, &reference);
            report.push(format!("resized_crop {name} box {b}: max {max}, mean {mean:.4}, share off by more than 1: {over:.5}"));
            assert!(max <= 2 && over < 0.001 && mean < 0.05, "resized crop {name} {b}: max {max}, mean {mean}");
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// The same (task, seed) gives the same batches whatever the workers and queue depth; the cache
/// gives the same pixels as decoding; a changed file rebuilds the cache; a truncated cache is
/// rebuilt, never used.
#[test]
fn batches_are_deterministic_and_the_cache_is_rebuilt_when_it_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_image_folders(&a, 3, 7, 40, 30, false, 1).unwrap();
    write_image_folders(&b, 3, 5, 30, 40, true, 2).unwrap();
    let task = Task::parse(&format!("folder:{}->{}", a.display(), b.display())).unwrap();
    let mut input = ImageInput::sized(36, 32).unwrap();
    input.source_crop = TrainCrop::RandomResizedCrop;
    let batches = |workers: usize, cache: CacheMode| -> Vec<Vec<u8>> {
        let data = load_image_task(dir.path(), &task, &input, &options(workers, cache, dir.path())).unwrap();
        let set = match &data.source_train {
            Samples::Files(f) => f.clone(),
            _ => unreachable!(),
        };
        let mut loader = set.train_stream_as(8, 42, Mode::Train(TrainCrop::RandomResizedCrop), Device::Cpu, HostOutput::Uint8);
        // 21 images, batch 8: two batches per pass (drop_last), so five batches span three passes.
        (0..5).map(|_| Vec::<u8>::try_from(loader.next_raw().unwrap().unwrap().0.flatten(0, -1)).unwrap()).collect()
    };
    let one = batches(1, CacheMode::Off);
    assert_eq!(one, batches(2, CacheMode::Off), "worker count and queue depth changed the batches");
    assert_eq!(one, batches(3, CacheMode::Off), "worker count and queue depth changed the batches");
    assert_ne!(one[0], one[2], "a new pass reshuffles");
    let cached = batches(2, CacheMode::Auto);
    assert_eq!(one, cached, "the decoded cache changed the pixels");
    let cache_files = |_: ()| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path().join("cache")).unwrap().flatten().map(|e| e.path()).collect();
        v.sort();
        v
    };
    let before = cache_files(());
    assert_eq!(before.len(), 2);
    // A changed source image: a new cache for the source list (new key), same for the target.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let first = a.join("class_a/0000.jpg");
    jpeg(&first, 40, 30, 99);
    let changed = batches(1, CacheMode::Auto);
    assert_ne!(changed, one);
    assert_eq!(changed, batches(1, CacheMode::Off), "the rebuilt cache matches decoding");
    assert_eq!(cache_files(()).len(), 3);
    // A truncated cache is rebuilt.
    let newest = cache_files(()).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap()).unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&newest).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    assert_eq!(batches(1, CacheMode::Auto), changed);
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), len, "the truncated cache was rebuilt in place");
}

#[test]
fn normalised_batches_use_imagenet_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    write_image_folders(&a, 2, 2, 16, 16, false, 1).unwrap();
    let task = Task::parse(&format!("folder:{}->{}", a.display(), a.display())).unwrap();
    let data = load_image_task(dir.path(), &task, &ImageInput::sized(16, 16).unwrap(), &options(1, CacheMode::Off, dir.path())).unwrap();
    // (Loaded with the cache off: every image is decoded.)
    let arc = files(&data.target_test).clone();
    // uint8 (normalised on the device) and float normalised by the workers (CPU training): the
    // same numbers as torchvision's Normalize(ToTensor(x)).
    let mode = Mode::Train(TrainCrop::CenterCrop);
    let (raw, _) = arc.train_stream_as(4, 1, mode, Device::Cpu, HostOutput::Uint8).next_raw().unwrap().unwrap();
    assert_eq!(raw.kind(), tch::Kind::Uint8);
    let expected = (raw.to_kind(tch::Kind::Float) / 255.0 - Tensor::from_slice(&[0.485f32, 0.456, 0.406]).view([1, 3, 1, 1]))
        / Tensor::from_slice(&[0.229f32, 0.224, 0.225]).view([1, 3, 1, 1]);
    for output in [HostOutput::Uint8, HostOutput::Normalised] {
        let (norm, labels) = arc.train_stream_as(4, 1, mode, Device::Cpu, output).next_batch().unwrap().unwrap();
        assert_eq!(labels.size(), vec![4]);
        assert_eq!(norm.kind(), tch::Kind::Float);
        assert!(norm.allclose(&expected, 1e-5, 1e-5, false), "{output:?}");
    }
}
