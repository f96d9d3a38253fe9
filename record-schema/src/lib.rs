//! The record schema: the types `bench-suite` (through `baselines`) writes into a runs folder and
//! `report` reads back, declared once so writer and reader cannot drift. No libtorch: the report
//! builds without it.
//!
//! A finished cell folder `<runs>/cells/<hash>/` holds
//! - `cell.json`: [`CellInfo`] (labels, the run's spec, deviations);
//! - `done`: the [`RunSummary`] (also the last line of the run record);
//! - `run.jsonl`: the run record, one event per line (`baselines::record` writes it; its
//!   `summary` line is a [`RunSummary`], its `eval` lines [`Evaluation`]s);
//! - `timing.json`: [`CellTiming`] (the load around the cell, where its time went).
//!
//! `<runs>/profiles/<profile>.json` is a [`ProfileManifest`]; `<runs>/bench-speed/<profile>.json`
//! a [`SpeedRecord`]; `<runs>/numerics.json` the folder's [`FolderNumerics`].
//!
//! Fields added after records were first published carry `#[serde(default)]`, so older records
//! still read.

mod cell;
mod load;
mod numerics;
pub mod speed;
mod summary;
mod timing;

pub use cell::{CellInfo, ProfileManifest};
pub use load::LoadSnapshot;
pub use numerics::FolderNumerics;
pub use speed::{SpeedArm, SpeedRecord};
pub use summary::{Evaluation, PairSummary, RunStatus, RunSummary, Trained};
pub use timing::{CellTiming, PhaseSeconds};

/// The run record's file name in a cell folder.
pub const RECORD_FILE: &str = "run.jsonl";
