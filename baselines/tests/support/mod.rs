//! Shared by the tests that run the Python reference implementations under tools/reference/.

use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The project venv's Python (torch, torchvision, pillow, safetensors), or GH_REFERENCE_PYTHON.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GH_REFERENCE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run the tests through `cargo make test`, which installs torch, torchvision, pillow and safetensors into .venv (or set GH_REFERENCE_PYTHON)",
        venv.display()
    );
    venv
}
