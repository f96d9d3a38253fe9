//! Networks of the digits protocol and the heads the baselines put on them.

pub mod grl;
pub mod heads;
pub mod lenet;
