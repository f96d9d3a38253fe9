//! The library of the suite: gradient harmonization (GH, GH++), the networks, the UDA baselines,
//! the digits data readers, the shared training loop and run records. Binaries (`bench-suite`,
//! `report`, `data-fetch`) are thin layers over it.

pub mod data;
pub mod device;
/// GH / GH++ live in their own crate (`harmonizer/`); re-exported so `baselines::harmonizer` works.
pub use harmonizer;
pub mod methods;
pub mod networks;
pub mod numerics;
pub mod record;
pub mod train;
