//! Called from the build script of every crate whose binaries or tests link libtorch.
//!
//! torch-sys publishes the libtorch library directory it linked against (its `links = "tch"`
//! metadata, visible as `DEP_TCH_LIBTORCH_LIB` to crates that depend on torch-sys directly). We
//! turn it into linker arguments for that crate's binaries, tests and benches:
//! - an rpath, so they run without LD_LIBRARY_PATH;
//! - `--no-as-needed` for libtorch_cuda, which nothing references by symbol: without it the linker
//!   drops the library and CUDA is reported unavailable even on a GPU machine.

use std::path::Path;

/// Emits the `cargo:rustc-link-arg` lines. Panics (failing the build script with the message) when
/// the crate does not depend on torch-sys directly, since the directory is then unknown.
pub fn emit_link_args() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_else(|_| {
        panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: add `torch-sys` to this crate's [dependencies] \
             so that its build script sees where libtorch lives"
        )
    });
    for arg in link_args(Path::new(&lib_dir)) {
        println!("cargo:rustc-link-arg={arg}");
    }
}

/// The linker arguments for a libtorch library directory.
pub fn link_args(lib_dir: &Path) -> Vec<String> {
    let mut args = vec![format!("-Wl,-rpath,{}", lib_dir.display())];
    if lib_dir.join("libtorch_cuda.so").exists() {
        args.push("-Wl,--no-as-needed".to_owned());
        args.push("-ltorch_cuda".to_owned());
        args.push("-Wl,--as-needed".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_library_is_forced_only_when_present() {
        let dir = std::env::temp_dir().join(format!("libtorch-link-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(link_args(&dir), vec![format!("-Wl,-rpath,{}", dir.display())]);
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        let args = link_args(&dir);
        assert_eq!(args.len(), 4);
        assert_eq!(args[2], "-ltorch_cuda");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
