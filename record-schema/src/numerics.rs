//! `<runs>/numerics.json`: the numerics every cell of a runs folder was trained with.

use serde::{Deserialize, Serialize};

/// `--precision` and `--deterministic` as a runs folder's cells ran them. A folder holds one
/// setting: cells are identified by what they train, not by how precisely, so results of two
/// settings would otherwise merge unseen. Folders from before this file ran the defaults (no
/// other setting could train differently then: no GPU run, bf16 refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderNumerics {
    /// "fp32", "tf32" or "bf16".
    pub precision: String,
    pub deterministic: bool,
}

impl FolderNumerics {
    pub const FILE: &'static str = "numerics.json";

    /// Where a runs folder keeps it.
    pub fn path(runs: &std::path::Path) -> std::path::PathBuf {
        runs.join(Self::FILE)
    }
}
