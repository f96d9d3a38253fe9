//! Safe unpacking of tar, tar.gz, zip, gz and bz2.
//!
//! Archives are unpacked into a staging folder that nothing reads from. An entry that would land
//! outside it (absolute path, `..`, a link pointing out) stops the whole extraction with an error
//! naming the entry; device files and other special entries are refused likewise.

use crate::manifest::Unpack;
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Component, Path, PathBuf};

/// Decompresses a single-file `.gz` or `.bz2` (multi-member streams included) into `out`.
pub fn decompress(kind: Unpack, archive: &Path, out: &Path) -> Result<()> {
    let input = BufReader::new(File::open(archive).with_context(|| format!("opening {}", archive.display()))?);
    let mut reader: Box<dyn Read> = match kind {
        Unpack::Gz => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Unpack::Bz2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        other => bail!("internal: decompress called for {other:?}"),
    };
    let mut writer = BufWriter::new(File::create(out).with_context(|| format!("creating {}", out.display()))?);
    io::copy(&mut reader, &mut writer)
        .with_context(|| format!("decompressing {} ({kind:?}): corrupt or truncated", archive.display()))?;
    writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Unpacks a tar, tar.gz or zip archive into `dest` (which must exist). Returns the number of
/// regular files written.
pub fn unpack_tree(kind: Unpack, archive: &Path, dest: &Path) -> Result<u64> {
    let open = || File::open(archive).with_context(|| format!("opening {}", archive.display()));
    let result = match kind {
        Unpack::Tar => unpack_tar(tar::Archive::new(BufReader::new(open()?)), dest),
        Unpack::TarGz => unpack_tar(tar::Archive::new(flate2::read::MultiGzDecoder::new(BufReader::new(open()?))), dest),
        Unpack::Zip => unpack_zip(open()?, dest),
        other => bail!("internal: unpack_tree called for {other:?}"),
    };
    result.with_context(|| format!("unpacking {}", archive.display()))
}

/// The entry's path as a safe relative path, or an error naming it.
fn safe_relative(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                bail!("entry '{}' escapes the extraction folder (absolute path or '..'); refusing this archive", raw.display())
            }
        }
    }
    if out.as_os_str().is_empty() {
        bail!("entry with an empty path");
    }
    Ok(out)
}

/// A link target must stay inside: relative and without `..` (stricter than needed, and links
/// are rare in datasets; a chain of inside links cannot then reach outside).
fn check_link_target(entry: &Path, target: &Path) -> Result<()> {
    if target.is_absolute() || target.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        bail!(
            "link '{}' -> '{}' points outside the extraction folder (absolute or '..'); refusing this archive",
            entry.display(),
            target.display()
        );
    }
    Ok(())
}

fn unpack_tar<R: Read>(mut archive: tar::Archive<R>, dest: &Path) -> Result<u64> {
    let mut files = 0;
    for entry in archive.entries()? {
        let mut entry = entry.context("reading the next tar entry (truncated or corrupt archive?)")?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw)?;
        let out = dest.join(&rel);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => fs::create_dir_all(&out)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                create_parent(&out)?;
                let mut w = BufWriter::new(File::create(&out).with_context(|| format!("creating {}", out.display()))?);
                io::copy(&mut entry, &mut w).with_context(|| format!("writing {} (truncated archive?)", rel.display()))?;
                w.into_inner().map_err(|e| e.into_error())?;
                files += 1;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name()?.context("link without a target")?.into_owned();
                check_link_target(&raw, &target)?;
                create_parent(&out)?;
                if kind == tar::EntryType::Symlink {
                    std::os::unix::fs::symlink(&target, &out)?;
                } else {
                    fs::hard_link(dest.join(safe_relative(&target)?), &out)
                        .with_context(|| format!("hard link {} -> {}", rel.display(), target.display()))?;
                    files += 1;
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {}
            other => bail!("entry '{}' has type {other:?} (device, fifo, ...); refusing this archive", raw.display()),
        }
    }
    Ok(files)
}

fn unpack_zip(file: File, dest: &Path) -> Result<u64> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).context("not a readable zip archive (truncated?)")?;
    let mut files = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let raw = PathBuf::from(entry.name().map_err(|e| anyhow::anyhow!("entry {i}: undecodable name ({e})"))?.into_owned());
        let rel = match entry.enclosed_name() {
            Some(p) => safe_relative(&p)?,
            None => bail!("entry '{}' escapes the extraction folder (absolute path or '..'); refusing this archive", raw.display()),
        };
        // Re-check the raw name too: enclosed_name normalises some '..' away.
        safe_relative(&raw)?;
        let out = dest.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&out)?;
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry.read_to_string(&mut target)?;
            check_link_target(&raw, Path::new(&target))?;
            create_parent(&out)?;
            std::os::unix::fs::symlink(&target, &out)?;
        } else {
            create_parent(&out)?;
            let mut w = BufWriter::new(File::create(&out).with_context(|| format!("creating {}", out.display()))?);
            io::copy(&mut entry, &mut w).with_context(|| format!("writing {} (corrupt archive?)", rel.display()))?;
            w.into_inner().map_err(|e| e.into_error())?;
            files += 1;
        }
    }
    Ok(files)
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p),
        None => Ok(()),
    }
}

/// Image files (.jpg, .jpeg, .png, any case) under `dir`, recursively, links not followed.
pub fn count_images(dir: &Path) -> Result<u64> {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                let name = entry.file_name();
                let ext = Path::new(&name).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
                if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
                    count += 1;
                }
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses '..'; write the raw name like a hostile archive would.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_with_parent_dir_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar");
        fs::write(&archive, tar_with(&[("ok/a.jpg", b"x"), ("../evil.txt", b"y")])).unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let err = format!("{:#}", unpack_tree(Unpack::Tar, &archive, &dest).unwrap_err());
        assert!(err.contains("../evil.txt") && err.contains("refusing"), "{err}");
        assert!(!dir.path().join("evil.txt").exists());
    }

    #[test]
    fn tar_symlink_out_of_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "/etc").unwrap();
        let archive = dir.path().join("link.tar");
        fs::write(&archive, b.into_inner().unwrap()).unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let err = format!("{:#}", unpack_tree(Unpack::Tar, &archive, &dest).unwrap_err());
        assert!(err.contains("points outside"), "{err}");
    }

    #[test]
    fn plain_tar_unpacks_and_counts_images() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("ok.tar");
        fs::write(&archive, tar_with(&[("d/a.JPG", b"1"), ("d/sub/b.png", b"2"), ("d/list.txt", b"3")])).unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        assert_eq!(unpack_tree(Unpack::Tar, &archive, &dest).unwrap(), 3);
        assert_eq!(count_images(&dest.join("d")).unwrap(), 2);
    }

    #[test]
    fn gz_and_bz2_round_trip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"hello").unwrap();
        fs::write(dir.path().join("a.gz"), gz.finish().unwrap()).unwrap();
        decompress(Unpack::Gz, &dir.path().join("a.gz"), &dir.path().join("a")).unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"hello");
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(b"world").unwrap();
        fs::write(dir.path().join("b.bz2"), bz.finish().unwrap()).unwrap();
        decompress(Unpack::Bz2, &dir.path().join("b.bz2"), &dir.path().join("b")).unwrap();
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"world");
        fs::write(dir.path().join("bad.gz"), b"not gzip").unwrap();
        assert!(decompress(Unpack::Gz, &dir.path().join("bad.gz"), &dir.path().join("c")).is_err());
    }
}
