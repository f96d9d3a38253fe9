//! The library of the suite: gradient harmonization (GH, GH++), the networks, the UDA baselines
//! and the data readers. Binaries (`bench-suite`, `report`, `data-fetch`) are thin layers over it.

pub mod device;
pub mod harmonizer;
pub mod networks;
